"""``dmv-fast``: the command line. It parses, builds options, calls the library, and exits 1
with a one-line message on a handled failure."""

from __future__ import annotations

import dataclasses
import errno
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

import dmv_fast
from dmv_fast import plan
from dmv_fast.cli_batch import expand_bare_ray
from dmv_fast.files import Interrupted, interrupts
from dmv_fast.options import RenderOptions
from dmv_fast.terminal import (
    ProgressBars,
    expand_multi_value,
    fail,
    first_line,
    setup_logging,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich markup would eat "[export]" and cut long option names.
    rich_markup_mode=None,
    help="Turn music into BigGAN-deep videos, as fast as the hardware allows.",
)

logger = logging.getLogger("dmv_fast")


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum for typer from one of the plan's choice lists (defined once, there)."""
    return Enum(name, {v if v[0].isalpha() else f"r{v}": v for v in values}, type=str)  # type: ignore[return-value]


Backend = _choices("Backend", plan.BACKENDS)
Precision = _choices("Precision", plan.PRECISIONS)
EncoderChoice = _choices("EncoderChoice", plan.ENCODERS)
Pixels = _choices("Pixels", plan.PIXELS)
Resolution = _choices("Resolution", tuple(str(r) for r in plan.RESOLUTIONS))
Preset = _choices("Preset", plan.X264_PRESETS)

