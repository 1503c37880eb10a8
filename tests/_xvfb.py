"""An X server for the window tests (Debian's ``xvfb``), and what a person does to a window:
look at it (a screenshot of the display), press its keys, close it (as a window manager
does, with ``WM_DELETE_WINDOW``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


@contextmanager
def xvfb(width: int = 800, height: int = 600) -> Iterator[str]:
    """Start ``Xvfb`` on a free display; yields its name (``:N``).

    Raises:
        RuntimeError: Xvfb is not installed or did not start (the message says which).
    """
    binary = shutil.which("Xvfb")
    if binary is None:
        raise RuntimeError("Xvfb is not installed (Debian: apt-get install xvfb)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        [binary, "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24", "-noreset", "-nolisten",
         "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"Xvfb did not start: {err.strip()[-300:]}")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def screenshot(display: str) -> np.ndarray:
    """The whole X screen, ``uint8 [H, W, 3]``."""
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))


class X:
    """A client of the X server that finds, pokes and closes windows by title."""

    def __init__(self, display: str) -> None:
        from Xlib import display as xdisplay

        self.d = xdisplay.Display(display)
        self.root = self.d.screen().root
        self.net_name = self.d.intern_atom("_NET_WM_NAME")

    def close(self) -> None:
        self.d.close()

    def find(self, title: str, seconds: float = 60.0):
        """The top-level window titled ``title`` (waits for it to appear), or None."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for window in self.root.query_tree().children:
                name = window.get_full_property(self.net_name, 0)
                if name is not None and title.encode() in bytes(name.value):
                    return window
            time.sleep(0.1)
        return None

    def geometry(self, window) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of a top-level window on the screen."""
        g = window.get_geometry()
        return g.x, g.y, g.width, g.height

    def key(self, window, name: str) -> None:
        """Press and release the key ``name`` (an X keysym: ``space``, ``Up``, ``n``...)."""
        from Xlib import XK, X
        from Xlib.ext import xtest

        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.d.sync()
        code = self.d.keysym_to_keycode(XK.string_to_keysym(name))
        xtest.fake_input(self.d, X.KeyPress, code)
        xtest.fake_input(self.d, X.KeyRelease, code)
        self.d.sync()
        # A release and a press at one instant read as a key held down (auto-repeat), which
        # SDL drops: a person never presses a key twice within a few milliseconds.
        time.sleep(0.15)

    def ask_to_close(self, window) -> None:
        """What a window manager sends when the user clicks the close button."""
        from Xlib import X
        from Xlib.protocol import event

        protocols = self.d.intern_atom("WM_PROTOCOLS")
        delete = self.d.intern_atom("WM_DELETE_WINDOW")
        message = event.ClientMessage(
            window=window, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])
        )
        window.send_event(message)
        self.d.flush()
