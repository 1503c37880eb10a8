"""The terminal side of the CLI: one-line errors, logging to stderr, progress bars, and the
original's argument spellings. The library never prints; the commands use these."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import typer

from dmv_fast.files import Interrupted, is_temporary

logger = logging.getLogger("dmv_fast")

# Options of the original that take several values after one flag (``--classes 45 99 567``).
_MULTI_VALUE = ("--classes",)


def expand_multi_value(argv: list[str]) -> list[str]:
    """Rewrite ``--classes a b c`` into ``--classes a --classes b --classes c``.

    The original took several values after one flag (argparse ``nargs='+'``); click options
    take one value each, so the values are spread over repeated flags before parsing.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _MULTI_VALUE:
            i += 1
            values = []
            while i < len(argv) and not (argv[i].startswith("-") and not _is_number(argv[i])):
                values.append(argv[i])
                i += 1
            if not values:
                raise ValueError(f"{arg} needs at least one value (an index or a name)")
            for value in values:
                out.extend([arg, value])
            continue
        out.append(arg)
        i += 1
    return out


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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; the ``typer.Exit`` to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def one_line_errors(
    interrupted: str = "no partial video was written", writing: Any = None
) -> Iterator[None]:
    """Turn a command's failures into one line on stderr and an exit code.

    Args:
        interrupted: what an interrupt leaves, said after ``interrupted`` (empty: nothing).
        writing: the output, named by a full disk's message.

    Exit codes: 130 / 143 / 129 for SIGINT / SIGTERM / SIGHUP, 1 for anything else. An
    unexpected exception is logged with its traceback at DEBUG (``-v``), never shown.
    """
    left = f"; {interrupted}" if interrupted else ""
    try:
        yield
    except typer.Exit:
        raise
    except Interrupted as exc:  # SIGTERM / SIGHUP, turned into an interrupt by main()
        raise fail(f"interrupted by {exc}{left}", exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted{left}", 130) from None
    except OSError as exc:
        # The file the error names (a cache file), else the command's output.
        named = exc.filename if exc.filename and not is_temporary(exc.filename) else None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and (named or writing) is not None:
            full = f"disk full while writing {str(named or writing)!r} ({exc.strerror})"
            raise fail(full + "; no partial file was kept") from None
        raise fail(first_line(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise fail(first_line(exc)) from None
    except Exception as exc:  # no traceback reaches the user; -v logs it
        logger.debug("unexpected failure", exc_info=True)
        raise fail(f"{type(exc).__name__}: {first_line(exc)}") from None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool, quiet: bool) -> None:
    """The ``dmv_fast`` logger to stderr: INFO, or DEBUG (``-v``), or WARNING (``-q``)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class ProgressBars:
    """Progress bars for every long stage, fed by the library's progress callback."""

    _LABELS = {
        "analysis": "analysing audio",
        "export": "exporting model",
        "render": "rendering",
        "encode": "encoding",
    }

    def __init__(self, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not enabled,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressBars:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._progress.add_task(self._LABELS.get(stage, stage), total=total, rate="")
            self._tasks[stage] = task
        elapsed = self._progress.tasks[task].elapsed or 0.0
        rate = f"{done / elapsed:.1f} fps" if stage in ("render", "encode") and elapsed else ""
        self._progress.update(task, completed=done, total=total, rate=rate)