# Defaults, read from where they are defined.
_D: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RenderOptions)}
_M = plan.ModelSpec()
_RESOLUTION = Resolution(str(_M.resolution))
_BACKEND = Backend(_M.backend)
_PRECISION = Precision(_M.precision)
_ENCODER = EncoderChoice(_D["encoder"])
_PRESET = Preset(_D["preset"])
_PIXELS = Pixels(_M.pixels)
_OUTPUT = Path(_D["output_file"])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dmv-fast {dmv_fast.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """dmv-fast: the Deep Music Visualizer, fast."""


@app.command()
def render(
    song: Annotated[Path, typer.Option("--song", help="Audio file (mp3, wav, ogg, flac, ...).")],
    resolution: Annotated[
        Resolution, typer.Option("--resolution", help="GAN resolution.")
    ] = _RESOLUTION,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Seconds of video (default: the whole song)."),
    ] = None,
    pitch_sensitivity: Annotated[
        float,
        typer.Option("--pitch-sensitivity", "--pitch_sensitivity", help="1-299 (200-295 advised)."),
    ] = _D["pitch_sensitivity"],
    tempo_sensitivity: Annotated[
        float,
        typer.Option(
            "--tempo-sensitivity", "--tempo_sensitivity", help="(0, 100] (0.05-0.8 advised)."
        ),
    ] = _D["tempo_sensitivity"],
    depth: Annotated[float, typer.Option("--depth", help="Max class weight, 0.01-1.")] = _D[
        "depth"
    ],
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--classes",
            help="ImageNet classes by index (0-999) or name: --classes 45 99 goldfish ...",
        ),
    ] = None,
    num_classes: Annotated[
        int, typer.Option("--num-classes", "--num_classes", help="Classes used, 1-12.")
    ] = _D["num_classes"],
    sort_classes_by_power: Annotated[
        int,
        typer.Option(
            "--sort-classes-by-power",
            "--sort_classes_by_power",
            min=0,
            max=1,
            help="1: the first class listed gets the strongest pitch.",
        ),
    ] = 0,
    jitter: Annotated[float, typer.Option("--jitter", help="0-1.")] = _D["jitter"],
    frame_length: Annotated[
        int,
        typer.Option("--frame-length", "--frame_length", help="Audio hop per video frame (x64)."),
    ] = _D["frame_length"],
    truncation: Annotated[float, typer.Option("--truncation", help="(0, 1].")] = _D["truncation"],
    smooth_factor: Annotated[
        float, typer.Option("--smooth-factor", "--smooth_factor", help="> 0 (10-30 advised).")
    ] = _D["smooth_factor"],
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "--batch_size",
            help=f"GAN batch size, 1-{plan.MAX_BATCH} (capped at {plan.CPU_BATCH_CAP} on the CPU).",
        ),
    ] = _M.batch_size,
    use_previous_classes: Annotated[
        int,
        typer.Option(
            "--use-previous-classes",
            "--use_previous_classes",
            min=0,
            max=1,
            help="1: reuse the classes recorded next to the output.",
        ),
    ] = 0,
    use_previous_vectors: Annotated[
        int,
        typer.Option(
            "--use-previous-vectors",
            "--use_previous_vectors",
            min=0,
            max=1,
            help="1: reuse the vectors recorded next to the output.",
        ),
    ] = 0,
    output_file: Annotated[
        Path, typer.Option("--output-file", "--output_file", "-o", help="Output MP4.")
    ] = _OUTPUT,
    scaling: Annotated[
        int, typer.Option("--scaling", help=f"Lanczos upscaling factor, 1-{plan.MAX_SCALING}.")
    ] = _M.scaling,
    use_disk: Annotated[
        bool,
        typer.Option(
            "-d",
            "--use-disk",
            "--use_disk",
            help="Write frames to NAME.frames/ as they are made (resumable); build from it.",
        ),
    ] = False,
    save_only: Annotated[
        bool,
        typer.Option(
            "-s",
            "--save-only",
            "--save_only",
            help="Build the video from an existing NAME.frames/ without generating.",
        ),
    ] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for every random draw.")] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="biggan-deep-128/256/512, a local folder, or 'random' (default: pretrained).",
        ),
    ] = None,
    backend: Annotated[Backend, typer.Option("--backend")] = _BACKEND,
    precision: Annotated[
        Precision, typer.Option("--precision", help="int8: CPU only, see the README.")
    ] = _PRECISION,
    encoder: Annotated[EncoderChoice, typer.Option("--encoder")] = _ENCODER,
    crf: Annotated[int, typer.Option("--crf", help="x264 quality, 0-51.")] = _D["crf"],
    preset: Annotated[Preset, typer.Option("--preset", help="x264 preset.")] = _PRESET,
    pixels: Annotated[
        Pixels, typer.Option("--pixels", help="stretch (the original's look) or fixed.")
    ] = _PIXELS,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", "-y", help="Replace an existing output file.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Segment workers (processes), each with its own generator and x264 encoder; "
            "default: the plan's (1 on the CPU).",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Render the segments on Ray actors: a cluster address (auto, HOST:6379, "
            "ray://HOST:10001) or local; a bare --ray means local.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Render a song into a BigGAN-deep music video (MP4 with the song's audio)."""
    from dmv_fast.classes import resolve_classes
    from dmv_fast.pipeline import Visualizer

    setup_logging(verbose, quiet)
    try:
        spec = plan.ModelSpec(
            resolution=resolution,
            weights=weights,
            backend=backend,
            precision=precision,
            batch_size=batch_size,
            scaling=scaling,
            pixels=pixels,
        )
        options = RenderOptions(
            song=str(song),
            duration=duration,
            pitch_sensitivity=pitch_sensitivity,
            tempo_sensitivity=tempo_sensitivity,
            depth=depth,
            classes=resolve_classes(classes) if classes else None,
            num_classes=num_classes,
            sort_classes_by_power=bool(sort_classes_by_power),
            jitter=jitter,
            frame_length=frame_length,
            truncation=truncation,
            smooth_factor=smooth_factor,
            use_previous_classes=bool(use_previous_classes),
            use_previous_vectors=bool(use_previous_vectors),
            output_file=str(output_file),
            use_disk=use_disk,
            save_only=save_only,
            seed=seed,
            encoder=encoder,
            crf=crf,
            preset=preset,
        )
        with ProgressBars(enabled=not quiet) as progress:
            vis = Visualizer(spec, encoder=options.encoder, workers=workers, progress=progress)
            result = vis.render(options, overwrite=overwrite, workers=workers, ray_address=ray)
    except Interrupted as exc:  # SIGTERM / SIGHUP, turned into an interrupt by main()
        message = f"interrupted by {exc}; no partial video was written"
        raise fail(message, exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted; no partial video was written", 130) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            full = f"disk full while writing {str(output_file)!r} ({exc.strerror})"
            raise fail(full + "; no partial file was kept") from None
        raise fail(first_line(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise fail(first_line(exc)) from None
    except Exception as exc:  # no traceback reaches the user; -v logs it
        logger.debug("unexpected failure", exc_info=True)
        raise fail(f"{type(exc).__name__}: {first_line(exc)}") from None
    logger.info(
        "wrote %s: %d frames at %s fps, seed %d, classes %s",
        result.output,
        result.frames,
        f"{float(result.fps):.6g}",
        result.seed,
        " ".join(map(str, result.classes)),
    )


@app.command()
def export(
    resolution: Annotated[Resolution, typer.Option("--resolution")] = _RESOLUTION,
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="biggan-deep-128/256/512, a local folder, or 'random'."),
    ] = None,
    backend: Annotated[
        Backend, typer.Option("--backend", help="The backend the graph is for.")
    ] = _BACKEND,
    precision: Annotated[Precision, typer.Option("--precision")] = _PRECISION,
    batch_size: Annotated[int, typer.Option("--batch-size", "--batch_size")] = _M.batch_size,
    scaling: Annotated[int, typer.Option("--scaling")] = _M.scaling,
    pixels: Annotated[Pixels, typer.Option("--pixels")] = _PIXELS,
    output: Annotated[
        Path | None, typer.Option("--output", help="Copy the ONNX graph here too.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Export even if cached.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Export BigGAN-deep to ONNX for this machine's plan (cached; needs the export extra).

    The graph is the one `dmv-fast render` with the same settings runs: `auto` is settled
    as for a render (fp16 with YUV planes on a GPU, fp32 batch 4 on the CPU).
    """
    from dmv_fast.models import copy_onnx, ensure_onnx

    setup_logging(verbose, quiet)
    try:
        spec = plan.ModelSpec(
            resolution=resolution,
            weights=weights,
            backend=backend,
            precision=precision,
            batch_size=batch_size,
            scaling=scaling,
            pixels=pixels,
        )
        resolved = plan.resolve(spec, encoder="x264", workers=1)
        with ProgressBars(enabled=not quiet) as progress:
            path = ensure_onnx(
                spec.resolution,
                spec.weights,
                resolved.precision,
                resolved.batch_size,
                scaling=spec.scaling,
                pixels=spec.pixels,
                pixel_format=resolved.pixel_format,
                force=force,
                progress=lambda done, total: progress("export", done, total),
            )
        if output is not None:
            path = copy_onnx(path, output)
    except (ValueError, RuntimeError, OSError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    typer.echo(str(path))


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("demo.mp4"),
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Default: pretrained if available, else random."),
    ] = None,
    frame_length: Annotated[int, typer.Option("--frame-length", "--frame_length")] = 512,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Synthesize a 15-second piece and render it at 128 px, with a contact sheet."""
    from dmv_fast.demo import run_demo

    setup_logging(False, quiet)
    try:
        with ProgressBars(enabled=not quiet) as progress:
            video, sheet = run_demo(
                output, weights=weights, frame_length=frame_length, progress=progress
            )
    except KeyboardInterrupt:
        raise fail("interrupted; no partial video was written", 130) from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    typer.echo(f"wrote {video} and {sheet}")


@app.command()
def bench(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the JSON, markdown and PNG results.")
    ] = Path("benchmarks/results"),
    resolutions: Annotated[str, typer.Option("--resolutions")] = "128,256,512",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes")] = "1,8,30",
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help="Comma list of torch,ort-cpu,ort-cuda-fp32,ort-cuda-fp16,ort-trt-fp16",
        ),
    ] = "torch,ort-cpu,ort-cuda-fp32,ort-cuda-fp16,ort-trt-fp16",
    seconds: Annotated[
        float, typer.Option("--seconds", help="Time budget per measurement.")
    ] = 10.0,
    song_seconds: Annotated[
        float, typer.Option("--song-seconds", help="Audio length for the end-to-end rows.")
    ] = 20.0,
    e2e_limit: Annotated[
        float,
        typer.Option(
            "--e2e-limit",
            help="Skip an end-to-end row that needs more than this many budgets (0: never).",
        ),
    ] = 10.0,
) -> None:
    """Benchmark the backends; writes JSON, a markdown table and a PNG plot."""
    from dmv_fast.bench import run_bench

    setup_logging(False, False)
    try:
        table = run_bench(
            out=out,
            resolutions=[int(r) for r in resolutions.split(",") if r],
            batch_sizes=[int(b) for b in batch_sizes.split(",") if b],
            backends=[b for b in backends.split(",") if b],
            seconds=seconds,
            song_seconds=song_seconds,
            e2e_limit=e2e_limit,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    typer.echo(table)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exits 0, 1 (a handled failure), 2 (a usage error), or 128 + the
    signal after SIGINT, SIGTERM or SIGHUP; every error is one line on stderr."""
    try:
        args = expand_bare_ray(expand_multi_value(sys.argv[1:] if argv is None else list(argv)))
        with interrupts():
            code = app(args=args, prog_name="dmv-fast", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad or missing options
        message, code = " ".join(exc.format_message().split()), exc.exit_code
    except ValueError as exc:  # --classes without a value
        message, code = str(exc), 2
    except (typer.Abort, Interrupted) as exc:  # a signal outside a command's own handler
        sig = exc if isinstance(exc, Interrupted) else exc.__cause__
        message, code = "interrupted", 130
        if isinstance(sig, Interrupted):
            message, code = f"interrupted by {sig}", sig.exit_code
    else:
        sys.exit(code if isinstance(code, int) else 0)
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _register_commands() -> None:
    """Commands that live in their own modules (they import this one lazily)."""
    from dmv_fast.cli_batch import register as register_batch
    from dmv_fast.cli_live import register as register_live

    register_batch(app)
    register_live(app)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
