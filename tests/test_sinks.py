"""Live sinks, each on its own thread: a slow or failing sink drops its own frames and never
holds back the others; whole streams keep one frame per hop; latency per sink; NDI out."""

from __future__ import annotations

import json
import sys
import threading
import time
from fractions import Fraction
from types import ModuleType

import numpy as np
import pytest
from _models import _library_logging as _library_logging  # autouse fixture

from dmv_fast.live.sinks import Timeline

FPS = Fraction(22050, 1024)
SIZE = (48, 80)  # (height, width): frames need not be square


def _image(k: int) -> np.ndarray:
    image = np.zeros((*SIZE, 3), np.uint8)
    image[..., 0] = k
    image[: k % SIZE[0], :, 1] = 200  # not uniform
    return image


class Recording:
    """A sink that keeps what it gets (on its own thread)."""

    def __init__(self, name: str = "rec", whole: bool = True, fail_at: int | None = None):
        self.name, self.whole, self.fail_at = name, whole, fail_at
        self.frames: list[tuple[int, int]] = []  # (index, red value)
        self.events: list[str] = []
        self.threads: set[str] = set()

    def open(self, size, fps):
        self.threads.add(threading.current_thread().name)
        self.events.append(f"open {size} {fps}")

    def frame(self, index, image):
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError("device unplugged")
        assert image.shape == (*SIZE, 3)
        self.frames.append((index, int(image[0, 0, 0])))

    def audio(self, block, rate):
        self.events.append(f"audio {len(block)}")

    def close(self):
        self.events.append("close")

    def abort(self):
        self.events.append("abort")


class Blocked(Recording):
    """A preview that hangs in its frame call until released (a stuck screen, a full network)."""

    def __init__(self) -> None:
        super().__init__("stuck", whole=False)
        self.release = threading.Event()

    def frame(self, index, image):
        self.release.wait(30)
        super().frame(index, image)


def test_a_stuck_sink_drops_its_own_frames_and_holds_back_nobody():
    stuck, record = Blocked(), Recording("file")
    timeline = Timeline([stuck, record], slots=2)
    timeline.open(SIZE, FPS)
    feeding = threading.Thread(target=lambda: [timeline.frame(k, _image(k)) for k in range(60)])
    feeding.start()
    feeding.join(20)
    assert not feeding.is_alive()  # 60 frames handed over while one sink never returned
    stuck.release.set()
    timeline.close(60)
    # The other sink kept its stream whole: one frame per hop, each the newest made by then.
    assert [k for k, _ in record.frames] == list(range(60))
    shown = [v for _, v in record.frames]
    assert shown == sorted(shown) and shown[-1] == 59
    s_stuck, s_record = timeline.stats()
    assert s_stuck.name == "stuck" and s_stuck.dropped >= 60 - 3
    assert s_stuck.frames + s_stuck.dropped == 60 and s_stuck.failed is None
    # The frames it did show are the oldest one it was stuck on, then the newest.
    assert stuck.frames[-1] == (59, 59)
    assert s_record.frames == 60 and len(set(shown)) == 60 - s_record.dropped
    assert record.events[-1] == "close" and stuck.events[-1] == "close"
    assert all(name.startswith("dmv-fast-sink-") for name in stuck.threads | record.threads)


def test_whole_streams_fill_gaps_with_the_last_frame_and_pad_to_the_end():
    record = Recording("file")
    timeline = Timeline([record])
    timeline.open(SIZE, FPS)
    for k in (2, 3, 6):  # frames 0, 1, 4 and 5 were never made
        timeline.frame(k, _image(k))
    timeline.close(9)
    assert record.frames == [(0, 2), (1, 2), (2, 2), (3, 3), (4, 3), (5, 3), (6, 6), (7, 6), (8, 6)]
    assert record.events[0] == f"open {SIZE} {FPS}" and record.events[-1] == "close"
    stats = timeline.stats()[0]
    assert (stats.frames, stats.dropped) == (9, 0)


def test_a_failing_preview_is_dropped_and_a_failing_stream_fails_the_close(caplog):
    preview = Recording("ndi", whole=False, fail_at=3)
    stream = Recording("file", fail_at=5)
    healthy = Recording("pipe")
    timeline = Timeline([preview, stream, healthy])
    timeline.open(SIZE, FPS)
    for k in range(12):
        timeline.frame(k, _image(k))
        time.sleep(0.005)
    with pytest.raises(OSError, match="device unplugged"):
        timeline.close(12)
    s_preview, s_stream, s_healthy = timeline.stats()
    assert s_preview.failed == "device unplugged" and len(preview.frames) == 3
    assert s_stream.failed == "device unplugged" and stream.events[-1] == "abort"
    assert preview.events[-1] == "abort"
    assert healthy.frames == [(k, k) for k in range(12)] and healthy.events[-1] == "close"
    failures = [r.getMessage() for r in caplog.records if "sink failed" in r.getMessage()]
    assert len(failures) == 2  # one line each


