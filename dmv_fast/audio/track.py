"""The song's own audio track in the video: AAC at its own rate and channel layout.

:func:`plan_audio` decides the AAC stream (rate, layout, bit rate) from the song's header and
refuses what the video cannot carry; :class:`AudioTrack` decodes the song and encodes it into
a container block by block as the frames arrive (nothing holds the whole song), trimmed to the
video. Both the one-process writer (:class:`dmv_fast.video.writer.VideoWriter`) and segment joins
(:mod:`dmv_fast.video.segments`) mux the audio through it, once per video.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

logger = logging.getLogger("dmv_fast")

#: AAC channel layouts used when the song's layout has no channel names.
_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}
_AAC_BITS_PER_CHANNEL = 96_000
#: Lowest song sample rate taken: FFmpeg's resampler yields nothing from a few Hz to AAC's
#: lowest rate (7350 Hz), which would leave the video without sound.
MIN_AUDIO_RATE = 1000


@dataclass(frozen=True)
class AudioPlan:
    rate: int  # the output rate (the song's own unless AAC cannot carry it)
    layout: str  # the output channel layout name
    channels: int
    bit_rate: int


def check_audio(path: str | os.PathLike[str]) -> None:
    """Raise the one-line ValueError the encoder would raise for this song's audio track
    (no track, more than 8 channels, a layout AAC cannot carry), before any work starts."""
    plan_audio(Path(path), log=False)


def plan_audio(path: Path, log: bool = True) -> AudioPlan:
    """Check the song's audio track and choose the AAC settings, before any work."""
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.audio:
                raise ValueError(f"{str(path)!r} has no audio track")
            ctx = inp.streams.audio[0].codec_context
            rate, layout = ctx.sample_rate, ctx.layout
    except av.FFmpegError as e:
        raise ValueError(f"cannot read audio from {str(path)!r}: {e}") from e
    channels = layout.nb_channels
    if not 1 <= channels <= 8:
        raise ValueError(f"{str(path)!r} has {channels} audio channels; AAC carries 1 to 8")
    if rate < MIN_AUDIO_RATE:
        raise ValueError(
            f"{str(path)!r} is sampled at {rate} Hz; the video's audio track needs at least"
            f" {MIN_AUDIO_RATE} Hz"
        )
    aac_rates = av.Codec("aac", "w").audio_rates or ()
    out_rate = rate
    if aac_rates and rate not in aac_rates:
        out_rate = min(aac_rates, key=lambda r: (abs(r - rate), -r))
        if log:
            logger.warning(
                "AAC cannot carry %d Hz; resampling the audio track to %d Hz", rate, out_rate
            )
    bit_rate = min(_AAC_BITS_PER_CHANNEL, 6 * out_rate) * channels
    for name in dict.fromkeys((layout.name, _DEFAULT_LAYOUTS[channels])):
        if name.endswith(" channels"):  # no channel names: AAC needs a named layout
            continue
        try:
            ctx = av.CodecContext.create("aac", "w")
            ctx.sample_rate = out_rate
            ctx.layout = name
            ctx.format = "fltp"
            ctx.bit_rate = bit_rate
            ctx.open()
        except (av.FFmpegError, ValueError):
            continue
        return AudioPlan(out_rate, name, channels, bit_rate)
    raise ValueError(f"AAC cannot encode the {layout.name!r} channel layout of {str(path)!r}")


class AudioTrack:
    """Decode the song lazily and encode it as AAC up to a given sample count."""

    def __init__(self, path: Path, plan: AudioPlan, container: Any, start: float):
        self._path = path
        self._plan = plan
        self._container = container
        stream = container.add_stream("aac", rate=plan.rate, layout=plan.layout)
        stream.bit_rate = plan.bit_rate
        stream.time_base = Fraction(1, plan.rate)
        # Samples are counted in 1/rate whatever the muxer makes of the stream's time base
        # once its header is written (Matroska's is 1/1000): frames carry this one.
        self._time_base = Fraction(1, plan.rate)
        self._stream = stream
        self._input = av.open(str(path))
        self._decoded = self._input.decode(self._input.streams.audio[0])
        self._skip = round(start * plan.rate)
        self._pending = np.zeros((plan.channels, 0), np.float32)
        self._resampler: Any = None
        self._ended = False
        self.samples = 0  # samples encoded so far

    def feed(self, target: int) -> None:
        """Encode audio until ``target`` samples in total, or the end of the song."""
        while self.samples < target:
            if self._pending.shape[1] == 0:
                block = self._next_block()
                if block is None:
                    return
                self._pending = block
                continue
            take = min(self._pending.shape[1], target - self.samples)
            chunk, self._pending = self._pending[:, :take], self._pending[:, take:]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk.T).reshape(1, -1), format="flt", layout=self._plan.layout
            )
            frame.sample_rate = self._plan.rate
            frame.time_base = self._time_base
            frame.pts = self.samples
            self._container.mux(self._stream.encode(frame))
            self.samples += take

    def finish(self) -> None:
        self._container.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()

    def _next_block(self) -> np.ndarray | None:
        """The next decoded samples as ``float32 [channels, n]``, or None at the end."""
        while not self._ended:
            try:
                frame = next(self._decoded, None)
            except av.FFmpegError as e:
                raise RuntimeError(f"cannot decode the audio of {str(self._path)!r}: {e}") from e
            if self._resampler is None:
                # Sample format only (and the rate where AAC cannot carry the song's own);
                # the channel layout is relabelled below, never remixed. Packed samples:
                # PyAV reports 9 planes for 8-channel planar frames and crashes reading them.
                self._resampler = av.AudioResampler(
                    format="flt",
                    layout=frame.layout if frame is not None else self._plan.layout,
                    rate=self._plan.rate,
                )
            out = self._resampler.resample(frame)
            if frame is None:
                self._ended = True
            if not out:
                continue
            channels = self._plan.channels
            block = np.concatenate(
                [f.to_ndarray().reshape(-1, channels).T for f in out], axis=1
            ).astype(np.float32)
            if self._skip:
                cut = min(self._skip, block.shape[1])
                block, self._skip = block[:, cut:], self._skip - cut
            if block.shape[1]:
                return block
        return None
