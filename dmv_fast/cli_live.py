"""``dmv-fast live``: music in (a file at real-time pace, raw PCM on stdin, a sound card),
frames out (an MP4 with the audio that was played, raw RGB on stdout), stats printed.

:func:`register` adds the command to the ``dmv-fast`` app. The input sources live here too:
:func:`song_blocks` decodes a file block by block at its own rate, :func:`play` pushes blocks
on the media clock (a :class:`~dmv_fast.live.Pacer` over samples, so a long file keeps pace
with the wall clock without drift).

The outputs keep the audio's timeline: video frame ``k`` shows the audio at ``k / fps``; a
frame the generator dropped is replaced by the last frame made before it, so the MP4 (and the
raw stream) has exactly one frame per hop, like ``dmv-fast render``.
"""

import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from dmv_fast import plan
from dmv_fast.live import LiveSession, LiveStats, Pacer
from dmv_fast.terminal import fail, setup_logging

logger = logging.getLogger("dmv_fast")

_RESOLUTIONS = tuple(str(r) for r in plan.RESOLUTIONS)
BLOCK = 1024  # samples per pushed block at the source's own rate (23 ms at 44.1 kHz)


# Input sources ------------------------------------------------------------------------------


def song_blocks(path: str | os.PathLike[str], block: int = BLOCK) -> tuple[int, int, Iterator]:
    """Decode a song's first audio stream lazily.

    Returns:
        ``(rate, channels, blocks)``; ``blocks`` yields ``np.ndarray [shape=(n, channels)]``
        float32 with ``n <= block``, at the file's own rate.
    """
    import av

    from dmv_fast.audio import probe_audio

    info = probe_audio(path)

    def blocks() -> Iterator[np.ndarray]:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt")  # packed float, same rate and layout
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    data = out.to_ndarray().reshape(-1, info.channels)
                    for start in range(0, len(data), block):
                        yield data[start : start + block]

    return info.sample_rate, info.channels, blocks()


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


def _stdin_blocks(channels: int, block: int) -> Iterator[np.ndarray]:
    stream = sys.stdin.buffer
    size = block * channels * 4
    pending = b""
    while True:
        chunk = stream.read(size - len(pending))
        if not chunk:
            break
        pending += chunk
        usable = len(pending) // (channels * 4) * channels * 4
        if usable and (len(pending) == size or usable == len(pending)):
            data = np.frombuffer(pending[:usable], dtype="<f4").reshape(-1, channels)
            pending = pending[usable:]
            yield data.astype(np.float32)
    if pending:
        logger.warning("stdin ended inside a sample frame; %d bytes ignored", len(pending))


