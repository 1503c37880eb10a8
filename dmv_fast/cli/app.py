"""``dmv-fast``: the typer app and the console entry point. The commands live one per module
(``render``, ``plot``, ``preview``, ``export``, ``batch``, ``live``, ``demo``, ``bench``,
``warm-up``); each parses, builds the settings, calls the library, and exits 1 with a one-line
message on a handled failure."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dmv_fast.cli.batch import batch
from dmv_fast.cli.bench import bench
from dmv_fast.cli.demo import demo
from dmv_fast.cli.export import export
from dmv_fast.cli.live import live
from dmv_fast.cli.plot import plot
from dmv_fast.cli.preview import preview
from dmv_fast.cli.render import render
from dmv_fast.cli.terminal import expand_bare_ray, expand_multi_value
from dmv_fast.cli.warmup import warm_up
from dmv_fast.files import Interrupted, interrupts
from dmv_fast.version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich markup would eat "[export]" and cut long option names.
    rich_markup_mode=None,
    help="Turn music into BigGAN-deep videos, as fast as the hardware allows.",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dmv-fast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """dmv-fast: the Deep Music Visualizer, fast."""


for _command in (render, plot, preview, export, demo, bench, batch, live, warm_up):
    app.command(_command.__name__.replace("_", "-"))(_command)


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


if __name__ == "__main__":  # pragma: no cover
    main()
