"""``dmv-fast live``: music in (a file at real-time pace, raw PCM on stdin, a sound card),
frames out (an MP4 with the audio that was played, raw RGB on stdout, a preview window, an NDI
source), steered while it plays (OSC, the window's keys), stats printed.

The command only wires library parts: the sources (:mod:`dmv_fast.live.sources`,
:func:`dmv_fast.audio.decode.song_blocks`), the session on the engine's generator, the sinks
(:mod:`dmv_fast.live.sinks`, :mod:`~dmv_fast.live.window`, :mod:`~dmv_fast.live.ndi`), the
OSC server (:mod:`dmv_fast.live.osc`) and the run (:func:`dmv_fast.live.runner.run`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import fail, one_line_errors, setup_logging
from dmv_fast.files import Interrupted
from dmv_fast.settings.choices import LIVE_MAX_CHANNELS, LIVE_MAX_RATE, LIVE_MIN_RATE, LIVE_QUEUE

logger = logging.getLogger("dmv_fast")


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
        bool,
        typer.Option(
            "--raw",
            help="Raw RGB24 frames on stdout (H x W x 3 bytes each; the size is printed "
            "on stderr before the first frame).",
        ),
    ] = False,
    window: Annotated[
        bool,
        typer.Option("--window", help="Show the frames in a window; closing it ends the session."),
    ] = False,
    overlay: Annotated[
        bool, typer.Option("--overlay", help="Start the window with the stats overlay shown.")
    ] = False,
    ndi: Annotated[
        str | None, typer.Option("--ndi", help="Publish the frames as this NDI source.")
    ] = None,
    osc: Annotated[
        str | None,
        typer.Option(
            "--osc", help="Take OSC control messages on this UDP PORT (127.0.0.1) or HOST:PORT."
        ),
    ] = None,
    stats: Annotated[
        Path | None, typer.Option("--stats", help="Write the stats to this JSON file.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds of audio.")
    ] = None,
    resolution: params.Resolution = params.LIVE_RESOLUTION,
    aspect: params.Aspect = None,
    size: params.Size = None,
    fill: params.Fill = params.FILL,
    frame_length: params.FrameLength = params.LIVE_FRAME_LENGTH,
    pitch_sensitivity: params.PitchSensitivity = params.PITCH_SENSITIVITY,
    tempo_sensitivity: params.TempoSensitivity = params.TEMPO_SENSITIVITY,
    depth: params.Depth = params.DEPTH,
    classes: params.Classes = None,
    num_classes: params.NumClasses = params.NUM_CLASSES,
    jitter: params.Jitter = params.JITTER,
    truncation: params.Truncation = params.TRUNCATION,
    smooth_factor: params.SmoothFactor = params.SMOOTH_FACTOR,
    lookahead: Annotated[
        int, typer.Option("--lookahead", help="Frames of class smoothing look-ahead (latency).")
    ] = 0,
    seed: params.Seed = None,
    weights: params.Weights = None,
    backend: params.Backend = params.BACKEND,
    precision: params.Precision = params.PRECISION,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "--batch_size", help="Frames per generator call.")
    ] = params.LIVE_BATCH_SIZE,
    queue: Annotated[
        int, typer.Option("--queue", help="Slots of each bounded queue.")
    ] = LIVE_QUEUE,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads of the generator.")
    ] = None,
    overwrite: params.Overwrite = False,
    quiet: params.Quiet = False,
    verbose: params.Verbose = False,
) -> None:
    """Visualize music live: frames follow the audio as it plays, late frames are dropped."""
    import itertools

    from dmv_fast.audio.decode import song_blocks
    from dmv_fast.files import atomic_write
    from dmv_fast.live import ndi as live_ndi
    from dmv_fast.live import window as live_window
    from dmv_fast.live.osc import OscServer
    from dmv_fast.live.runner import run
    from dmv_fast.live.session import LiveSession
    from dmv_fast.live.sinks import FileSink, PipeSink, Sink, Timeline
    from dmv_fast.live.sources import BLOCK, device_blocks, stdin_blocks
    from dmv_fast.render.api import Visualizer
    from dmv_fast.render.preflight import check_output
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.vectors.online import OnlineTrajectory

    setup_logging(verbose, quiet)
    stop = threading.Event()
    timeline: Timeline | None = None
    server: OscServer | None = None
    interrupts: list[KeyboardInterrupt] = []
    try:
        with one_line_errors("no partial video was written" if output_file else ""):
            sources = [s for s in (song is not None, stdin, input_device is not None) if s]
            if len(sources) != 1:
                raise ValueError("give exactly one input: --song FILE, --stdin or --input-device")
            if rate is not None:
                _check_rate(rate)
            if stdin and rate is None:
                raise ValueError("--stdin needs --rate (the sample rate of the PCM, in Hz)")
            if song is None:
                _check_channels(channels, output_file is not None)
            _check_session(duration, queue, batch_size, threads)
            if stats is not None:
                _check_stats(stats, [p for p in (song, output_file) if p is not None])
            if overlay and not window:
                raise ValueError("--overlay needs --window")
            if window:
                live_window.check_display()
            if ndi is not None:
                live_ndi.check_name(ndi)
                live_ndi.load_ndi()
            if osc is not None:
                server = OscServer(osc)  # binds now: a taken port fails before any work
            spec = params.model_spec(
                resolution,
                weights,
                backend,
                precision,
                batch_size,
                1,
                "stretch",
                aspect,
                size,
                fill,
            )
            options = RenderOptions(
                song=str(song) if song else "-",
                pitch_sensitivity=pitch_sensitivity,
                tempo_sensitivity=tempo_sensitivity,
                depth=depth,
                classes=params.class_indices(classes),
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
            vis = Visualizer(spec, threads=threads, lanes=1)  # one batch at a time, all cores
            if song is not None:
                in_rate, _, blocks = song_blocks(song)
                where = f"in {str(song)!r}"
            elif stdin:
                assert rate is not None
                in_rate, blocks = rate, stdin_blocks(channels, BLOCK, stop=stop)
                where = "on stdin"
            else:
                assert input_device is not None
                in_rate, blocks = device_blocks(input_device, rate, channels, BLOCK, stop)
                _check_rate(in_rate)
                where = f"from input device {input_device!r}"
            session = LiveSession(vis.generator, trajectory, queue=queue, batch=batch_size)
            session.warm_up()
            if server is not None:  # steered from now on, before the first block
                server.start(session.controls)
            sinks: list[Sink] = []
            if output_file is not None:
                sinks.append(FileSink(output_file, song, overwrite=True))
            if raw:
                sinks.append(PipeSink())
            if window:
                sinks.append(
                    live_window.WindowSink(
                        controls=session.controls,
                        on_close=stop.set,  # like the end of the input: the frames so far come out
                        overlay=lambda: _overlay(session, timeline),
                        show_overlay=overlay,
                    )
                )
            if ndi is not None:
                sinks.append(live_ndi.NdiSink(ndi))
            timeline = Timeline(sinks)
            height, width = vis.plan.frame_size
            timeline.open((height, width), options.fps)  # a window, NDI: up before the audio
            # The first block before any frame: no audio at all is one line, no file (the
            # outputs are aborted), not one frame.
            first = next(blocks, None)
            if first is None:
                raise ValueError(f"no audio {where}")
            blocks = itertools.chain([first], blocks)
            if raw:  # what a player of the stream needs to know, before the first frame
                typer.echo(
                    f"raw video: rgb24 {width}x{height} at {options.fps} frames/s "
                    f"({width * height * 3} bytes a frame)",
                    err=True,
                )
            logger.info(
                "live: %s at %.2f frames/s, seed %d, classes %s",
                spec.shape.describe(),
                float(options.fps),
                trajectory.seed,
                " ".join(map(str, trajectory.classes)),
            )
            result = run(
                session, blocks, in_rate, timeline, paced=song is not None,
                duration=duration, stop=stop, interrupts=interrupts,
            )  # fmt: skip
            if server is not None:
                server.close()
                server = None
            timeline.close(result.frames_total)
            sink_stats = timeline.stats()
            timeline = None
            typer.echo(result.summary(), err=raw)
            for line in sink_stats:
                typer.echo(line.summary(), err=raw)
            if stats is not None:
                record = {
                    **result.to_dict(),
                    "frame_length": options.frame_length,
                    "queue": queue,
                    "threads": threads,
                    "plan": vis.plan.to_dict(),
                    "analysis_latency_ms": 1000 * trajectory.latency,
                    "load_average": list(os.getloadavg()),
                    "sinks": [s.to_dict() for s in sink_stats],
                    "controls": session.controls.to_dict(),
                    "interrupted": bool(interrupts),
                }
                atomic_write(stats, json.dumps(record, indent=2) + "\n")
    finally:
        stop.set()
        if server is not None:
            server.close()
        if timeline is not None:
            timeline.abort()
    if interrupts:  # the first signal ended the input: what was played is kept, said here
        raise _interrupted(interrupts[0], output_file)


def _check_rate(rate: int) -> None:
    """A live input's sample rate: from the lowest the video's audio track resamples from to
    the highest sound cards use."""
    if not LIVE_MIN_RATE <= rate <= LIVE_MAX_RATE:
        raise ValueError(
            f"--rate must be a positive sample rate from {LIVE_MIN_RATE} to {LIVE_MAX_RATE} Hz"
            f", got {rate}"
        )


def _check_channels(channels: int, mp4: bool) -> None:
    """The channels of --stdin or a sound card; with -o, what the MP4's AAC audio carries."""
    from dmv_fast.render.preflight import MAX_CHANNELS

    if not 1 <= channels <= LIVE_MAX_CHANNELS:
        raise ValueError(f"--channels must be from 1 to {LIVE_MAX_CHANNELS}, got {channels}")
    if mp4 and channels > MAX_CHANNELS:
        raise ValueError(
            f"--channels {channels}: the video's AAC audio carries 1 to {MAX_CHANNELS} "
            "channels (mix it down first, or leave out -o)"
        )


