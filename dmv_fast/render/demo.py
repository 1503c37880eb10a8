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
    """Read evenly spaced frames back from ``video`` and tile them into a PNG."""
    import av
    from PIL import Image

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise RuntimeError(f"{video} has no video frames")
    picks = np.linspace(0, len(frames) - 1, columns * rows).round().astype(int)
    h, w, _ = frames[0].shape
    grid = Image.new("RGB", (columns * w, rows * h))
    for k, idx in enumerate(picks):
        grid.paste(Image.fromarray(frames[idx]), ((k % columns) * w, (k // columns) * h))
    from dmv_fast.files import atomic_write

    atomic_write(sheet, lambda f: grid.save(f, format="PNG"))
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
