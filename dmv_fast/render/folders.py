"""The folders beside an output that a rerun resumes: ``NAME.frames/`` (``-d``, ``-s``) here,
``NAME.segments/`` (segmented renders) in :mod:`dmv_fast.render.segment_folder`.

Both hold a ``manifest.json`` of what decides their files (:func:`vectors_identity` plus the
model's settings); a rerun reuses files only when it is equal.

``NAME.frames/`` beside the output holds one PNG per video frame, named by its zero-padded
index (``000000.png``; six digits, more when needed), and ``manifest.json``: the settings
that decide the pixels (song, frame length, resolution, truncation, vectors hash, ...) and
the total frame count, as the caller passes them. Every file is written under a temporary
name and renamed (:mod:`dmv_fast.files`), so a crash never leaves a half-written frame under a
final name. A rerun verifies the frames it finds (a damaged or foreign PNG is regenerated)
and resumes at the first frame that is missing or damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dmv_fast.files import as_json, atomic_write, sweep, write_json

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.plan import Plan

logger = logging.getLogger("dmv_fast")

MANIFEST = "manifest.json"
DIGITS = 6
#: ``-s`` reads at most this many bytes of decoded frames at once, whatever the batch size.
READ_BATCH_BYTES = 64 << 20


class FrameStore:
    """A folder of numbered PNG frames plus the manifest of the settings that made them.

    Open with :meth:`FrameStore.open`. ``manifest["frames"]``, when present, is the total
    number of frames the folder is meant to hold.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest

    # -- opening -------------------------------------------------------------------

    @staticmethod
    def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The manifest stored in ``folder``, or None when there is none."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"frames manifest {str(path)!r} is unreadable: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"frames manifest {str(path)!r} is not a JSON object")
        return data

    @classmethod
    def open(
        cls, folder: str | os.PathLike[str], manifest: dict[str, Any], *, create: bool = True
    ) -> FrameStore:
        """Open a frames folder made with ``manifest``'s settings.

        Args:
            folder: the frames folder, ``NAME.frames`` beside the output.
            manifest: JSON-able settings that decide the pixels, plus ``"frames"``: the total
                frame count.
            create: ``True`` (``-d``): create the folder or resume one made with the same
                settings. ``False`` (``-s``): the folder must exist, match, and hold every
                frame.

        Raises:
            ValueError: the folder was made with other settings (naming each one that
                differs), is not a frames folder, or (``create=False``) is missing or
                incomplete.
        """
        folder = Path(folder)
        wanted = as_json(manifest, "frames manifest")
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"frames folder {str(folder)!r} is a file, not a folder")
        stored = cls.read_manifest(folder) if folder.is_dir() else None
        if stored is None:
            if not create:
                what = "does not exist" if not folder.is_dir() else "has no manifest.json"
                raise ValueError(
                    f"frames folder {str(folder)!r} {what}; render the frames first with -d"
                )
            if folder.is_dir() and any(p.suffix == ".png" for p in folder.iterdir()):
                raise ValueError(
                    f"frames folder {str(folder)!r} holds frames but no manifest.json, so"
                    " their settings are unknown; delete it or choose another output"
                )
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            try:
                write_json(folder / MANIFEST, wanted)
            except BaseException:
                if created:  # leave nothing behind: the folder is ours and empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                raise
        else:
            _check_same(folder, stored, wanted)
        store = cls(folder, wanted)
        if create:
            sweep(folder)
        elif store.total is not None:
            done = store.complete_frames(log=False)
            if done < store.total:
                raise ValueError(
                    f"frames folder {str(folder)!r} holds {done} of {store.total} frames"
                    f" (frame {done} is missing or damaged); render the rest with -d"
                )
        return store

    # -- queries -------------------------------------------------------------------

    @property
    def total(self) -> int | None:
        """The number of frames the folder is meant to hold, when the manifest says."""
        n = self.manifest.get("frames")
        return int(n) if n is not None else None

    def path(self, index: int) -> Path:
        """The file of frame ``index``."""
        return self.folder / f"{index:0{DIGITS}d}.png"

    def intact(self, index: int, size: tuple[int, int] | None = None) -> bool:
        """Whether frame ``index`` is a complete PNG (of ``size`` = (width, height), if given)."""
        return self._check(index, size) is not None

    def _check(self, index: int, size: tuple[int, int] | None) -> tuple[int, int] | None:
        try:
            with Image.open(self.path(index)) as im:
                found = im.size
                im.verify()  # every chunk present, every CRC right
        except (OSError, SyntaxError, ValueError):
            return None
        return found if size is None or found == size else None

    def complete_frames(self, log: bool = True) -> int:
        """How many intact frames are present in a row from frame 0 (where a resume starts).

        Every frame is verified (complete PNG, the size of frame 0): a damaged one ends the
        run of complete frames and is logged, and a resume makes it again.
        """
        names = {p.name for p in self.folder.iterdir()}
        n = 0
        limit = self.total
        size: tuple[int, int] | None = None
        while (limit is None or n < limit) and self.path(n).name in names:
            found = self._check(n, size)
            if found is None:
                if log:
                    logger.warning("frame file %s is damaged: it is made again", self.path(n))
                break
            size = found
            n += 1
        return n

    # -- frames --------------------------------------------------------------------

    def write(self, index: int, frames: np.ndarray) -> None:
        """Store frames ``index, index + 1, ...``.

        Args:
            index: number of the first frame.
            frames: ``np.ndarray [shape=(B, H, W, 3)]`` or ``[shape=(H, W, 3)]`` uint8 RGB.
        """
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(
                f"frames must be uint8 of shape (B, H, W, 3); got {arr.dtype} {arr.shape}"
            )
        if index < 0 or (self.total is not None and index + len(arr) > self.total):
            raise ValueError(
                f"frames {index}..{index + len(arr) - 1} are outside 0..{self.total - 1}"
                if self.total is not None
                else f"frame index must be >= 0; got {index}"
            )
        for k, frame in enumerate(arr):
            image = Image.fromarray(np.ascontiguousarray(frame), "RGB")

            def save(f: Any, im: Image.Image = image) -> None:
                im.save(f, format="PNG", compress_level=1)

            # No fsync per frame: a resume verifies every frame, so even a power cut costs at
            # most a regenerated frame (benchmarks/results/files.md).
            atomic_write(self.path(index + k), save, sync=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start .. stop - 1`` as ``np.ndarray [shape=(stop - start, H, W, 3)]`` uint8."""
        frames = []
        for i in range(start, stop):
            path = self.path(i)
            try:
                with Image.open(path) as im:
                    frames.append(np.asarray(im.convert("RGB")))
            except FileNotFoundError as e:
                raise ValueError(
                    f"frame {i} is missing from {str(self.folder)!r}; render it with -d"
                ) from e
            except OSError as e:
                raise ValueError(f"frame file {str(path)!r} is unreadable: {e}") from e
        if not frames:
            return np.zeros((0, 0, 0, 3), np.uint8)
        if len({f.shape for f in frames}) > 1:
            raise ValueError(f"frames {start}..{stop - 1} in {str(self.folder)!r} differ in size")
        return np.stack(frames)

    def iter_batches(
        self, start: int, stop: int, batch_size: int, max_bytes: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield frames ``start .. stop - 1`` in order, at most ``batch_size`` at a time and
        at most ``max_bytes`` (default :data:`READ_BATCH_BYTES`) of decoded pixels at a time
        (never fewer than one frame)."""
        if max_bytes is None:
            max_bytes = READ_BATCH_BYTES
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        step = batch_size
        if start < stop:
            try:
                with Image.open(self.path(start)) as im:  # reads the header only
                    width, height = im.size
                step = max(1, min(batch_size, max_bytes // (width * height * 3)))
            except (OSError, SyntaxError, ValueError):
                pass  # read() names the problem
        for i in range(start, stop, step):
            yield self.read(i, min(i + step, stop))


def _check_same(folder: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    diffs = [
        f"{key}: {stored.get(key, '(unset)')!r} in the folder, {wanted.get(key, '(unset)')!r} now"
        for key in sorted(set(stored) | set(wanted))
        if stored.get(key) != wanted.get(key) or (key in stored) != (key in wanted)
    ]
    if diffs:
        raise ValueError(
            f"frames folder {str(folder)!r} was made with other settings ("
            + "; ".join(diffs)
            + "); delete it or choose another output"
        )


def frames_folder(output_file: str | os.PathLike[str]) -> Path:
    """The ``-d`` frames folder of an output: ``NAME.frames/`` beside ``NAME.mp4``."""
    out = Path(output_file)
    return out.with_name(out.stem + ".frames")


def vectors_identity(
    options: RenderOptions, seed: int, noise: np.ndarray, class_vectors: np.ndarray
) -> dict[str, Any]:
    """What identifies the frames of a render besides the model: the song (name and size),
    frame length, truncation, seed, frame count and the vectors' SHA-256. The ``-d`` manifest
    and the segments manifest start from it; a resume reuses files only when it is equal."""
    digest = hashlib.sha256()
    digest.update(noise.tobytes())
    digest.update(class_vectors.tobytes())
    song = Path(options.song)
    return {
        "song": song.name,
        "song_size": song.stat().st_size,
        "frame_length": options.frame_length,
        "truncation": options.truncation,
        "seed": seed,
        "frames": len(noise),
        "vectors_sha256": digest.hexdigest(),
    }


def frames_manifest(
    options: RenderOptions,
    plan: Plan,
    seed: int,
    noise: np.ndarray,
    class_vectors: np.ndarray,
) -> dict[str, Any]:
    """The settings that decide the pixels of a frames folder (for -d resume and -s); a
    frame of another size or shape than the square ``resolution * scaling`` adds its size and
    fill (folders of square renders keep the keys they always had)."""
    manifest = {
        **vectors_identity(options, seed, noise, class_vectors),
        "resolution": plan.spec.resolution,
        "scaling": plan.spec.scaling,
        "weights": plan.spec.weights_name,
        "precision": plan.precision,
        "pixels": plan.spec.pixels,
    }
    side = plan.spec.resolution * plan.spec.scaling
    if plan.frame_size != (side, side):
        manifest["frame_size"] = list(plan.frame_size)
        manifest["fill"] = plan.spec.shape.fill
    return manifest
