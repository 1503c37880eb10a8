"""FrameStore: the -d / -s frames folder."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from _media import gradient_frames
from PIL import Image

from dmv_fast.render.folders import FrameStore

SETTINGS = {
    "song": "song.wav",
    "frame_length": 512,
    "resolution": 128,
    "truncation": 0.5,
    "classes": (1, 2, 3),
    "vectors_sha256": "ab12",
    "frames": 10,
}


def test_frames_round_trip_in_order(tmp_path):
    folder = tmp_path / "out.frames"
    store = FrameStore.open(folder, SETTINGS)
    frames = gradient_frames(10, 32, 48)
    store.write(0, frames[:4])
    store.write(4, frames[4])  # a single [H, W, 3] frame
    store.write(5, frames[5:])
    assert sorted(p.name for p in folder.glob("*.png"))[:2] == ["000000.png", "000001.png"]
    assert np.array_equal(store.read(0, 10), frames)
    batches = list(store.iter_batches(0, 10, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert np.array_equal(np.concatenate(batches), frames)
    assert json.loads((folder / "manifest.json").read_text())["frames"] == 10


def test_resume_counts_consecutive_frames(tmp_path):
    folder = tmp_path / "out.frames"
    store = FrameStore.open(folder, SETTINGS)
    assert store.complete_frames() == 0
    frames = gradient_frames(10, 16, 16)
    store.write(0, frames[:3])
    store.write(5, frames[5:7])  # a gap at 3..4
    reopened = FrameStore.open(folder, dict(SETTINGS))
    assert reopened.complete_frames() == 3
    reopened.write(3, frames[3:5])
    assert reopened.complete_frames() == 7


def test_mismatched_settings_are_refused_by_name(tmp_path):
    folder = tmp_path / "out.frames"
    FrameStore.open(folder, SETTINGS).write(0, gradient_frames(2, 16, 16))
    changed = SETTINGS | {"truncation": 0.7, "resolution": 256}
    with pytest.raises(ValueError, match="other settings") as info:
        FrameStore.open(folder, changed)
    message = str(info.value)
    assert "truncation: 0.5 in the folder, 0.7 now" in message
    assert "resolution: 128 in the folder, 256 now" in message
    assert "frame_length" not in message
    with pytest.raises(ValueError, match="seed"):
        FrameStore.open(folder, SETTINGS | {"seed": 3}, create=False)
    assert FrameStore.open(folder, SETTINGS).complete_frames() == 2  # untouched


def test_save_only_needs_a_complete_matching_folder(tmp_path):
    folder = tmp_path / "out.frames"
    with pytest.raises(ValueError, match="does not exist; render the frames first with -d"):
        FrameStore.open(folder, SETTINGS, create=False)
    assert not folder.exists()
    store = FrameStore.open(folder, SETTINGS)
    store.write(0, gradient_frames(6, 16, 16))
    with pytest.raises(ValueError, match="holds 6 of 10 frames"):
        FrameStore.open(folder, SETTINGS, create=False)
    store.write(6, gradient_frames(4, 16, 16))
    assert FrameStore.open(folder, SETTINGS, create=False).complete_frames() == 10


def test_folder_without_manifest(tmp_path):
    folder = tmp_path / "out.frames"
    folder.mkdir()
    with pytest.raises(ValueError, match="has no manifest.json"):
        FrameStore.open(folder, SETTINGS, create=False)
    Image.new("RGB", (4, 4)).save(folder / "000000.png")
    with pytest.raises(ValueError, match="no manifest.json"):
        FrameStore.open(folder, SETTINGS)
    assert FrameStore.read_manifest(folder) is None


def test_crash_mid_write_leaves_no_final_frame(tmp_path, monkeypatch):
    folder = tmp_path / "out.frames"
    store = FrameStore.open(folder, SETTINGS)
    real_save = Image.Image.save

    def crash_after_a_few_bytes(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", crash_after_a_few_bytes)
    with pytest.raises(KeyboardInterrupt):
        store.write(0, gradient_frames(2, 16, 16))
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert not store.path(0).exists()
    assert [p.name for p in folder.iterdir()] == ["manifest.json"]
    assert FrameStore.open(folder, SETTINGS).complete_frames() == 0


def test_leftover_partials_are_ignored_and_cleaned(tmp_path):
    folder = tmp_path / "out.frames"
    store = FrameStore.open(folder, SETTINGS)
    store.write(0, gradient_frames(1, 16, 16))
    dead = _dead_pid()
    (folder / f".000001.png.tmp-{dead}-0123abcd").write_bytes(b"half")
    live = folder / f".000002.png.tmp-{os.getpid()}-0123abcd"  # a run still writing
    live.write_bytes(b"half")
    assert store.complete_frames() == 1
    FrameStore.open(folder, SETTINGS)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["000000.png", live.name, "manifest.json"]
    )


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_reads_are_bounded_in_bytes_whatever_the_batch_size(tmp_path):
    store = FrameStore.open(tmp_path / "out.frames", SETTINGS)
    frames = gradient_frames(10, 16, 16)
    store.write(0, frames)
    batches = list(store.iter_batches(0, 10, 100_000, max_bytes=3 * 16 * 16 * 3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert np.array_equal(np.concatenate(batches), frames)
    assert [len(b) for b in store.iter_batches(0, 10, 100_000)] == [10]


def test_damaged_frames_end_the_resume_point(tmp_path):
    store = FrameStore.open(tmp_path / "out.frames", SETTINGS)
    store.write(0, gradient_frames(6, 16, 16))
    data = store.path(2).read_bytes()
    store.path(2).write_bytes(data[: len(data) // 2])
    assert store.complete_frames() == 2
    Image.new("RGB", (8, 8)).save(store.path(2))  # whole, but not the size of the others
    assert store.complete_frames() == 2
    store.write(2, gradient_frames(1, 16, 16))
    assert store.complete_frames() == 6


def test_bad_writes_and_reads(tmp_path):
    store = FrameStore.open(tmp_path / "out.frames", SETTINGS)
    with pytest.raises(ValueError, match="uint8"):
        store.write(0, np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="outside 0..9"):
        store.write(9, gradient_frames(2, 8, 8))
    with pytest.raises(ValueError, match="frame 0 is missing"):
        store.read(0, 1)


def test_many_frames_get_wider_names(tmp_path):
    store = FrameStore.open(tmp_path / "f", {"frames": None})
    assert store.path(7).name == "000007.png"
    assert store.path(1_234_567).name == "1234567.png"
