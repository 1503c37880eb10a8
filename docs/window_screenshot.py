"""Make docs/live-window.png: ``dmv-fast live --window --overlay --osc`` on a synthesized piece,
under Xvfb, steered by one OSC message, the window grabbed from the X display.

    python docs/window_screenshot.py [--weights random] [--out docs/live-window.png]

Needs Debian's ``xvfb`` and the ``window`` and ``osc`` extras; the first run exports the model.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
from PIL import ImageGrab
from pythonosc.udp_client import SimpleUDPClient

from dmv_fast.audio.synth import synthesize_song

SIDE = 512  # the window's size for a 128 px frame; the X screen is made the same size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("live-window.png"))
    parser.add_argument("--after", type=float, default=10.0, help="seconds of play first")
    args = parser.parse_args()
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("error: Xvfb is not installed (apt-get install xvfb)")
    read, write = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", f"{SIDE}x{SIDE}x24", "-nolisten", "tcp"],
        pass_fds=(write,),
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        display = ":" + pipe.readline().strip()
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "piece.wav"
        sf.write(song, synthesize_song(40.0, 44100, seed=3), 44100)
        command = [
            sys.executable, "-m", "dmv_fast.cli.app", "live", "--song", str(song),
            "--window", "--overlay", "--osc", "0", "--weights", args.weights,
            "--resolution", "128", "--frame_length", "1024", "--backend", "cpu", "--seed", "11",
            "--classes", "goldfish", "volcano", "daisy", "coral reef", "--num_classes", "4",
        ]  # fmt: skip
        live = subprocess.Popen(
            command, env={**os.environ, "DISPLAY": display}, stderr=subprocess.PIPE, text=True
        )
        try:
            assert live.stderr is not None
            for line in live.stderr:
                print(line, end="", file=sys.stderr)
                if match := re.search(r"OSC: listening on ([\d.]+):(\d+)", line):
                    break
            else:
                sys.exit("error: the live session ended before it listened")
            time.sleep(args.after / 2)
            SimpleUDPClient(match[1], int(match[2])).send_message("/dmv/truncation", 0.5)
            time.sleep(args.after / 2)
            ImageGrab.grab(xdisplay=display).save(args.out)
            print(f"wrote {args.out}", file=sys.stderr)
        finally:
            live.terminate()
            live.wait(60)
            server.terminate()


if __name__ == "__main__":
    main()
