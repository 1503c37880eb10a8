"""Segments: a render cut on exact frame boundaries, encoded apart, joined without re-encoding.

A video of ``n`` frames is cut into consecutive segments of ``segment_frames`` frames (the
last one shorter). Each segment is encoded as video only with libx264 at identical settings
(so every segment has the same SPS/PPS), starts on an IDR frame, and has its frames at
``pts = 0, 1, ...`` (local index) in a ``1/fps`` time base. It is written under a temporary
name and renamed, so a file under a final name is always a whole segment.

Where the segments are kept between runs (``NAME.segments/`` and its manifest) is the
render's business: :class:`dmv_fast.render.folders.SegmentFolder`.

:func:`join_segments` remuxes the segments' packets into one stream, shifting each
segment's presentation timestamps by its first frame's global index (offsets come from pts:
with B-frames a segment's first dts is negative, and a short segment has a smaller decode
delay; decode timestamps are renumbered over the whole stream), then encodes the song's audio once, interleaved with
the video, exactly as a one-process render does (AAC priming and frames never split at a
join). The output appears under its final name only when every segment was joined.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from dmv_fast.audio.track import AudioTrack, plan_audio
from dmv_fast.files import publish, temporary_name
from dmv_fast.settings.choices import CONTAINERS
from dmv_fast.video.nvenc import GOP
from dmv_fast.video.writer import VideoWriter

logger = logging.getLogger("dmv_fast")

#: Frames per segment: x264's own keyframe interval, so cutting adds about as many IDR
#: frames as a one-process render has anyway.
SEGMENT_FRAMES = GOP
#: x264 threads per segment encoder. Segments are the parallelism; one thread per encoder
#: also makes every segment's bitstream independent of the number of workers.
SEGMENT_THREADS = 1


@dataclass(frozen=True)
class Segment:
    """Frames ``start`` (inclusive) to ``stop`` (exclusive) of a video, as segment ``index``."""

    index: int
    start: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        """The segment's file name, ``00007.mp4``."""
        return f"{self.index:05d}.mp4"


@dataclass(frozen=True)
class VideoSettings:
    """libx264 settings shared by every segment of a video (they decide its bitstream)."""

    crf: int = 20
    preset: str = "veryfast"
    threads: int = SEGMENT_THREADS

    def to_dict(self) -> dict[str, Any]:
        return {"codec": "libx264", "crf": self.crf, "preset": self.preset, "threads": self.threads}


def plan_segments(n_frames: int, segment_frames: int = SEGMENT_FRAMES) -> list[Segment]:
    """Cut ``n_frames`` into consecutive segments of ``segment_frames`` (the last shorter).

    Raises:
        ValueError: ``n_frames < 1`` or ``segment_frames < 1``.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"a segmented render needs at least 1 frame; got {n_frames!r}")
    if (
        isinstance(segment_frames, bool)
        or not isinstance(segment_frames, int)
        or segment_frames < 1
    ):
        raise ValueError(f"segment_frames must be an integer >= 1; got {segment_frames!r}")
    return [
        Segment(i, start, min(start + segment_frames, n_frames))
        for i, start in enumerate(range(0, n_frames, segment_frames))
    ]


def segment_writer(
    path: Path,
    size: tuple[int, int],
    fps: Fraction,
    settings: VideoSettings,
    pixel_format: str = "rgb24",
) -> VideoWriter:
    """The writer of one video-only segment at ``path`` (published atomically on close).

    Args:
        path: the segment file (``.mp4``).
        size: ``(height, width)`` of a frame in pixels.
        fps: the exact frame rate.
        settings: libx264 settings, identical for every segment of a video.
        pixel_format: ``"rgb24"`` batches ``[b, H, W, 3]`` or ``"yuv420p"`` planes.
    """
    return VideoWriter(
        path,
        size,
        fps,
        audio=None,
        encoder="x264",
        crf=settings.crf,
        preset=settings.preset,
        threads=settings.threads,
        overwrite=True,
        pixel_format=pixel_format,
    )


def encode_segment(
    batches: Iterable[np.ndarray],
    path: Path,
    size: tuple[int, int],
    fps: Fraction,
    settings: VideoSettings,
    pixel_format: str = "rgb24",
) -> int:
    """Encode frames as one video-only segment at ``path`` (see :func:`segment_writer`);
    returns the number of frames encoded."""
    with segment_writer(path, size, fps, settings, pixel_format) as writer:
        for batch in batches:
            writer.write(batch)
        frames = writer.frames_written
    return frames


def _segment_packets(path: Path, seg: Segment, fps: Fraction) -> Iterator[tuple[Any, int, int]]:
    """``(packet, pts, dts)`` of a segment in decode order, timestamps in global frames."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.time_base is not None
        tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)
        for packet in c.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None or packet.dts is None:
                raise RuntimeError(f"segment {str(path)!r} has a packet without timestamps")
            pts, dts = Fraction(packet.pts) * tb * fps, Fraction(packet.dts) * tb * fps
            if pts.denominator != 1 or dts.denominator != 1:
                raise RuntimeError(f"segment {str(path)!r} has a timestamp between frames")
            yield packet, seg.start + int(pts), seg.start + int(dts)


