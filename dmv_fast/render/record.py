"""The record of a run, beside its video: vectors, classes, seed and every setting (SPEC §7).

``NAME.mp4`` gets ``NAME.dmv.npz`` (``class_vectors [F, 1000]``, ``noise_vectors [F, 128]`` for
the whole song, ``classes`` in pitch-rank order) and ``NAME.dmv.json`` (settings, seed, song,
package version), and with ``plot`` the plot of the vectors, ``NAME.plot.png``.
``--use_previous_vectors`` / ``--use_previous_classes`` read them back; a record made from
another song or frame length is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.audio.features import AudioFeatures
from dmv_fast.files import publish, sha256_file, temporary_name
from dmv_fast.settings.choices import N_IMAGENET, NOISE_DIM, PITCH_NAMES, SAMPLE_RATE
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.trajectory import Vectors

RECORD_FORMAT = "dmv-fast-record"
RECORD_VERSION = 1


def record_paths(output_file: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.dmv.npz, NAME.dmv.json)`` beside ``NAME.mp4``."""
    out = Path(output_file)
    stem = out.stem if out.suffix else out.name
    return out.with_name(stem + ".dmv.npz"), out.with_name(stem + ".dmv.json")


def plot_path(output_file: str | os.PathLike[str]) -> Path:
    """``NAME.plot.png`` beside ``NAME.mp4``: the plot a render with ``plot`` writes."""
    out = Path(output_file)
    stem = out.stem if out.suffix else out.name
    return out.with_name(stem + ".plot.png")


def _song_size(song: str) -> int | None:
    try:
        return os.path.getsize(song)
    except OSError:
        return None


def song_sha256(song: str | os.PathLike[str]) -> str | None:
    """SHA-256 of the song file's bytes (its identity in records and manifests), or None."""
    try:
        return sha256_file(song)
    except OSError:
        return None


class StagedRecord:
    """A record written to temporaries beside the video, not yet under its final names.

    The video and its record are one result: the pipeline stages the record before it
    encodes, publishes the record only once the video is in place, and discards it when the
    video fails. Use :meth:`publish` or :meth:`discard` (a ``with`` block discards on error).
    """

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        self._pairs = pairs  # (temporary, destination)
        self.path = pairs[0][1]  # the .npz

    def publish(self) -> Path:
        """Rename the temporaries onto ``NAME.dmv.npz`` / ``NAME.dmv.json``; returns the npz."""
        try:
            for tmp, dest in self._pairs:
                publish(tmp, dest, overwrite=True)
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        """Delete whatever temporaries are left."""
        for tmp, _ in self._pairs:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def __enter__(self) -> StagedRecord:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.discard()


def write_record(
    output_file: str | os.PathLike[str],
    vectors: Vectors,
    options: RenderOptions,
    features: AudioFeatures,
    *,
    plan: dict[str, Any] | None = None,
) -> Path:
    """Write ``NAME.dmv.npz`` and ``NAME.dmv.json`` beside ``output_file``; see
    :func:`stage_record`. Returns the path of the ``.npz`` file."""
    return stage_record(output_file, vectors, options, features, plan=plan).publish()


