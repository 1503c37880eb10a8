"""``dmv-fast demo``: a 15-second piece synthesized in code, rendered at 128 px."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dmv_fast.audio.synth import DEMO_RATE, synthesize_song
from dmv_fast.render.engine import ProgressCallback

logger = logging.getLogger("dmv_fast")


def pretrained_or_random(resolution: int = 128) -> tuple[str | None, str]:
    """Pretrained weights when they are cached or downloadable, else ``"random"``.

    Returns:
        ``(weights, note)`` where ``weights`` is ``None`` for the pretrained model.
    """
    from dmv_fast.model.weights import fetch_weights

    name = f"biggan-deep-{resolution}"
    try:
        fetch_weights(name)
    except (OSError, RuntimeError, ValueError) as exc:
        return "random", (
            f"pretrained {name} weights are not cached and could not be downloaded ({exc}); "
            "rendering with --weights random: the motion follows the music, "
            "but the pictures are abstract, not ImageNet objects"
        )
    return None, f"rendering with the pretrained {name} weights"


def contact_sheet(video: Path, sheet: Path, columns: int = 4, rows: int = 3) -> Path:
    """Read evenly spaced frames back from ``video`` and tile them, each labelled with its
    time, into a PNG (:func:`dmv_fast.preview.sheet.tile`)."""
    import av

    from dmv_fast.files import atomic_write
    from dmv_fast.preview.sheet import image_bytes, tile, time_label

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 1)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise RuntimeError(f"{video} has no video frames")
    picks = np.linspace(0, len(frames) - 1, columns * rows).round().astype(int)
    grid = tile(
        [frames[k] for k in picks],
        columns=columns,
        labels=[time_label(k / fps, int(k)) for k in picks],
    )
    atomic_write(sheet, image_bytes(grid))
    return sheet


def run_demo(
    output: str | Path = "demo.mp4",
    *,
    weights: str | None = None,
    frame_length: int = 512,
    seed: int = 2026,
    progress: ProgressCallback | None = None,
) -> tuple[Path, Path]:
    """Synthesize the demo piece, render it at 128 px, and write a contact sheet.

    Returns:
        ``(video, sheet)`` paths: ``demo.mp4`` and ``demo.png`` beside it.
    """
    import soundfile as sf

    from dmv_fast.render.api import render
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.spec import ModelSpec

    output = Path(output)
    song = output.with_name(output.stem + "-song.wav")
    sf.write(song, synthesize_song(), DEMO_RATE)
    if weights is None:
        weights, note = pretrained_or_random(128)
        (logger.warning if weights == "random" else logger.info)(note)
    options = RenderOptions(
        song=str(song),
        output_file=str(output),
        frame_length=frame_length,
        seed=seed,
        classes=(1, 22, 94, 130, 309, 323, 327, 340, 388, 417, 980, 985),
    )
    render(
        options,
        ModelSpec(resolution=128, weights=weights, batch_size=8),
        overwrite=True,
        progress=progress,
    )
    sheet = contact_sheet(output, output.with_suffix(".png"))
    return output, sheet