def _check_session(
    duration: float | None, queue: int, batch_size: int, threads: int | None
) -> None:
    """The session's own settings, before the model is loaded."""
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"--duration must be a positive finite number of seconds, got {duration}")
    if queue < 1:
        raise ValueError(f"--queue must be at least 1 slot, got {queue}")
    if not 1 <= batch_size <= queue:
        raise ValueError(f"--batch_size must be from 1 to --queue ({queue}), got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(
            f"--threads must be at least 1 (leave it out for one per core), got {threads}"
        )


def _check_stats(stats: Path, others: list[Path]) -> None:
    """--stats: a file (written whole at the end) in a folder that takes a new file, and
    neither the song nor the video."""
    from dmv_fast.files import same_file, temporary_name

    folder = stats.parent if str(stats.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"--stats folder {str(folder)!r} does not exist")
    if stats.is_dir():
        raise ValueError(f"--stats {str(stats)!r} is a folder, not a file")
    if any(same_file(stats, other) for other in others):
        raise ValueError(f"--stats {str(stats)!r} is the song or the video: choose another file")
    probe = temporary_name(stats)  # access() says yes for root, and for /proc
    try:
        with open(probe, "xb"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise ValueError(
            f"--stats folder {str(folder)!r} does not take a new file ({e.strerror or e})"
        ) from None


def _interrupted(exc: KeyboardInterrupt, output: Path | None) -> typer.Exit:
    """The one line of a session ended by a signal, after what was played was kept."""
    by, code = (f" by {exc}", exc.exit_code) if isinstance(exc, Interrupted) else ("", 130)
    kept = f"; the video of the audio played so far is in {str(output)!r}" if output else ""
    return fail(f"interrupted{by}{kept}", code)


def _overlay(session: Any, timeline: Any) -> list[str]:
    """The window's stats overlay: the session, each sink, the settings."""
    stats = session.stats()
    lines = [
        f"{stats.fps:.1f} of {stats.target_fps:.1f} frames/s, {stats.frames_dropped} dropped, "
        f"latency p50 {stats.latency_p50_ms:.0f} ms",
        session.controls.describe(),
    ]
    if timeline is not None:
        lines += [
            f"{s.name}: {s.dropped} dropped, p50 {s.latency_p50_ms:.0f} ms"
            for s in timeline.stats()
        ]
    return lines