def _device_blocks(
    device: str, rate: int | None, channels: int, block: int, stop: threading.Event
) -> tuple[int, Iterator[np.ndarray]]:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise ValueError(
            f"--input-device needs the optional sounddevice package and PortAudio: "
            f"pip install 'dmv-fast[live]' ({e})"
        ) from None
    import queue

    chosen: int | str = int(device) if device.isdigit() else device
    try:
        info = sd.query_devices(chosen, "input")
    except (ValueError, sd.PortAudioError) as e:
        raise ValueError(f"input device {device!r} not found ({e})") from None
    actual = int(rate or info["default_samplerate"])
    blocks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=256)

    def callback(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:
            logger.warning("audio input overflow: a block was lost")

    def generate() -> Iterator[np.ndarray]:
        with sd.InputStream(
            device=chosen,
            samplerate=actual,
            channels=channels,
            dtype="float32",
            blocksize=block,
            callback=callback,
        ):
            while not stop.is_set():
                try:
                    item = blocks.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is not None:
                    yield item

    return actual, generate()


# Outputs ------------------------------------------------------------------------------------


class _Outputs:
    """Frame ``k`` at ``k / fps``: MP4 and/or raw RGB on stdout, gaps filled with the last
    frame. With an MP4 and live audio, the video is kept lossless in a temporary file and
    muxed with the recorded audio at the end."""

    def __init__(self, output: Path | None, raw: bool, fps: Fraction, size: int, audio: Any):
        from dmv_fast.encode import VideoWriter

        self.raw = sys.stdout.buffer if raw else None
        self.output = output
        self.fps = fps
        self.size = size
        self.written = 0
        self.last: np.ndarray | None = None
        self.writer: VideoWriter | None = None
        self.recording: Path | None = None
        self.audio_file: Any = None
        if output is None:
            return
        if isinstance(audio, (str, Path)):  # the song itself is the audio track
            self.writer = VideoWriter(output, size, size, fps, audio, encoder="x264")
        else:  # live audio: record it, mux at the end
            import soundfile as sf

            rate, channels = audio
            tag = secrets.token_hex(4)
            self.recording = output.with_name(f".{output.name}.live-{tag}.wav")
            self.audio_file = sf.SoundFile(
                self.recording, "w", samplerate=rate, channels=channels, subtype="FLOAT"
            )
            video_tmp = output.with_name(f".{output.name}.live-{tag}.mkv")
            self.writer = VideoWriter(video_tmp, size, size, fps, None, encoder="x264", crf=0)
        self.writer.open()

    def audio(self, block: np.ndarray) -> None:
        if self.audio_file is not None:
            self.audio_file.write(block)

    def frame(self, index: int, image: np.ndarray) -> None:
        if self.last is None:
            self.last = np.empty_like(image)
        else:
            while self.written < index:  # dropped frames: hold the last one
                self._emit(self.last)
        np.copyto(self.last, image)
        self._emit(image)

    def _emit(self, image: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(image)
        if self.raw is not None:
            self.raw.write(image.tobytes())
            self.raw.flush()
        self.written += 1

    def close(self, total: int) -> None:
        if self.last is not None:
            while self.written < total:
                self._emit(self.last)
        if self.writer is None:
            return
        self.writer.close()
        if self.recording is not None:
            self.audio_file.close()
            self._mux()

    def _mux(self) -> None:
        import av

        from dmv_fast.encode import VideoWriter

        assert self.writer is not None and self.output is not None and self.recording is not None
        tmp = self.writer.path
        try:
            with (
                VideoWriter(
                    self.output, self.size, self.size, self.fps, self.recording, encoder="x264",
                    pixel_format="yuv420p",
                ) as final,
                av.open(str(tmp)) as source,
            ):  # fmt: skip
                for frame in source.decode(video=0):
                    final.write(frame.to_ndarray(format="yuv420p")[None])
        finally:
            tmp.unlink(missing_ok=True)
            self.recording.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        if self.audio_file is not None:
            self.audio_file.close()
        for path in (self.recording,):
            if path is not None:
                path.unlink(missing_ok=True)


# The command --------------------------------------------------------------------------------


def _run(
    session: LiveSession,
    blocks: Iterator[np.ndarray],
    rate: int,
    outputs: _Outputs,
    paced: bool,
    duration: float | None,
    stop: threading.Event,
) -> LiveStats:
    """Feed the audio in a thread, write frames in this one; returns the session's stats."""
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
        outputs.audio(block)
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
            session.finish()

    feeder = threading.Thread(target=feed, name="dmv-fast-live-input", daemon=True)
    with session:
        feeder.start()
        try:
            while True:
                try:
                    frame = session.pull(timeout=0.1, newest=False)
                except KeyboardInterrupt:
                    if stop.is_set():
                        raise
                    stop.set()  # the first Ctrl-C ends the input and keeps what was played
                    logger.warning("interrupted: finishing the frames of the audio so far")
                    continue
                if frame is not None:
                    outputs.frame(frame.index, frame.image)
                elif session.done:
                    break
        finally:
            stop.set()
            feeder.join(timeout=2.0)
    if failure:
        raise failure[0]
    return session.stats()


def live(
    song: Annotated[
        Path | None,
        typer.Option(
            "--song", exists=True, dir_okay=False, help="Audio file, played in real time."
        ),
    ] = None,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Raw float32 little-endian PCM on stdin.")
    ] = False,
    rate: Annotated[
        int | None, typer.Option("--rate", help="Sample rate of --stdin / --input-device (Hz).")
    ] = None,
    channels: Annotated[int, typer.Option("--channels", help="Channels of --stdin / device.")] = 1,
    input_device: Annotated[
        str | None,
        typer.Option("--input-device", "--input_device", help="Sound card (name or index)."),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("--output-file", "--output_file", "-o", help="MP4 with the audio played."),
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Raw RGB24 frames on stdout (H x W x 3 bytes each).")
    ] = False,
    stats: Annotated[
        Path | None, typer.Option("--stats", help="Write the stats to this JSON file.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds of audio.")
    ] = None,
    resolution: Annotated[
        int, typer.Option("--resolution", help=f"GAN resolution: {', '.join(_RESOLUTIONS)}.")
    ] = 128,
    frame_length: Annotated[
        int,
        typer.Option("--frame-length", "--frame_length", help="Audio hop per video frame (x64)."),
    ] = 1024,
    pitch_sensitivity: Annotated[
        float, typer.Option("--pitch-sensitivity", "--pitch_sensitivity", help="1-299.")
    ] = 220,
    tempo_sensitivity: Annotated[
        float, typer.Option("--tempo-sensitivity", "--tempo_sensitivity", help="> 0.")
    ] = 0.25,
    depth: Annotated[float, typer.Option("--depth", help="Max class weight, 0.01-1.")] = 1.0,
    classes: Annotated[
        list[str] | None, typer.Option("--classes", help="ImageNet classes (index or name).")
    ] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", "--num_classes")] = 12,
    jitter: Annotated[float, typer.Option("--jitter", help="0-1.")] = 0.5,
    truncation: Annotated[float, typer.Option("--truncation", help="(0, 1].")] = 1.0,
    smooth_factor: Annotated[
        float, typer.Option("--smooth-factor", "--smooth_factor", help="> 0.")
    ] = 20,
    lookahead: Annotated[
        int, typer.Option("--lookahead", help="Frames of class smoothing look-ahead (latency).")
    ] = 0,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", help="biggan-deep-*, a folder, or 'random'.")
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help=f"One of {', '.join(plan.BACKENDS)}.")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help=f"One of {', '.join(plan.PRECISIONS)}.")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", "--batch_size", help="Frames per generator call.")
    ] = 1,
    queue: Annotated[int, typer.Option("--queue", help="Slots of each bounded queue.")] = 2,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads of the generator.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", "-y")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Visualize music live: frames follow the audio as it plays, late frames are dropped."""
    from dmv_fast.classes import resolve_classes
    from dmv_fast.online import OnlineTrajectory
    from dmv_fast.options import RenderOptions
    from dmv_fast.pipeline import Visualizer
    from dmv_fast.plan import ModelSpec
    from dmv_fast.preflight import check_output

    setup_logging(verbose, quiet)
    stop = threading.Event()
    outputs: _Outputs | None = None
    try:
        sources = [s for s in (song is not None, stdin, input_device is not None) if s]
        if len(sources) != 1:
            raise ValueError("give exactly one input: --song FILE, --stdin or --input-device")
        if stdin and not rate:
            raise ValueError("--stdin needs --rate (the sample rate of the PCM, in Hz)")
        if rate is not None and rate <= 0:
            raise ValueError(f"--rate must be a positive number of Hz, got {rate}")
        if not 1 <= channels <= 64:
            raise ValueError(f"--channels must be in 1..64, got {channels}")
        if duration is not None and duration <= 0:
            raise ValueError(f"--duration must be > 0 seconds, got {duration}")
        if stats is not None and not stats.resolve().parent.is_dir():
            raise ValueError(f"--stats folder {str(stats.parent)!r} does not exist")
        spec = ModelSpec(
            resolution=resolution,
            weights=weights,
            backend=backend,
            precision=precision,
            batch_size=batch_size,
        )
        options = RenderOptions(
            song=str(song) if song else "-",
            pitch_sensitivity=pitch_sensitivity,
            tempo_sensitivity=tempo_sensitivity,
            depth=depth,
            classes=resolve_classes(classes) if classes else None,
            num_classes=num_classes,
            jitter=jitter,
            frame_length=frame_length,
            truncation=truncation,
            smooth_factor=smooth_factor,
            seed=seed,
        )
        if output_file is not None:
            check_output(output_file, overwrite, song)
        trajectory = OnlineTrajectory(options, lookahead=lookahead)
        vis = Visualizer(spec, threads=threads)  # resolves the plan once
        if song is not None:
            in_rate, in_channels, blocks = song_blocks(song)
        elif stdin:
            assert rate is not None
            in_rate, in_channels, blocks = rate, channels, _stdin_blocks(channels, BLOCK)
        else:
            assert input_device is not None
            in_rate, blocks = _device_blocks(input_device, rate, channels, BLOCK, stop)
            in_channels = channels
        session = LiveSession(vis.generator, trajectory, queue=queue, batch=batch_size)
        session.warm_up()
        size = spec.resolution
        outputs = _Outputs(
            output_file,
            raw,
            options.fps,
            size,
            song if song is not None else (in_rate, in_channels),
        )
        logger.info(
            "live: %d px at %.2f frames/s, seed %d, classes %s",
            size,
            float(options.fps),
            trajectory.seed,
            " ".join(map(str, trajectory.classes)),
        )
        result = _run(session, blocks, in_rate, outputs, song is not None, duration, stop)
        outputs.close(result.frames_total)
    except KeyboardInterrupt:
        stop.set()
        if outputs is not None:
            outputs.abort()
        raise fail("interrupted", 130) from None
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError, OSError) as exc:
        stop.set()
        if outputs is not None:
            outputs.abort()
        raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    typer.echo(result.summary(), err=raw)
    if stats is not None:
        record = {
            **result.to_dict(),
            "frame_length": options.frame_length,
            "queue": queue,
            "threads": threads,
            "plan": vis.plan.to_dict(),
            "analysis_latency_ms": 1000 * trajectory.latency,
            "load_average": list(os.getloadavg()),
        }
        stats.write_text(json.dumps(record, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Add the ``live`` command to the ``dmv-fast`` app."""
    app.command("live")(live)
