"""The preview window: a live session's frames on the screen (the optional ``window`` extra,
pygame on SDL2).

:class:`WindowSink` is a :class:`~dmv_fast.live.sinks.Sink` that shows each frame scaled to
the window (aspect kept, black bars), with an optional overlay of the stats. It lives on its
own thread like every sink (:mod:`dmv_fast.live.feed`): SDL is opened, drawn and closed there,
and its events are read there between frames. Closing the window (or ``q``/``Esc``) calls
``on_close`` (``dmv-fast live`` ends the session then, like a Ctrl-C) and the window goes.

Keys (:data:`KEYS`), when a :class:`~dmv_fast.live.control.Controls` is given: ``space``
freezes or unfreezes the picture, ``n`` or ``→`` takes the next classes, ``↑``/``↓`` move the
truncation by ``LIVE_TRUNCATION_STEP``, ``s`` draws a new seed; ``o`` shows or hides the
overlay and ``f`` switches to full screen.

SDL runs on the sink's thread, which X11 and Wayland allow; macOS wants windows on the main
thread, so the window is not supported there.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from dmv_fast.live.control import Controls
from dmv_fast.settings.choices import LIVE_WINDOW_SIDE

logger = logging.getLogger("dmv_fast")

#: Keys of the window and what they do.
KEYS = {
    "space": "freeze / unfreeze the picture",
    "n, right": "next classes",
    "up / down": "truncation up / down",
    "s": "a new seed",
    "o": "stats overlay on / off",
    "f": "full screen on / off",
    "q, escape": "close the window (ends the session)",
}
OVERLAY_PERIOD = 0.25  # seconds between overlay refreshes


def load_pygame() -> Any:
    """pygame, imported quietly and with SDL's own signal handlers off (Ctrl-C stays Python's).

    Raises:
        ValueError: pygame is not installed, naming the extra to install.
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # it would print on stdout
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    try:
        import pygame
    except ImportError as e:
        raise ValueError(f"--window needs pygame: pip install 'dmv-fast[window]' ({e})") from None
    return pygame


