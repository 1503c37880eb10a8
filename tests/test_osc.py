"""OSC in: messages from a python-osc client steer a running session (read back from the frames
and the recorded changes); malformed and hostile messages are survived, one log line each."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _media import synth_music
from _models import _library_logging as _library_logging  # autouse fixture

from dmv_fast.live.session import LiveSession
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.classes import find_class
from dmv_fast.vectors.online import OnlineTrajectory

pytest.importorskip("pythonosc", reason="python-osc (the osc extra) is not installed")
from pythonosc.osc_bundle_builder import OscBundleBuilder  # noqa: E402
from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

from dmv_fast.live.osc import OscServer, parse_address  # noqa: E402

SR = 22050
GOLDFISH = find_class("goldfish")


@pytest.fixture(scope="module")
def tiny_gen(tmp_path_factory):
    pytest.importorskip("torch")
    from _models import export_tiny

    from dmv_fast.model.runtime import Generator

    return Generator(export_tiny(tmp_path_factory, 1), backend="cpu")


def _wait(condition, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _play(session: LiveSession, seconds: float, shown: dict[int, np.ndarray], seed: int = 0):
    audio = synth_music(seconds, SR, 1, seed=seed)[:, 0]
    for i in range(0, len(audio), 512):
        session.push(audio[i : i + 512], SR)
        while session.step():
            pass
        while (frame := session.pull(newest=False)) is not None:
            shown[frame.index] = frame.image.copy()


def test_parse_address():
    assert parse_address("9000") == ("127.0.0.1", 9000)
    assert parse_address("0.0.0.0:57120") == ("0.0.0.0", 57120)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("", "x", "70000", ":9000", "host:", "9000:x"):
        with pytest.raises(ValueError, match="--osc must be PORT or HOST:PORT"):
            parse_address(bad)


def test_osc_messages_steer_the_frames_of_a_running_session(tiny_gen):
    trajectory = OnlineTrajectory(RenderOptions(song="-", frame_length=512, seed=2))
    session = LiveSession(tiny_gen, trajectory, queue=4, threaded=False)
    shown: dict[int, np.ndarray] = {}
    with OscServer("0", session.controls) as server:
        client = SimpleUDPClient(*server.address)
        _play(session, 0.5, shown)
        first = len(shown)
        client.send_message("/dmv/freeze", [])
        client.send_message("/dmv/truncation", 0.4)  # a float32 on the wire
        client.send_message("/dmv/classes", ["goldfish", 97])
        client.send_message("/dmv/num_classes", 2.0)  # a whole float is a whole number
        _wait(lambda: server.messages == 4, "the four messages")
        _play(session, 1.2, shown, seed=1)
        thawed = len(shown)
        client.send_message("/dmv/unfreeze", [])
        client.send_message("/dmv/depth", 0.5)
        _wait(lambda: server.messages == 6, "two more messages")
        _play(session, 0.5, shown, seed=2)
    glide = session.controls.glide_frames
    changes = {c["setting"]: c for c in session.controls.changes()}
    assert {k: (c["frame"], c["source"]) for k, c in changes.items() if k != "depth"} == {
        "freeze": (thawed, "osc"),  # the last change of a setting is the one kept
        "truncation": (first, "osc"),
        "classes": (first, "osc"),
        "num_classes": (first, "osc"),
    }
    assert changes["truncation"]["value"] == 0.4  # not 0.4000000059604645
    assert changes["classes"]["value"] == [GOLDFISH, 97]
    assert changes["depth"]["frame"] == thawed
    assert session.controls.to_dict()["rejected"] == 0
    # Frozen: the picture only moves while the truncation glides, then holds still.
    assert thawed - first > glide + 5
    settled = [shown[k] for k in range(first + glide, thawed)]
    for image in settled:
        np.testing.assert_array_equal(image, settled[0])
    assert not np.array_equal(shown[first], settled[0])  # the glide shows
    after = [shown[k] for k in range(thawed, len(shown))]
    assert any(not np.array_equal(a, b) for a, b in zip(after, after[1:], strict=False))
    assert session.trajectory.classes == (GOLDFISH, 97)


def _bundle_in_the_future() -> bytes:
    msg = OscMessageBuilder("/dmv/depth")
    msg.add_arg(0.25)
    bundle = OscBundleBuilder(time.time() + 3600)  # an hour from now: never waited for
    bundle.add_content(msg.build())
    return bundle.build().dgram


def _nested(depth: int) -> bytes:
    data = _message("/dmv/depth", 0.3)
    for _ in range(depth):
        data = b"#bundle\x00" + bytes(8) + len(data).to_bytes(4, "big") + data
    return data


def _message(address: str, *args) -> bytes:
    msg = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, tuple):
            msg.add_arg(*a)
        else:
            msg.add_arg(a)
    return msg.build().dgram


HOSTILE = [
    b"",
    b"\x00\x01garbage",
    os.urandom(1500),
    b"#bundle\x00" + b"\xff" * 40,  # a broken bundle
    b"#bundle\x00" + bytes(8) + (-4).to_bytes(4, "big", signed=True) + bytes(8),  # size < 0
    _nested(12),  # bundles in bundles in bundles...
    _message("/dmv/truncation", float("nan")),
    _message("/dmv/truncation", float("inf")),
    _message("/dmv/truncation", 1.5),
    _message("/dmv/truncation", "high"),
    _message("/dmv/truncation", True),
    _message("/dmv/truncation"),
    _message("/dmv/truncation", 0.5, 0.6),
    _message("/dmv/depth", (b"\x00" * 64, "b")),
    _message("/dmv/classes", *range(4000)),  # a huge array
    _message("/dmv/classes", "x" * 20000),
    _message("/dmv/classes", "no such animal"),
    _message("/dmv/classes", 5, 5),
    _message("/dmv/classes", 1.5),
    _message("/dmv/num_classes", 2.5),
    _message("/dmv/num_classes", 0),
    _message("/dmv/seed", -3),
    _message("/dmv/seed", (1e300, "d")),  # a double: whole, far too large
    _message("/dmv/freeze", 7),
    _message("/dmv/next_classes", 1),
    _message("/dmv/nope", 1),
    _message("/other/app", 1),
    _message("/dmv/" + "a" * 3000),
]


def test_malformed_and_hostile_messages_are_survived(tiny_gen, caplog):
    trajectory = OnlineTrajectory(RenderOptions(song="-", frame_length=512, seed=2))
    session = LiveSession(tiny_gen, trajectory, queue=4, threaded=False)
    before = session.controls.settings()
    with OscServer("127.0.0.1:0", session.controls) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for data in HOSTILE:
            sock.sendto(data, server.address)
            time.sleep(0.06)  # one log line each, within the rate limit
        sock.sendto(_bundle_in_the_future(), server.address)
        _wait(
            lambda: session.controls.rejected == len(HOSTILE) and server.messages == 1,
            "the hostile messages",
        )
        assert session.controls.settings()["depth"] == 0.25  # applied now, not in an hour
        sock.sendto(_message("/dmv/jitter", 0.2), server.address)  # still listening
        _wait(lambda: server.messages == 2, "a good message after them")
        shown: dict[int, np.ndarray] = {}
        _play(session, 0.3, shown)
    assert session.controls.rejected == len(HOSTILE)
    settings = session.controls.settings()
    assert {k: v for k, v in settings.items() if k not in ("depth", "jitter")} == {
        k: v for k, v in before.items() if k not in ("depth", "jitter")
    }
    assert (settings["depth"], settings["jitter"]) == (0.25, 0.2)
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(lines) == len(HOSTILE)  # one each (at most 20 a second are logged)
    assert not [r for r in caplog.records if r.name != "dmv_fast"]  # nobody else's lines
    assert all(len(line) < 700 for line in lines)  # never a 20 kB log line
    assert len(shown) > 0


def test_a_taken_port_or_a_bad_address_fails_before_any_work(tiny_gen):
    trajectory = OnlineTrajectory(RenderOptions(song="-", seed=2))
    session = LiveSession(tiny_gen, trajectory, threaded=False)
    with OscServer("0", session.controls) as server:
        port = server.address[1]
        with pytest.raises(ValueError, match=f"--osc cannot listen on 127.0.0.1:{port}"):
            OscServer(str(port))


# The command --------------------------------------------------------------------------------


def _dmv_fast(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dmv_fast.cli.app", "live", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


class Lines:
    """The lines of a stream, read on a thread."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            self.lines.put(raw.decode(errors="replace").rstrip())

    def wait_for(self, pattern: str, seconds: float = 180.0) -> re.Match:
        deadline = time.monotonic() + seconds
        while True:
            for line in self.seen:
                if match := re.search(pattern, line):
                    return match
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None


