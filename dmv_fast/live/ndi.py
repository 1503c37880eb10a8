"""NDI output: a live session's frames as an NDI source on the network (the optional ``ndi``
extra: ``ndi-python``, whose wheel bundles the NDI runtime library).

:class:`NdiSink` is a :class:`~dmv_fast.live.sinks.Sink` that publishes each frame as an NDI
video frame (RGBX, the session's exact frame rate) under a source name; OBS (with its NDI
plugin), TouchDesigner, Resolume, vMix and NDI Studio Monitor receive it. Like every sink it
runs on its own thread (:mod:`dmv_fast.live.feed`) and drops its own frames when the network
is slow. Frames go out as they are made: NDI does not clock them again.

Receivers find the source by mDNS on the local network. Where multicast does not pass (some
containers, VPNs, loopback-only machines), list the sender's address in NDI's own
configuration: ``{"ndi": {"networks": {"ips": "127.0.0.1"}}}`` in ``ndi-config.v1.json`` in the
folder ``NDI_CONFIG_DIR`` names (default ``~/.ndi``), on the receiving side.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from typing import Any

import numpy as np

from dmv_fast.settings.choices import NDI_MAX_NAME

logger = logging.getLogger("dmv_fast")

LINGER = 0.5  # seconds the sender stays up after the last frame when receivers are connected


def load_ndi() -> Any:
    """The NDI bindings (``NDIlib``).

    Raises:
        ValueError: not installed, naming the extra to install.
    """
    try:
        import NDIlib
    except ImportError as e:
        raise ValueError(
            f"--ndi needs ndi-python (the NDI runtime): pip install 'dmv-fast[ndi]' ({e})"
        ) from None
    return NDIlib


def check_name(name: str) -> str:
    """``name`` if it can name an NDI source (1-200 printable characters), else ValueError."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NDI_MAX_NAME:
        raise ValueError(f"--ndi needs a source name of 1-{NDI_MAX_NAME} characters, got {name!r}")
    if not name.isprintable():
        raise ValueError(f"--ndi source name must be printable text, got {name!r}")
    return name.strip()


class NdiSink:
    """Frames published as the NDI source ``name``.

    Args:
        name: the source name receivers list (NDI shows it as ``HOST (name)``).
        groups: NDI groups to publish in (None: the default group).
    """

    name = "ndi"
    whole = False  # a stream to watch: the newest frame, nothing repeated

    def __init__(self, name: str, *, groups: str | None = None) -> None:
        self.source = check_name(name)
        self.groups = groups
        self._ndi: Any = None
        self._sender: Any = None
        self._video: Any = None
        self._rgbx: np.ndarray | None = None
        self._started = False

    @property
    def connections(self) -> int:
        """Receivers connected now."""
        if self._sender is None:
            return 0
        return int(self._ndi.send_get_no_connections(self._sender, 0))

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        """Start the runtime and create the sender for frames of ``size = (height, width)``."""
        ndi = self._ndi = load_ndi()
        if not ndi.initialize():
            raise RuntimeError(
                "the NDI runtime did not start (NDIlib.initialize() failed: the CPU needs SSE4.2)"
            )
        self._started = True
        create = ndi.SendCreate()
        create.ndi_name = self.source
        if self.groups:
            create.groups = self.groups
        create.clock_video = False  # the session's pacer is the clock
        create.clock_audio = False
        self._sender = ndi.send_create(create)
        if self._sender is None:
            self._stop()
            raise RuntimeError(f"cannot create the NDI source {self.source!r}")
        h, w = size
        self._rgbx = np.full((h, w, 4), 255, np.uint8)
        video = self._video = ndi.VideoFrameV2()
        video.FourCC = ndi.FOURCC_VIDEO_TYPE_RGBX
        rate = Fraction(fps)
        video.frame_rate_N, video.frame_rate_D = rate.numerator, rate.denominator
        video.picture_aspect_ratio = w / h
        logger.info("NDI source %r: %dx%d at %.2f frames/s", self.source, w, h, float(fps))

    def frame(self, index: int, image: np.ndarray) -> None:
        """Send ``image`` (``[H, W, 3]`` uint8) as the next NDI frame."""
        assert self._rgbx is not None
        self._rgbx[..., :3] = image
        self._video.data = self._rgbx
        self._ndi.send_send_video_v2(self._sender, self._video)

    def audio(self, block: np.ndarray, rate: int) -> None:
        return None

    def close(self) -> None:
        if self._sender is not None and self.connections:
            time.sleep(LINGER)  # NDI sends in the background: let the last frames leave
        self._stop()

    def abort(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._sender is not None:
            self._ndi.send_destroy(self._sender)
            self._sender = None
        if self._started:
            self._ndi.destroy()
            self._started = False