def check_display() -> None:
    """Fail early, in one line, where no window can open: no pygame, or no display to open it
    on (Linux without ``DISPLAY`` or ``WAYLAND_DISPLAY``)."""
    load_pygame()
    if sys.platform == "darwin":
        raise ValueError("--window is not supported on macOS yet (SDL wants the main thread)")
    env = ("DISPLAY", "WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not any(os.environ.get(v) for v in env):
        raise ValueError(
            "--window needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set "
            "(on a headless machine: Xvfb, or stream the frames with --ndi or --raw)"
        )


class WindowSink:
    """A live preview window.

    Args:
        title: the window's title.
        controls: the session's control surface, for the keys (None: keys do nothing but
            ``o``, ``f`` and closing).
        on_close: called once when the user closes the window (its thread; keep it short).
        overlay: lines of text for the stats overlay (called a few times a second).
        show_overlay: start with the overlay shown.
        side: the window's first size: the frame scaled by a whole factor until its longer
            side reaches this many pixels (the window can be resized).
    """

    name = "window"
    whole = False  # a preview: the newest frame, nothing repeated

    def __init__(
        self,
        *,
        title: str = "dmv-fast live",
        controls: Controls | None = None,
        on_close: Callable[[], Any] | None = None,
        overlay: Callable[[], list[str]] | None = None,
        show_overlay: bool = False,
        side: int = LIVE_WINDOW_SIDE,
    ) -> None:
        self.title = title
        self.controls = controls
        self.on_close = on_close
        self.overlay = overlay
        self.show_overlay = show_overlay
        self.side = side
        self.closed = False  # the user closed it
        self._pg: Any = None
        self._screen: Any = None
        self._font: Any = None
        self._lines: list[str] = []
        self._lines_at = 0.0
        self._size = (0, 0)
        self._last: np.ndarray | None = None

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        """Open the window for frames of ``size = (height, width)``."""
        pg = self._pg = load_pygame()
        try:
            pg.display.init()
            pg.font.init()
            h, w = self._size = size
            scale = max(1, -(-self.side // max(h, w)))
            self._screen = pg.display.set_mode((w * scale, h * scale), pg.RESIZABLE)
        except pg.error as e:
            pg.display.quit()
            raise RuntimeError(f"cannot open the preview window: {e}") from None
        pg.display.set_caption(self.title)
        self._font = pg.font.Font(None, 20)
        self._screen.fill((0, 0, 0))
        pg.display.flip()
        logger.info("window open: %dx%d, keys: %s", w * scale, h * scale, _key_help())

    def frame(self, index: int, image: np.ndarray) -> None:
        """Show ``image`` (``[H, W, 3]`` uint8) scaled to the window."""
        self._events()
        if self.closed:
            return
        self._last = image
        self._draw(image)

    def idle(self) -> None:
        """Handle the window's events while no frame comes."""
        self._events()

    def audio(self, block: np.ndarray, rate: int) -> None:
        return None

    def close(self) -> None:
        self._shut()

    def abort(self) -> None:
        self._shut()

    # -- drawing and events -------------------------------------------------------------------

    def _draw(self, image: np.ndarray) -> None:
        pg, screen = self._pg, self._screen
        h, w = image.shape[:2]
        picture = pg.image.frombuffer(np.ascontiguousarray(image), (w, h), "RGB")
        sw, sh = screen.get_size()
        fit = min(sw / w, sh / h)
        dw, dh = max(1, round(w * fit)), max(1, round(h * fit))
        screen.fill((0, 0, 0))
        screen.blit(pg.transform.smoothscale(picture, (dw, dh)), ((sw - dw) // 2, (sh - dh) // 2))
        if self.show_overlay and self.overlay is not None:
            self._draw_overlay()
        pg.display.flip()

    def _draw_overlay(self) -> None:
        now = time.monotonic()
        if now - self._lines_at >= OVERLAY_PERIOD:
            assert self.overlay is not None
            self._lines, self._lines_at = self.overlay(), now
        pg = self._pg
        texts = [self._font.render(line, True, (255, 255, 255)) for line in self._lines]
        if not texts:
            return
        width = max(t.get_width() for t in texts) + 12
        height = sum(t.get_height() for t in texts) + 8
        box = pg.Surface((width, height), pg.SRCALPHA)
        box.fill((0, 0, 0, 160))
        self._screen.blit(box, (0, 0))
        y = 4
        for text in texts:
            self._screen.blit(text, (6, y))
            y += text.get_height()

    def _events(self) -> None:
        if self.closed or self._pg is None:
            return
        pg = self._pg
        for event in pg.event.get():
            if event.type in (pg.QUIT, pg.WINDOWCLOSE):
                self._user_closed()
                return
            if event.type == pg.KEYDOWN:
                self._key(event.key)
                if self.closed:
                    return
            elif event.type in (pg.WINDOWRESIZED, pg.WINDOWEXPOSED) and self._last is not None:
                self._draw(self._last)

    def _key(self, key: int) -> None:
        pg, c = self._pg, self.controls
        if key in (pg.K_q, pg.K_ESCAPE):
            self._user_closed()
        elif key == pg.K_o:
            self.show_overlay = not self.show_overlay
        elif key == pg.K_f:
            pg.display.toggle_fullscreen()
        elif c is None:
            return
        elif key == pg.K_SPACE:
            c.toggle_freeze("key")
        elif key in (pg.K_n, pg.K_RIGHT):
            c.offer("key", next_classes=True)
        elif key in (pg.K_UP, pg.K_DOWN):
            c.step_truncation(1 if key == pg.K_UP else -1, "key")
        elif key == pg.K_s:
            c.offer("key", seed=None)

    def _user_closed(self) -> None:
        logger.info("window closed")
        self._shut()
        if self.on_close is not None:
            self.on_close()

    def _shut(self) -> None:
        if self._pg is not None and not self.closed:
            self.closed = True
            self._pg.display.quit()


def _key_help() -> str:
    return "; ".join(f"{k}: {v}" for k, v in KEYS.items())