def stage_record(
    output_file: str | os.PathLike[str],
    vectors: Vectors,
    options: RenderOptions,
    features: AudioFeatures,
    song_hash: str | None = None,
    *,
    plan: dict[str, Any] | None = None,
    preview: str | os.PathLike[str] | None = None,
) -> StagedRecord:
    """Write the record of a run to temporaries beside ``output_file``, ready to publish.

    Args:
        output_file: the video's path (``NAME.mp4``).
        vectors: the whole song's vectors (``F = features.n_frames`` rows).
        options: the run's settings, all recorded.
        features: the song's features (its length and frame length identify it).
        song_hash: the song file's SHA-256 when the caller has it (else computed here).
        plan: the resolved plan the frames were made with (:meth:`Plan.to_dict`).
        preview: the preview sheet these vectors made, named in the record.

    With ``options.plot`` the plot of the vectors (:mod:`dmv_fast.preview.figure`) is staged
    too, as ``NAME.plot.png``, and the record names it.

    Returns:
        The staged record; nothing is under a final name until its ``publish()``.
    """
    npz_path, json_path = record_paths(output_file)
    if vectors.n_frames != features.n_frames:
        raise ValueError(
            f"vectors have {vectors.n_frames} frames, the song's features {features.n_frames}"
        )
    settings = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()
    }
    from dmv_fast.vectors.classes import class_name
    from dmv_fast.version import __version__

    meta = {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "dmv_fast_version": __version__,
        "song": os.path.abspath(options.song),
        "song_size": _song_size(options.song),
        "song_sha256": song_hash or song_sha256(options.song),
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
    if options.plot:
        meta["plot"] = plot_path(output_file).name
    if preview is not None:
        meta["preview"] = os.path.relpath(preview, npz_path.parent)

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

    def write_plot(f: Any) -> None:
        from dmv_fast.preview.figure import draw, figure_bytes, plot_data

        f.write(figure_bytes(draw(plot_data(features, vectors, options)), "png"))

    files = [(npz_path, write_npz), (json_path, write_json)]
    if options.plot:
        files.append((plot_path(output_file), write_plot))
    pairs: list[tuple[Path, Path]] = []
    try:
        for dest, write in files:
            tmp = temporary_name(dest)
            pairs.append((tmp, dest))
            with open(tmp, "xb") as f:
                write(f)
    except BaseException:
        if pairs:
            StagedRecord(pairs).discard()
        raise
    return StagedRecord(pairs)


#: What decides a video besides its song and model: a rerun of ``batch`` skips a video whose
#: record says the same (and the same seed, when one is given).
DECIDING_SETTINGS = (
    "duration",
    "pitch_sensitivity",
    "tempo_sensitivity",
    "depth",
    "classes",
    "num_classes",
    "sort_classes_by_power",
    "jitter",
    "frame_length",
    "truncation",
    "smooth_factor",
    "encoder",
    "crf",
    "preset",
)
#: The plan's values that decide the pixels (:meth:`Plan.to_dict`).
DECIDING_MODEL = ("resolution", "precision", "scaling", "pixels", "frame_size", "fill", "weights")


def differs_from_record(
    output_file: str | os.PathLike[str], options: RenderOptions, plan: dict[str, Any]
) -> str | None:
    """Why the video at ``output_file`` is not the one ``options`` and ``plan`` would make, in
    a few words; None when its record says it is: the same song (content hash), the same
    :data:`DECIDING_SETTINGS`, the same seed when ``options`` gives one, and the same model
    (:data:`DECIDING_MODEL`)."""
    _, json_path = record_paths(output_file)
    try:
        meta = json.loads(json_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "it has no readable record"
    if not isinstance(meta, dict) or meta.get("format") != RECORD_FORMAT:
        return "it has no dmv-fast record"
    if meta.get("song_sha256") != song_sha256(options.song):
        return "it was made from another song"
    recorded = meta.get("settings") or {}
    now = json.loads(json.dumps(dataclasses.asdict(options)))
    for key in DECIDING_SETTINGS:
        if recorded.get(key) != now.get(key):
            return f"its {key} was {recorded.get(key)!r}"
    if options.seed is not None and meta.get("seed") != options.seed:
        return f"its seed was {meta.get('seed')!r}"
    model = meta.get("plan") or {}
    for key in DECIDING_MODEL:
        if model.get(key) != plan.get(key):
            return f"its model's {key} was {model.get(key)!r}"
    return None


def read_record(
    output_file: str | os.PathLike[str], options: RenderOptions, features: AudioFeatures
) -> Vectors:
    """Read the record beside ``output_file`` back, for the song described by ``features``.

    Raises:
        ValueError: no record, a damaged one, or one from another song (content hash, length
            or file size) or another frame length.
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
        raise ValueError(f"record {str(json_path)!r} is damaged ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != RECORD_FORMAT:
        raise ValueError(f"{str(json_path)!r} is not a dmv-fast record")
    if meta.get("frame_length") != features.frame_length:
        raise ValueError(
            f"record {str(json_path)!r} was made with frame_length {meta.get('frame_length')!r}, "
            f"this run uses {features.frame_length}"
        )
    recorded_hash = meta.get("song_sha256")
    if recorded_hash is not None:
        same = recorded_hash == song_sha256(options.song)
    else:  # records written before the content hash: length and byte size
        song_size = _song_size(options.song)
        same = meta.get("n_samples") == features.n_samples and (
            song_size is None or meta.get("song_size") in (None, song_size)
        )
    if not same or meta.get("n_samples") != features.n_samples:
        raise ValueError(
            f"record {str(json_path)!r} was made from another song ({meta.get('song')!r}); "
            f"this run's song is {options.song!r}"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            class_vectors = np.asarray(data["class_vectors"], dtype=np.float32)
            noise = np.asarray(data["noise_vectors"], dtype=np.float32)
            classes = tuple(int(c) for c in data["classes"])
            pitches = tuple(int(p) for p in data["pitches"]) if "pitches" in data else ()
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(
            f"record {str(npz_path)!r} is damaged (not a complete dmv-fast vectors file); "
            "render again without --use_previous_vectors/--use_previous_classes"
        ) from e
    f = features.n_frames
    if class_vectors.shape != (f, N_IMAGENET) or noise.shape != (f, NOISE_DIM):
        raise ValueError(
            f"record {str(npz_path)!r} holds vectors of shape {noise.shape}, the song has {f}"
            " frames"
        )
    seed = meta.get("seed")
    if not isinstance(seed, int):
        raise ValueError(f"record {str(json_path)!r} has no seed")
    return Vectors(
        noise=noise, class_vectors=class_vectors, classes=classes, seed=seed, pitches=pitches
    )
