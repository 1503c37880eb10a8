"""Every setting that must fail does so before any work: one line naming it, exit 1, no file.

"Before any work" is checked, not timed: the audio analysis and the graph cache are replaced
by functions that fail the test if they are reached.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _media import write_song
from typer.testing import CliRunner

from dmv_fast.audio import features as audio
from dmv_fast.cli.app import app
from dmv_fast.cli.terminal import expand_multi_value
from dmv_fast.model import cache as models
from dmv_fast.model import weights as model_weights

runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """(song, output folder, cache folder), with analysis and export made unreachable."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "dir.mp4").mkdir()  # a folder where the output should go
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(model_weights.ENV_CACHE, str(cache))
    song = write_song(tmp_path / "song.wav", 1.0, 22050, 1)

    def unreachable(*args, **kwargs):
        raise AssertionError("reached expensive work before refusing a bad setting")

    monkeypatch.setattr(audio, "analyze", unreachable)
    monkeypatch.setattr(audio, "load_audio", unreachable)
    monkeypatch.setattr(models, "ensure_onnx", unreachable)
    monkeypatch.setattr(models, "resolve_weights", unreachable)
    return song, out, cache


def _song_with(path: Path, channels: int) -> Path:
    sf.write(path, np.zeros((2205, channels), np.float32) + 0.01, 22050, subtype="PCM_16")
    return path


# (extra arguments, text the one line must contain); "{out}" is the output folder.
CASES = [
    (["--resolution", "300"], "resolution"),
    (["--pitch_sensitivity", "0"], "pitch_sensitivity"),
    (["--pitch_sensitivity", "300"], "pitch_sensitivity"),
    (["--pitch_sensitivity", "nan"], "pitch_sensitivity"),
    (["--tempo_sensitivity", "0"], "tempo_sensitivity"),
    (["--tempo_sensitivity", "1e308"], "tempo_sensitivity"),
    (["--tempo_sensitivity", "-1"], "tempo_sensitivity"),
    (["--depth", "0"], "depth"),
    (["--depth", "inf"], "depth"),
    (["--num_classes", "13"], "num_classes"),
    (["--num_classes", "0"], "num_classes"),
    (["--classes", "1", "2", "1000", "--num_classes", "3"], "1000"),
    (["--classes", "1", "2", "--num_classes", "3"], "classes"),
    (["--classes", "notaclassname"], "notaclassname"),
    (["--jitter", "2"], "jitter"),
    (["--frame_length", "500"], "frame_length"),
    (["--frame_length", "0"], "frame_length"),
    (["--truncation", "0"], "truncation"),
    (["--truncation", "1.5"], "truncation"),
    (["--smooth_factor", "0"], "smooth_factor"),
    (["--smooth_factor", "1.5", "--frame_length", "2048"], "smooth_factor"),
    (["--duration", "0"], "duration"),
    (["--duration", "-3"], "duration"),
    (["--batch_size", "0"], "batch_size"),
    (["--batch_size", "100000"], "batch_size"),
    (["--scaling", "0"], "scaling"),
    (["--scaling", "9"], "scaling"),
    (["--seed", "-1"], "seed"),
    (["--crf", "52"], "crf"),
    (["--preset", "bogus"], "bogus"),
    (["--backend", "tpu"], "tpu"),
    (["--backend", "cuda"], "cuda"),
    (["--backend", "tensorrt"], "tensorrt"),
    (["--precision", "int4"], "int4"),
    (["--precision", "int8", "--backend", "cuda"], "int8"),
    (["--encoder", "nvenc"], "nvenc"),
    (["--encoder", "hevc"], "hevc"),
    (["--pixels", "clip"], "clip"),
    (["--aspect", "0:9"], "aspect must be W:H"),
    (["--aspect", "abc"], "aspect must be W:H"),
    (["--aspect", "16:0"], "aspect must be W:H"),
    (["--aspect", "10:1"], "outside 1:4 .. 4:1"),
    (["--size", "100x50"], "too small"),
    (["--size", "1279x720"], "odd side"),
    (["--size", "8192x4320"], "too large"),
    (["--size", "1280*720"], "WIDTHxHEIGHT"),
    (["--size", "1280x720", "--scaling", "2"], "not both"),
    (["--size", "1280x720", "--aspect", "4:3"], "not the aspect 4:3"),
    (["--aspect", "16:9", "--fill", "stretch"], "stretch"),
    (["-o", "{out}/x.avi"], "x.avi"),
    (["-o", "{out}/x"], "suffix"),
    (["-o", "{out}/missing/x.mp4"], "does not exist"),
    (["-o", "/proc/x.mp4"], "/proc"),
    (["-o", "{out}/" + "n" * 240 + ".mp4"], "too long"),
    (["-o", "{out}/dir.mp4"], "is a folder"),
    (["--song", "{out}/missing.wav"], "does not exist"),
    (["--song", "{ch9}"], "channels"),
]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="GPU backends can run here",
)
@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_bad_setting_fails_before_any_work(workspace, args, needle):
    song, out, cache = workspace
    ch9 = _song_with(out.parent / "ch9.wav", 9)
    args = [a.format(out=out, ch9=ch9) for a in args]
    needle = needle.format(out=out)
    base = ["render", "--weights", "random", "--song", str(song), "-o", str(out / "v.mp4")]
    before = set(out.parent.rglob("*"))
    result = runner.invoke(app, expand_multi_value([*base, *args]))
    assert result.exit_code in (1, 2), result.output
    if result.exit_code == 1:  # our own one-line error (2: typer's usage error for a choice)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    else:
        assert needle in result.stderr
    assert "Traceback" not in result.output
    assert set(out.parent.rglob("*")) == before  # nothing written, output folder or cache
    assert not any(cache.iterdir())


def test_output_equal_to_the_song_is_refused_even_with_overwrite(workspace):
    song, out, _ = workspace
    link = out / "link.wav"
    os.symlink(song, link)
    for target in (song, link):
        result = runner.invoke(
            app, ["render", "--weights", "random", "--song", str(song), "-o", str(target), "-y"]
        )
        assert result.exit_code == 1
        assert "must end in" in result.stderr or "song itself" in result.stderr
    renamed = out / "song.mp4"
    os.link(song, renamed)
    result = runner.invoke(
        app, ["render", "--weights", "random", "--song", str(renamed), "-o", str(renamed), "-y"]
    )
    assert result.exit_code == 1 and "song itself" in result.stderr
    assert song.stat().st_size > 0 and renamed.stat().st_size == song.stat().st_size
