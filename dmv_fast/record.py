"""The record of a run, beside its video: vectors, classes, seed and every setting (SPEC §7).

``NAME.mp4`` gets ``NAME.dmv.npz`` (``class_vectors [F, 1000]``, ``noise_vectors [F, 128]`` for
the whole song, ``classes`` in pitch-rank order) and ``NAME.dmv.json`` (settings, seed, song,
package version). ``--use_previous_vectors`` / ``--use_previous_classes`` read them back; a
record made from another song or frame length is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.audio import SAMPLE_RATE, AudioFeatures
from dmv_fast.options import N_IMAGENET, RenderOptions
from dmv_fast.trajectory import NOISE_DIM, Vectors

RECORD_FORMAT = "dmv-fast-record"
RECORD_VERSION = 1
PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def record_paths(output_file: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.dmv.npz, NAME.dmv.json)`` beside ``NAME.mp4``."""
    out = Path(output_file)
    stem = out.stem if out.suffix else out.name
    return out.with_name(stem + ".dmv.npz"), out.with_name(stem + ".dmv.json")


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp makes the file private; give it the permissions of a normal new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _song_size(song: str) -> int | None:
    try:
        return os.path.getsize(song)
    except OSError:
        return None


def write_record(
    output_file: str | os.PathLike[str],
    vectors: Vectors,
    options: RenderOptions,
    features: AudioFeatures,
    *,
    plan: dict[str, Any] | None = None,
) -> Path:
    """Write ``NAME.dmv.npz`` and ``NAME.dmv.json`` beside ``output_file``, each atomically.

    Args:
        output_file: the video's path (``NAME.mp4``).
        vectors: the whole song's vectors (``F = features.n_frames`` rows).
        options: the run's settings, all recorded.
        features: the song's features (its length and frame length identify it).
        plan: the resolved plan the frames were made with (:meth:`Plan.to_dict`).

    Returns:
        The path of the ``.npz`` file.
    """
    npz_path, json_path = record_paths(output_file)
    if vectors.n_frames != features.n_frames:
        raise ValueError(
            f"vectors have {vectors.n_frames} frames, the song's features {features.n_frames}"
        )
    settings = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()
    }
    from dmv_fast import __version__
    from dmv_fast.classes import class_name

    meta = {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "dmv_fast_version": __version__,
        "song": os.path.abspath(options.song),
        "song_size": _song_size(options.song),
        "n_samples": features.n_samples,
        "sample_rate": SAMPLE_RATE,
        "duration": features.duration,
        "frame_length": features.frame_length,
        "frames": features.n_frames,
        "seed": vectors.seed,
        "classes": [
            {
                "rank": j,
                "class": c,
                "name": class_name(c),
                "pitch": PITCH_NAMES[vectors.pitches[j]] if j < len(vectors.pitches) else None,
            }
            for j, c in enumerate(vectors.classes)
        ],
        "settings": settings,
        "plan": plan,
    }

    def write_npz(f: Any) -> None:
        np.savez_compressed(
            f,
            class_vectors=np.asarray(vectors.class_vectors, dtype=np.float32),
            noise_vectors=np.asarray(vectors.noise, dtype=np.float32),
            classes=np.asarray(vectors.classes, dtype=np.int64),
            pitches=np.asarray(vectors.pitches, dtype=np.int64),
            seed=np.int64(vectors.seed),
        )

    def write_json(f: Any) -> None:
        f.write((json.dumps(meta, indent=2) + "\n").encode("utf-8"))

    _atomic_write(npz_path, write_npz)
    _atomic_write(json_path, write_json)
    return npz_path


def read_record(
    output_file: str | os.PathLike[str], options: RenderOptions, features: AudioFeatures
) -> Vectors:
    """Read the record beside ``output_file`` back, for the song described by ``features``.

    Raises:
        ValueError: no record, a damaged one, or one from another song (length or file size)
            or another frame length.
    """
    npz_path, json_path = record_paths(output_file)
    for p in (json_path, npz_path):
        if not p.is_file():
            raise ValueError(
                f"no previous run recorded beside {str(output_file)!r}: {str(p)!r} is missing "
                "(render once without --use_previous_vectors/--use_previous_classes)"
            )
    try:
        meta = json.loads(json_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"record {str(json_path)!r} is unreadable ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != RECORD_FORMAT:
        raise ValueError(f"{str(json_path)!r} is not a dmv-fast record")
    if meta.get("frame_length") != features.frame_length:
        raise ValueError(
            f"record {str(json_path)!r} was made with frame_length {meta.get('frame_length')}, "
            f"this run uses {features.frame_length}"
        )
    song_size = _song_size(options.song)
    if meta.get("n_samples") != features.n_samples or (
        song_size is not None
        and meta.get("song_size") is not None
        and meta["song_size"] != song_size
    ):
        raise ValueError(
            f"record {str(json_path)!r} was made from another song "
            f"({meta.get('song')!r}, {meta.get('duration', 0):.3f} s); "
            f"this run's song {options.song!r} lasts {features.duration:.3f} s"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            class_vectors = np.asarray(data["class_vectors"], dtype=np.float32)
            noise = np.asarray(data["noise_vectors"], dtype=np.float32)
            classes = tuple(int(c) for c in data["classes"])
            pitches = tuple(int(p) for p in data["pitches"]) if "pitches" in data else ()
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"record {str(npz_path)!r} is unreadable ({e})") from e
    f = features.n_frames
    if class_vectors.shape != (f, N_IMAGENET) or noise.shape != (f, NOISE_DIM):
        raise ValueError(
            f"record {str(npz_path)!r} holds {noise.shape[0]} frames, the song has {f}"
        )
    seed = meta.get("seed")
    if not isinstance(seed, int):
        raise ValueError(f"record {str(json_path)!r} has no seed")
    return Vectors(
        noise=noise, class_vectors=class_vectors, classes=classes, seed=seed, pitches=pitches
    )