def test_latency_per_sink_runs_from_the_audio_to_the_frame_handed_over():
    now = [100.0]
    record = Recording("window", whole=False)
    timeline = Timeline([record], clock=lambda: now[0])
    timeline.open(SIZE, FPS)
    now[0] = 100.25
    timeline.frame(0, _image(0), arrived=100.0)  # its audio came 250 ms ago
    timeline.close(1)
    stats = timeline.stats()[0]
    assert stats.latency_p50_ms == pytest.approx(250.0)
    assert "window: 1 frames, 0 dropped" in stats.summary()


def test_a_sink_that_cannot_open_fails_the_open_and_leaves_nothing():
    class NoScreen(Recording):
        def open(self, size, fps):
            raise RuntimeError("cannot open the preview window: no display")

    broken, fine = NoScreen("window", whole=False), Recording("file")
    timeline = Timeline([fine, broken])
    with pytest.raises(RuntimeError, match="no display"):
        timeline.open(SIZE, FPS)
    timeline.abort()
    assert fine.events[-1] == "abort" and broken.events == ["abort"]


# NDI ----------------------------------------------------------------------------------------


def _fake_ndi(initialize: bool = True) -> ModuleType:
    """An NDIlib stand-in recording what the sink sends (the plumbing, without the runtime)."""
    ndi = ModuleType("NDIlib")
    ndi.sent = []  # type: ignore[attr-defined]
    ndi.calls = []  # type: ignore[attr-defined]
    ndi.FOURCC_VIDEO_TYPE_RGBX = "RGBX"  # type: ignore[attr-defined]

    class Struct:
        pass

    ndi.SendCreate = Struct  # type: ignore[attr-defined]
    ndi.VideoFrameV2 = Struct  # type: ignore[attr-defined]
    ndi.initialize = lambda: ndi.calls.append("initialize") or initialize  # type: ignore[attr-defined]
    ndi.destroy = lambda: ndi.calls.append("destroy")  # type: ignore[attr-defined]
    ndi.send_create = lambda c: ndi.calls.append(f"create {c.ndi_name}") or "sender"  # type: ignore[attr-defined]
    ndi.send_destroy = lambda s: ndi.calls.append("send_destroy")  # type: ignore[attr-defined]
    ndi.send_get_no_connections = lambda s, t: 0  # type: ignore[attr-defined]

    def send(sender, video):
        ndi.sent.append((video.data.copy(), video.FourCC, video.frame_rate_N, video.frame_rate_D))

    ndi.send_send_video_v2 = send  # type: ignore[attr-defined]
    return ndi


def test_ndi_sink_plumbing_with_a_stand_in_runtime(monkeypatch):
    from dmv_fast.live.ndi import NdiSink

    fake = _fake_ndi()
    monkeypatch.setitem(sys.modules, "NDIlib", fake)
    sink = NdiSink("stage left")
    timeline = Timeline([sink])
    timeline.open(SIZE, FPS)
    for k in range(5):
        timeline.frame(k, _image(k))
    timeline.close(5)
    assert fake.calls[:2] == ["initialize", "create stage left"]
    assert fake.calls[-2:] == ["send_destroy", "destroy"]
    assert 1 <= len(fake.sent) <= 5  # a preview: it may drop, never repeats
    data, fourcc, n, d = fake.sent[-1]
    assert data.shape == (*SIZE, 4) and fourcc == "RGBX" and (n, d) == (11025, 512)  # exact
    np.testing.assert_array_equal(data[..., :3], _image(4))
    assert (data[..., 3] == 255).all()

    monkeypatch.setitem(sys.modules, "NDIlib", _fake_ndi(initialize=False))
    with pytest.raises(RuntimeError, match="the NDI runtime did not start"):
        NdiSink("x").open(SIZE, FPS)
    with pytest.raises(ValueError, match="1-200 characters"):
        NdiSink("")
    monkeypatch.setitem(sys.modules, "NDIlib", None)  # not installed
    with pytest.raises(ValueError, match=r"pip install 'dmv-fast\[ndi\]'"):
        NdiSink("x").open(SIZE, FPS)


