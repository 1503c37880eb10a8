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
import os
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import one_line_errors, setup_logging
from dmv_fast.settings.choices import LIVE_QUEUE

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
            "on stderr at start).",
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
    from dmv_fast.audio.decode import song_blocks
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
    try:
        with one_line_errors(""):
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
            vis = Visualizer(spec, threads=threads)  # resolves the plan once
            if song is not None:
                in_rate, _, blocks = song_blocks(song)
            elif stdin:
                assert rate is not None
                in_rate, blocks = rate, stdin_blocks(channels, BLOCK)
            else:
                assert input_device is not None
                in_rate, blocks = device_blocks(input_device, rate, channels, BLOCK, stop)
            session = LiveSession(vis.generator, trajectory, queue=queue, batch=batch_size)
            session.warm_up()
            sinks: list[Sink] = []
            if output_file is not None:
                sinks.append(FileSink(output_file, song, overwrite=True))
            if raw:
                sinks.append(PipeSink())
            if window:
                sinks.append(
                    live_window.WindowSink(
                        controls=session.controls,
                        on_close=stop.set,  # like a Ctrl-C: the frames so far still come out
                        overlay=lambda: _overlay(session, timeline),
                        show_overlay=overlay,
                    )
                )
            if ndi is not None:
                sinks.append(live_ndi.NdiSink(ndi))
            timeline = Timeline(sinks)
            height, width = vis.plan.frame_size
            timeline.open((height, width), options.fps)
            if raw:  # what a player of the stream needs to know, before the first frame
                typer.echo(
                    f"raw video: rgb24 {width}x{height} at {options.fps} frames/s "
                    f"({width * height * 3} bytes a frame)",
                    err=True,
                )
            if server is not None:
                server.start(session.controls)
            logger.info(
                "live: %s at %.2f frames/s, seed %d, classes %s",
                spec.shape.describe(),
                float(options.fps),
                trajectory.seed,
                " ".join(map(str, trajectory.classes)),
            )
            result = run(
                session, blocks, in_rate, timeline, paced=song is not None,
                duration=duration, stop=stop,
            )  # fmt: skip
            if server is not None:
                server.close()
                server = None
            timeline.close(result.frames_total)
            sink_stats = timeline.stats()
            timeline = None
    finally:
        stop.set()
        if server is not None:
            server.close()
        if timeline is not None:
            timeline.abort()
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
        }
        stats.write_text(json.dumps(record, indent=2) + "\n")


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