def _decode_delay(path: Path, seg: Segment, fps: Fraction) -> int:
    """Frames between a segment's first decode and first presentation time (B-frames)."""
    try:
        for _, _pts, dts in _segment_packets(path, seg, fps):
            return max(0, seg.start - dts)
    except (av.FFmpegError, OSError) as e:
        raise RuntimeError(f"cannot read segment {str(path)!r}: {e}") from e
    raise RuntimeError(f"segment {str(path)!r} holds no frames")


def join_segments(
    parts: Sequence[tuple[Segment, Path]],
    output: Path,
    fps: Fraction,
    song: str | os.PathLike[str] | None,
    *,
    audio_start: float = 0.0,
    overwrite: bool = True,
) -> int:
    """Join segment files into ``output`` without re-encoding, then mux the song's audio.

    Args:
        parts: ``(segment, file)`` pairs covering frames ``0..n-1`` in order.
        output: the video (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``); written under a
            temporary name and renamed at the end.
        fps: the exact frame rate of every segment.
        song: the song whose first audio track is encoded once as AAC, trimmed to
            ``n / fps`` seconds; None: no audio.
        audio_start: seconds of the song to skip before the first frame.
        overwrite: replace an existing ``output``; False: a file that appeared meanwhile
            is kept and the join fails (FileExistsError).

    Returns:
        The number of frames in ``output``.

    Raises:
        ValueError: a bad output suffix or an unreadable song. RuntimeError: segments that
            do not fit together (gaps, other encoder settings, timestamps out of order).
    """
    suffix = output.suffix.lower()
    if suffix not in CONTAINERS:
        raise ValueError(f"output {str(output)!r} must end in one of {', '.join(CONTAINERS)}")
    expected = 0
    for seg, _ in parts:
        if seg.start != expected:
            raise RuntimeError(f"segment {seg.index} starts at frame {seg.start}, not {expected}")
        expected = seg.stop
    if expected == 0:
        raise RuntimeError("no segments to join")
    audio_plan = plan_audio(Path(song)) if song is not None else None
    # Decode delay of the joined stream: the largest of the segments' (a segment shorter
    # than x264's B-frame run has a smaller one). Packet i in decode order gets
    # dts = i - delay: strictly increasing, one frame apart, and never after its pts.
    delay = max(_decode_delay(path, seg, fps) for seg, path in parts)
    time_base = 1 / Fraction(fps)
    tmp = temporary_name(output)
    container = av.open(str(tmp), "w", format=CONTAINERS[suffix])
    audio: AudioTrack | None = None
    try:
        stream: Any = None
        extradata: bytes | None = None
        written = 0
        for seg, path in parts:
            with av.open(str(path)) as c:
                template = c.streams.video[0]
                data = bytes(template.codec_context.extradata or b"")
                if stream is None:
                    stream = container.add_stream_from_template(template)
                    stream.time_base = time_base
                    extradata = data
                    if audio_plan is not None:
                        assert song is not None
                        audio = AudioTrack(Path(song), audio_plan, container, audio_start)
                elif data != extradata:
                    raise RuntimeError(
                        f"segment {str(path)!r} was encoded with other settings than the first"
                    )
            seen = set()
            for packet, pts, _ in _segment_packets(path, seg, fps):
                dts = written - delay
                if not seg.start <= pts < seg.stop or dts > pts:
                    raise RuntimeError(f"segment {str(path)!r} holds frame {pts} out of its range")
                seen.add(pts)
                packet.pts, packet.dts, packet.duration = pts, dts, 1
                packet.time_base = time_base
                packet.stream = stream
                container.mux(packet)
                written += 1
                if audio is not None and audio_plan is not None:
                    audio.feed(round(Fraction(written) / fps * audio_plan.rate))
            if len(seen) != seg.frames:
                raise RuntimeError(
                    f"segment {str(path)!r} holds {len(seen)} frames instead of {seg.frames}"
                )
        if audio is not None and audio_plan is not None:
            audio.feed(round(Fraction(written) / fps * audio_plan.rate))
            audio.finish()
            audio = None
        container.close()
        publish(tmp, output, overwrite)
    except BaseException:
        if audio is not None:
            audio.close()
        try:
            container.close()
        except Exception as e:  # the original failure matters, not this one
            logger.debug("while aborting %s: %s", output, e)
        tmp.unlink(missing_ok=True)
        raise
    return written
