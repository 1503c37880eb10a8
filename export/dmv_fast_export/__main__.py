"""``python -m dmv_fast_export``: the same command as ``dmv-fast export``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from dmv_fast.cli.app import main as cli_main

    cli_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