def test_dmv_fast_live_obeys_osc_while_it_plays(tiny_weights, tmp_path, tmp_path_factory):
    env = {
        **os.environ,
        "DMV_FAST_CACHE": str(tmp_path_factory.getbasetemp() / "osc-cache"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    stats_file = tmp_path / "stats.json"
    proc = _dmv_fast(
        "--stdin", "--rate", "22050", "--raw", "--osc", "0", "--stats", str(stats_file),
        "--weights", str(tiny_weights), "--resolution", "128", "--frame_length", "1024",
        "--backend", "cpu", "--seed", "5", "--queue", "2", "-v",
        env=env,
    )  # fmt: skip
    frames: list[bytes] = []
    frame_bytes = 128 * 128 * 3

    def read_frames() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(frame_bytes):
            frames.append(chunk)

    reader = threading.Thread(target=read_frames)
    reader.start()
    err = Lines(proc.stderr)
    try:
        host, port = err.wait_for(r"OSC: listening on ([\d.]+):(\d+)").groups()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for data in (b"junk", _message("/dmv/truncation", float("nan")), _message("/x", 1)):
            sock.sendto(data, (host, int(port)))
        client = SimpleUDPClient(host, int(port))
        client.send_message("/dmv/freeze", [])
        err.wait_for(r"osc /dmv/freeze: \{'freeze': True\}")
        audio = synth_music(3.0, SR, 1)[:, 0].astype("<f4")
        assert proc.stdin is not None
        cut = len(audio) // 3
        proc.stdin.write(audio[:cut].tobytes())
        proc.stdin.flush()
        _wait(lambda: len(frames) >= 5, "the first frames", 120)
        client.send_message("/dmv/truncation", 0.4)
        err.wait_for(r"osc /dmv/truncation: \{'truncation': 0.4\}")
        proc.stdin.write(audio[cut:].tobytes())
        proc.stdin.close()
        assert proc.wait(180) == 0, err.seen
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(30)
    stats = json.loads(stats_file.read_text())
    record = stats["controls"]
    assert record["rejected"] == 3
    assert [(c["setting"], c["value"], c["source"]) for c in record["changes"]] == [
        ("freeze", True, "osc"),
        ("truncation", 0.4, "osc"),
    ]
    assert record["changes"][0]["frame"] == 0
    changed = record["changes"][1]["frame"]
    total = stats["frames_total"]
    assert len(frames) == total == 1 + len(audio) // 1024
    assert 5 <= changed < total - record["glide_frames"]
    # Frozen from the first frame: one picture until the change, another one at the end.
    assert all(f == frames[0] for f in frames[:changed])
    assert frames[-1] != frames[0]
    assert [s["name"] for s in stats["sinks"]] == ["pipe"]
