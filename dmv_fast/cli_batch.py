"""``dmv-fast batch``: many songs, the same settings, the same segment workers.

:func:`register` adds the command to the ``dmv-fast`` typer app. Each song becomes
``OUT_DIR/<song name>.mp4``; the songs' segments go to one pool of workers (local processes,
or Ray actors with ``--ray``), so the model sessions are built once for the whole batch.

The command is defined inside :func:`register`, which imports :mod:`dmv_fast.cli` (its choice
Enums and helpers) only when called: ``cli`` may then import this module at its top without
an import cycle. (No ``from __future__ import annotations`` here: typer reads the command's
annotations as objects.)
"""

import logging
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger("dmv_fast")


def expand_bare_ray(argv: list[str]) -> list[str]:
    """Rewrite a bare ``--ray`` (last, or followed by another option) into ``--ray local``.

    ``--ray`` takes an optional address; click options cannot, so the console entry point
    fills in ``local`` before parsing. ``--ray ADDRESS`` passes through unchanged.
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("local")
    return out


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command to ``app`` (the ``dmv-fast`` typer app)."""
    from dmv_fast.cli import (
        _BACKEND,
        _PIXELS,
        _PRECISION,
        _RESOLUTION,
        Backend,
        Pixels,
        Precision,
        Resolution,
    )
    from dmv_fast.terminal import ProgressBars, fail, setup_logging

    def batch(
        songs: Annotated[
            list[Path],
            typer.Argument(help="Audio files (mp3, wav, ogg, flac, ...).", show_default=False),
        ],
        out_dir: Annotated[
            Path, typer.Option("--out-dir", help="Folder for the videos (created if missing).")
        ],
        workers: Annotated[
            int | None,
            typer.Option(
                "--workers",
                help="Segment workers: local processes, or Ray actors with --ray "
                "(default: what the model needs locally, every actor the cluster holds on Ray).",
            ),
        ] = None,
        ray: Annotated[
            str | None,
            typer.Option(
                "--ray",
                help="Render on Ray actors: a cluster address (auto, HOST:6379, "
                "ray://HOST:10001), or local (also what a bare --ray means) for a local instance.",
            ),
        ] = None,
        resolution: Annotated[Resolution, typer.Option("--resolution")] = _RESOLUTION,
        weights: Annotated[
            str | None,
            typer.Option("--weights", help="biggan-deep-128/256/512, a local folder, or 'random'."),
        ] = None,
        backend: Annotated[Backend, typer.Option("--backend")] = _BACKEND,
        precision: Annotated[Precision, typer.Option("--precision")] = _PRECISION,
        batch_size: Annotated[int, typer.Option("--batch-size", "--batch_size")] = 30,
        scaling: Annotated[int, typer.Option("--scaling")] = 1,
        pixels: Annotated[Pixels, typer.Option("--pixels")] = _PIXELS,
        frame_length: Annotated[int, typer.Option("--frame-length", "--frame_length")] = 512,
        pitch_sensitivity: Annotated[
            float, typer.Option("--pitch-sensitivity", "--pitch_sensitivity")
        ] = 220,
        tempo_sensitivity: Annotated[
            float, typer.Option("--tempo-sensitivity", "--tempo_sensitivity")
        ] = 0.25,
        depth: Annotated[float, typer.Option("--depth")] = 1.0,
        jitter: Annotated[float, typer.Option("--jitter")] = 0.5,
        truncation: Annotated[float, typer.Option("--truncation")] = 1.0,
        smooth_factor: Annotated[float, typer.Option("--smooth-factor", "--smooth_factor")] = 20,
        num_classes: Annotated[int, typer.Option("--num-classes", "--num_classes")] = 12,
        classes: Annotated[
            list[str] | None, typer.Option("--classes", help="ImageNet indices or names.")
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="One seed for every song.")] = None,
        crf: Annotated[int, typer.Option("--crf")] = 20,
        preset: Annotated[str, typer.Option("--preset")] = "veryfast",
        overwrite: Annotated[bool, typer.Option("--overwrite", "-y")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ) -> None:
        """Render several songs with the same settings on the same workers (local or Ray)."""
        from dmv_fast.classes import resolve_classes
        from dmv_fast.options import RenderOptions
        from dmv_fast.plan import ModelSpec
        from dmv_fast.segmented import render_many

        setup_logging(verbose, quiet)
        try:
            stems = [song.stem for song in songs]
            dup = sorted({s for s in stems if stems.count(s) > 1})
            if dup:
                raise ValueError(f"songs named {', '.join(dup)} would write the same video")
            if out_dir.exists() and not out_dir.is_dir():
                raise ValueError(f"--out-dir {str(out_dir)!r} is not a folder")
            resolved = resolve_classes(classes) if classes else None
            spec = ModelSpec(
                resolution=int(str(getattr(resolution, "value", resolution))),
                weights=weights,
                backend=str(getattr(backend, "value", backend)),
                precision=str(getattr(precision, "value", precision)),
                batch_size=batch_size,
                scaling=scaling,
                pixels=str(getattr(pixels, "value", pixels)),
            )
            options = [
                RenderOptions(
                    song=str(song),
                    output_file=str(out_dir / f"{song.stem}.mp4"),
                    frame_length=frame_length,
                    pitch_sensitivity=pitch_sensitivity,
                    tempo_sensitivity=tempo_sensitivity,
                    depth=depth,
                    jitter=jitter,
                    truncation=truncation,
                    smooth_factor=smooth_factor,
                    num_classes=num_classes,
                    classes=resolved,
                    seed=seed,
                    encoder="x264",
                    crf=crf,
                    preset=preset,
                )
                for song in songs
            ]
            out_dir.mkdir(parents=True, exist_ok=True)
            with ProgressBars(enabled=not quiet) as progress:
                results = render_many(
                    options,
                    spec,
                    workers=workers,
                    ray_address=ray,
                    overwrite=overwrite,
                    progress=progress,
                )
        except KeyboardInterrupt:
            raise fail("interrupted; finished segments are kept for a rerun", 130) from None
        except (ValueError, FileExistsError, FileNotFoundError, RuntimeError, OSError) as exc:
            raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        for result in results:
            logger.info("wrote %s: %d frames, seed %d", result.output, result.frames, result.seed)

    app.command(name="batch")(batch)
