"""The media clock: deadlines at ``t0 + k / rate``, and audio pushed at real-time pace.

:class:`Pacer` keeps deadlines on the media clock (``t0 + k / rate``, never frame-to-frame
sleeps), so a long run does not drift; :func:`play` pushes audio blocks when their last
sample would have played.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np


class Pacer:
    """Deadlines on the media clock: tick ``k`` is due at ``t0 + k / rate`` seconds.

    Each deadline is computed from ``t0`` and ``k`` alone, so the error of one sleep never
    carries into the next: over any run the wake-ups stay within one sleep's overshoot of the
    ideal times.

    Args:
        rate: ticks per second (a ``Fraction`` keeps ``22050 / frame_length`` exact).
        clock: seconds, monotonic (default ``time.perf_counter``).
        sleep: sleeps for the given seconds (default ``time.sleep``); tests inject a
            simulated clock and sleep.
    """

    def __init__(
        self,
        rate: float | Fraction,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not float(rate) > 0 or not math.isfinite(float(rate)):
            raise ValueError(f"pacer rate must be a finite number > 0, got {rate!r}")
        self.rate = Fraction(rate) if isinstance(rate, (int, Fraction)) else Fraction(str(rate))
        self._clock = clock
        self._sleep = sleep
        self.t0: float | None = None

    def start(self, t0: float | None = None) -> float:
        """Fix tick 0 at ``t0`` (default: now); returns it."""
        self.t0 = self._clock() if t0 is None else float(t0)
        return self.t0

    def deadline(self, k: int) -> float:
        """When tick ``k`` is due, in clock seconds."""
        if self.t0 is None:
            self.start()
        assert self.t0 is not None
        return self.t0 + float(k / self.rate)

    def wait(self, k: int) -> float:
        """Sleep until tick ``k`` is due; returns how late the wake-up is (seconds, >= 0 when
        on time or late, never sleeping when already past the deadline)."""
        due = self.deadline(k)
        ahead = due - self._clock()
        if ahead > 0:
            self._sleep(ahead)
        return self._clock() - due

    def current(self) -> int:
        """The newest tick already due (-1 before tick 0)."""
        if self.t0 is None:
            self.start()
        assert self.t0 is not None
        return math.floor((self._clock() - self.t0) * self.rate)


def play(
    blocks: Iterator[np.ndarray],
    rate: int,
    push: Callable[[np.ndarray], Any],
    pacer: Pacer,
    stop: threading.Event | None = None,
) -> int:
    """Push ``blocks`` at real-time pace: each one when its last sample would have played.

    Deadlines are ``t0 + samples_so_far / rate`` (cumulative, on the pacer's clock).

    Returns:
        the number of samples pushed.
    """
    if pacer.t0 is None:
        pacer.start()
    sent = 0
    for block in blocks:
        if stop is not None and stop.is_set():
            break
        sent += len(block)
        pacer.wait(sent)
        push(block)
    return sent
