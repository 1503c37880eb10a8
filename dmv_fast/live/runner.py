"""A live run: audio blocks into a session on one thread, frames out to the sinks on this one.

:func:`run` is what ``dmv-fast live`` does, and what a program embedding dmv-fast calls to
send a session's frames to its own sinks::

    vis = Visualizer(ModelSpec(resolution=128, weights="random", batch_size=1))
    rate, channels, blocks = song_blocks("song.mp3")
    with vis.stream(RenderOptions(song="-", frame_length=1024)) as session:
        session.warm_up()
        timeline = Timeline([FileSink("live.mp4", song="song.mp3"), PipeSink()])
        timeline.open(vis.plan.frame_size, session.fps)
        stats = run(session, blocks, rate, timeline, paced=True)
        timeline.close(stats.frames_total)
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator

import numpy as np

from dmv_fast.live.pacer import Pacer, play
from dmv_fast.live.session import LiveSession, LiveStats
from dmv_fast.live.sinks import Timeline

logger = logging.getLogger("dmv_fast")

#: How long the end of a run waits for the input thread (sources here stop within 0.1 s).
INPUT_JOIN_SECONDS = 10.0


def run(
    session: LiveSession,
    blocks: Iterator[np.ndarray],
    rate: int,
    timeline: Timeline,
    *,
    paced: bool,
    duration: float | None = None,
    stop: threading.Event | None = None,
    interrupts: list[KeyboardInterrupt] | None = None,
) -> LiveStats:
    """Feed ``blocks`` to ``session`` in a thread and hand its frames to ``timeline`` here.

    Args:
        session: a started (or not yet started) live session.
        blocks: audio blocks at ``rate``, ``np.ndarray [shape=(n, channels)]`` float32.
        rate: their sample rate in Hz.
        timeline: the sinks (opened by the caller); each block also goes to them.
        paced: push blocks at real-time pace (a file); False: as they come (a stream).
        duration: stop after this many seconds of audio (a finite number > 0).
        stop: set it to end the input early (the frames of the audio so far still come out);
            the first Ctrl-C (or a signal turned into a ``KeyboardInterrupt``) does the same,
            a second one stops at once.
        interrupts: the first Ctrl-C or signal is appended here, so that the caller can say
            the session was interrupted once it has kept what was played.

    Returns:
        the session's stats. The caller closes (or aborts) the timeline. When it returns or
        raises, the input thread and the session's worker have ended.
    """
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    stop = stop if stop is not None else threading.Event()
    caught = interrupts if interrupts is not None else []
    limit = None if duration is None else round(duration * rate)
    failure: list[BaseException] = []

    def limited() -> Iterator[np.ndarray]:
        sent = 0
        for block in blocks:
            if limit is not None and sent + len(block) >= limit:
                yield block[: limit - sent]
                return
            sent += len(block)
            yield block

    def push(block: np.ndarray) -> None:
        timeline.audio(block, rate)
        session.push(block, rate)

    def feed() -> None:
        try:
            if paced:
                play(limited(), rate, push, Pacer(rate), stop)
            else:
                for block in limited():
                    if stop.is_set():
                        break
                    push(block)
        except BaseException as e:  # reported by the main thread
            failure.append(e)
        finally:
            session.finish()  # wakes the worker for the last frames; gives up if closed

    feeder = threading.Thread(target=feed, name="dmv-fast-live-input", daemon=True)
    with session:
        feeder.start()
        try:
            while True:
                try:
                    frame = session.pull(timeout=0.1, newest=False)
                    if frame is not None:
                        timeline.frame(frame.index, frame.image, frame.arrived)
                    elif session.done:
                        break
                except KeyboardInterrupt as e:
                    if caught:
                        raise  # a second one: stop at once
                    caught.append(e)
                    stop.set()  # the first one ends the input and keeps what was played
                    logger.info("interrupted: finishing the frames of the audio so far")
        finally:
            stop.set()
            session.close()  # a last flush waiting for room gives up
            feeder.join(timeout=INPUT_JOIN_SECONDS)
            if feeder.is_alive():  # a source blocked in a read that ignores ``stop``
                logger.debug("the audio input did not stop within %s s", INPUT_JOIN_SECONDS)
    if failure:
        raise failure[0]
    return session.stats()
