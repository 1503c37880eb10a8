"""``python -m dmv_fast_export``: export BigGAN-deep to a cached ONNX graph."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dmv_fast_export",
        description="Export BigGAN-deep to ONNX (cached in the dmv-fast cache folder).",
    )
    parser.add_argument("--resolution", type=int, default=512, help="128, 256 or 512")
    parser.add_argument(
        "--weights",
        default=None,
        help="biggan-deep-128/256/512 (default: the one of --resolution), a folder with "
        "pytorch_model.bin + config.json, or 'random'",
    )
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=30)
    parser.add_argument("--scaling", type=int, default=1, help="integer Lanczos upscaling")
    parser.add_argument("--pixels", choices=("stretch", "fixed"), default="stretch")
    parser.add_argument("--output", default=None, help="also copy the graph here")
    parser.add_argument("--force", action="store_true", help="export even if cached")
    parser.add_argument("--quiet", "-q", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from rich.progress import Progress

    from dmv_fast_export.export import export_model

    with Progress(disable=args.quiet, transient=True) as bar:
        task = bar.add_task("export", total=None)
        try:
            path = export_model(
                args.resolution,
                args.weights,
                args.precision,
                args.batch_size,
                scaling=args.scaling,
                pixels=args.pixels,
                output=args.output,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                force=args.force,
            )
        except (ValueError, RuntimeError, OSError) as e:
            bar.stop()
            print(
                f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr
            )
            return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
