"""Segments: a render cut on exact frame boundaries, encoded apart, joined without re-encoding.

A video of ``n`` frames is cut into consecutive segments of ``segment_frames`` frames (the
last one shorter). Each segment is encoded as video only with libx264 at identical settings
(so every segment has the same SPS/PPS), starts on an IDR frame, and has its frames at
``pts = 0, 1, ...`` (local index) in a ``1/fps`` time base. It is written under a temporary
name and renamed, so a file under a final name is always a whole segment.

The segments live in ``NAME.segments/`` beside ``NAME.mp4``, with ``manifest.json``: the
settings that decide the pixels and the bitstream. A rerun with the same manifest keeps
every finished segment and renders only the missing ones; a different manifest clears the
folder.

:func:`join_segments` remuxes the segments' packets into one stream, shifting each
segment's presentation timestamps by its first frame's global index (offsets come from pts:
with B-frames a segment's first dts is negative, and a short segment has a smaller decode
delay; decode timestamps are renumbered over the whole stream), then encodes the song's audio once, interleaved with
the video, exactly as a one-process render does (AAC priming and frames never split at a
join). The output appears under its final name only when every segment was joined.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from dmv_fast.audiotrack import AudioTrack, plan_audio
from dmv_fast.encode import VideoWriter
from dmv_fast.nvenc import GOP
from dmv_fast.plan import CONTAINERS

logger = logging.getLogger("dmv_fast")

#: Frames per segment: x264's own keyframe interval, so cutting adds about as many IDR
#: frames as a one-process render has anyway.
SEGMENT_FRAMES = GOP
#: x264 threads per segment encoder. Segments are the parallelism; one thread per encoder
#: also makes every segment's bitstream independent of the number of workers.
SEGMENT_THREADS = 1
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "dmv-fast-segments"
_PARTIAL = ".partial-"


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


def segments_folder(output_file: str | os.PathLike[str]) -> Path:
    """The segments folder of an output: ``NAME.segments/`` beside ``NAME.mp4``."""
    out = Path(output_file)
    return out.with_name(out.stem + ".segments")


def _normalise(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as it reads back from JSON."""
    try:
        return json.loads(json.dumps(manifest))
    except (TypeError, ValueError) as e:
        raise ValueError(f"segments manifest must be JSON data: {e}") from e


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}{_PARTIAL}{secrets.token_hex(4)}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def count_packets(path: Path) -> int | None:
    """Video packets in a segment file (demuxed, not decoded); None if it cannot be read."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.FFmpegError, OSError):
        return None


class SegmentFolder:
    """``NAME.segments/``: finished segment files plus the manifest that made them."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest

    @staticmethod
    def read_manifest(folder: Path) -> dict[str, Any] | None:
        """The manifest of an existing folder, or None (no folder, or an unreadable one)."""
        try:
            data = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None

    @classmethod
    def open(cls, folder: Path, manifest: dict[str, Any]) -> SegmentFolder:
        """Create or reuse ``folder`` for ``manifest``.

        A folder made with another manifest (other settings, song or vectors) holds segments
        of another video: they are deleted. Leftover temporary files of an interrupted run
        are deleted too.
        """
        manifest = _normalise({"format": MANIFEST_FORMAT, **manifest})
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{str(folder)!r} exists and is not a folder")
        folder.mkdir(exist_ok=True)
        found = cls.read_manifest(folder)
        if found != manifest:
            stale = sorted(folder.glob("*.mp4"))
            if stale:
                logger.info(
                    "%s holds %d segments of other settings; rendering them again",
                    folder,
                    len(stale),
                )
            for path in stale:
                path.unlink()
            write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
        for path in folder.glob(f".*{_PARTIAL}*"):
            path.unlink(missing_ok=True)
        return cls(folder, manifest)

    def path(self, segment: Segment) -> Path:
        return self.folder / segment.name

    def missing(self, segments: Sequence[Segment]) -> list[Segment]:
        """Segments without a whole file; a damaged or short file is deleted and counted."""
        out = []
        for seg in segments:
            path = self.path(seg)
            if not path.exists():
                out.append(seg)
                continue
            count = count_packets(path)
            if count != seg.frames:
                logger.warning(
                    "segment %s holds %s frames instead of %d; rendering it again",
                    path,
                    count,
                    seg.frames,
                )
                path.unlink()
                out.append(seg)
        return out

    def write(self, segment: Segment, data: bytes) -> Path:
        """Store an encoded segment received from elsewhere (atomically)."""
        path = self.path(segment)
        write_atomic(path, data)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def encode_segment(
    batches: Iterable[np.ndarray],
    path: Path,
    width: int,
    height: int,
    fps: Fraction,
    settings: VideoSettings,
    pixel_format: str = "rgb24",
) -> int:
    """Encode frames as one video-only segment at ``path`` (written atomically).

    Args:
        batches: ``np.ndarray [shape=(b, H, W, 3)]`` uint8 RGB batches, or
            ``[shape=(b, H * 3 // 2, W)]`` planes for ``pixel_format="yuv420p"``.
        path: the segment file (``.mp4``).
        width, height: frame size in pixels.
        fps: the exact frame rate.
        settings: libx264 settings, identical for every segment of a video.

    Returns:
        The number of frames encoded.
    """
    with VideoWriter(
        path,
        width,
        height,
        fps,
        audio=None,
        encoder="x264",
        crf=settings.crf,
        preset=settings.preset,
        threads=settings.threads,
        overwrite=True,
        pixel_format=pixel_format,
    ) as writer:
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
) -> int:
    """Join segment files into ``output`` without re-encoding, then mux the song's audio.

    Args:
        parts: ``(segment, file)`` pairs covering frames ``0..n-1`` in order.
        output: the video (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``); written under a
            temporary name and renamed at the end, replacing an existing file.
        fps: the exact frame rate of every segment.
        song: the song whose first audio track is encoded once as AAC, trimmed to
            ``n / fps`` seconds; None: no audio.
        audio_start: seconds of the song to skip before the first frame.

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
    tmp = output.with_name(f".{output.name}{_PARTIAL}{secrets.token_hex(4)}{output.suffix}")
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
        os.replace(tmp, output)
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