@pytest.fixture
def ndi_loopback(tmp_path, monkeypatch):
    """The NDI runtime, told to look for sources on this machine (no multicast needed)."""
    ndi = pytest.importorskip("NDIlib", reason="ndi-python (the NDI runtime) is not installed")
    config = tmp_path / "ndi"
    config.mkdir()
    (config / "ndi-config.v1.json").write_text(
        json.dumps({"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}})
    )
    monkeypatch.setenv("NDI_CONFIG_DIR", str(config))
    if not ndi.initialize():
        pytest.skip("the NDI runtime does not start on this machine (NDIlib.initialize() failed)")
    yield ndi
    ndi.destroy()


def test_ndi_sender_and_receiver_on_this_machine_exchange_every_frame(ndi_loopback):
    from dmv_fast.live.ndi import NdiSink

    ndi = ndi_loopback
    name = f"dmv-fast-test-{time.monotonic_ns()}"
    sink = NdiSink(name)
    sink.open(SIZE, FPS)
    finder = ndi.find_create_v2()
    receiver = None
    try:
        source = None
        deadline = time.monotonic() + 20
        while source is None and time.monotonic() < deadline:
            ndi.find_wait_for_sources(finder, 200)
            source = next(
                (s for s in ndi.find_get_current_sources(finder) if name in s.ndi_name), None
            )
        if source is None:
            pytest.skip("NDI could not find a source on this machine (no loopback discovery)")
        create = ndi.RecvCreateV3()
        create.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
        receiver = ndi.recv_create_v3(create)
        ndi.recv_connect(receiver, source)
        deadline = time.monotonic() + 20
        while sink.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.connections == 1
        got: list[tuple[int, int, int]] = []
        done = threading.Event()

        def receive() -> None:
            while not done.is_set() or len(got) < 30:
                kind, video, _, _ = ndi.recv_capture_v2(receiver, 200)
                if kind == ndi.FRAME_TYPE_VIDEO:
                    got.append((video.xres, video.yres, int(video.data[0, 0, 0])))
                    ndi.recv_free_video_v2(receiver, video)
                elif done.is_set() and kind == ndi.FRAME_TYPE_NONE:
                    break

        thread = threading.Thread(target=receive)
        thread.start()
        for k in range(30):
            sink.frame(k, _image(8 * k))
            time.sleep(1 / 30)
        done.set()
        thread.join(30)
    finally:
        if receiver is not None:
            ndi.recv_destroy(receiver)
        ndi.find_destroy(finder)
        sink.close()
    assert len(got) == 30
    assert {(w, h) for w, h, _ in got} == {(SIZE[1], SIZE[0])}
    reds = [r for _, _, r in got]  # NDI compresses: within a few levels, in order
    assert all(abs(r - 8 * k) <= 8 for k, r in enumerate(reds))


def test_dmv_fast_live_publishes_its_frames_over_ndi(ndi_loopback, tiny_weights, tmp_path):
    import os
    import subprocess

    from _media import synth_music

    ndi = ndi_loopback
    name = f"dmv-fast-cli-{time.monotonic_ns()}"
    stats_file = tmp_path / "stats.json"
    env = {**os.environ, "DMV_FAST_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmv_fast.cli.app", "live", "--stdin", "--rate", "22050",
         "--ndi", name, "--stats", str(stats_file), "--weights", str(tiny_weights),
         "--resolution", "128", "--frame_length", "2048", "--backend", "cpu", "--seed", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    finder = ndi.find_create_v2()
    receiver = None
    got: list[tuple[int, int]] = []
    try:
        source = None
        deadline = time.monotonic() + 180  # the first run exports the model
        while source is None and time.monotonic() < deadline and proc.poll() is None:
            ndi.find_wait_for_sources(finder, 500)
            source = next(
                (s for s in ndi.find_get_current_sources(finder) if name in s.ndi_name), None
            )
        if source is None:
            assert proc.poll() is None, proc.stderr.read().decode()
            pytest.skip("NDI could not find the source on this machine (no loopback discovery)")
        create = ndi.RecvCreateV3()
        create.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
        receiver = ndi.recv_create_v3(create)
        ndi.recv_connect(receiver, source)
        deadline = time.monotonic() + 20
        while ndi.recv_get_no_connections(receiver) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        done = threading.Event()

        def receive() -> None:
            while True:
                kind, video, _, _ = ndi.recv_capture_v2(receiver, 300)
                if kind == ndi.FRAME_TYPE_VIDEO:
                    got.append((video.xres, video.yres))
                    ndi.recv_free_video_v2(receiver, video)
                elif done.is_set() and kind == ndi.FRAME_TYPE_NONE:
                    return

        thread = threading.Thread(target=receive)
        thread.start()
        assert proc.stdin is not None
        proc.stdin.write(synth_music(2.0, 22050, 1)[:, 0].astype("<f4").tobytes())
        proc.stdin.close()
        assert proc.wait(120) == 0, proc.stderr.read().decode()
        time.sleep(1.0)
        done.set()
        thread.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if receiver is not None:
            ndi.recv_destroy(receiver)
        ndi.find_destroy(finder)
    stats = json.loads(stats_file.read_text())
    (sink,) = stats["sinks"]
    assert sink["name"] == "ndi" and sink["failed"] is None and sink["frames"] >= 1
    assert len(got) == sink["frames"]  # every frame it sent arrived
    assert set(got) == {(128, 128)}
