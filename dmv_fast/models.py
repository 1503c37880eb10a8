"""Model registry, weights download and cache, ONNX graph cache. No torch here.

Cache layout (``DMV_FAST_CACHE`` overrides the folder; default: platformdirs'
``user_cache_dir("dmv-fast")``)::

    <cache>/weights/biggan-deep-128/pytorch_model.bin     downloaded once (resumed if cut)
    <cache>/weights/biggan-deep-128/dmv-fast.json         its SHA-256, size and source URL
    <cache>/onnx/<model>-<res>-<precision>-b<batch>-x<scaling>-<pixels>-<key>.onnx
    <cache>/onnx/<same>.json                              what the graph is, its SHA-256,
                                                          the parity check against PyTorch
    <cache>/tensorrt/                                     TensorRT engine and timing caches

Weights resolve in a fixed order and never touch the network when the cache or a local path
serves: ``"random"`` (seeded random weights, nothing to fetch), an existing folder or file in
pytorch-pretrained-biggan's format, a pretrained name (cached copy, re-hashed before use;
downloaded only when missing).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmv_fast.plan import MAX_BATCH, MAX_SCALING, PIXEL_FORMATS, PIXELS, RESOLUTIONS

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.plan import Plan

logger = logging.getLogger("dmv_fast")

#: ``progress(done, total)``: bytes while downloading, steps while exporting.
Progress = Callable[[int, int], None]

ENV_CACHE = "DMV_FAST_CACHE"
#: Precisions an exported graph can have (``auto`` is settled by :func:`dmv_fast.plan.resolve`).
PRECISIONS = ("fp32", "fp16")
WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
SIDECAR_NAME = "dmv-fast.json"
RANDOM = "random"
RANDOM_SEED = 0

# Mirrors of the weights, tried in order; the first is pytorch-pretrained-biggan's own
# archive. The architecture of each pretrained model is built in (the published configs), so
# only ``pytorch_model.bin`` is fetched.
_MIRRORS: dict[int, list[str]] = {
    res: [f"https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-{res}-{WEIGHTS_NAME}"]
    for res in (128, 256, 512)
}
_MIRRORS[128].append(
    f"https://huggingface.co/osanseviero/BigGAN-deep-128/resolve/main/{WEIGHTS_NAME}"
)
PRETRAINED = {f"biggan-deep-{res}": res for res in RESOLUTIONS}

_EXPORT_HINT = (
    "install with `pip install 'dmv-fast[export]'` (the CPU build of PyTorch is enough: "
    "`pip install torch --index-url https://download.pytorch.org/whl/cpu`)"
)


def cache_dir() -> Path:
    """The cache root: ``$DMV_FAST_CACHE`` if set, else the user cache dir for dmv-fast."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dmv-fast"))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a temporary file beside ``path``, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------------------
# Weights


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from.

    Attributes:
        kind: ``"pretrained"``, ``"local"`` or ``"random"``.
        name: the pretrained name, the local path as given, or ``"random"``.
        resolution: output size of the model (before ``--scaling``).
        weights_file: the ``pytorch_model.bin`` (None for random weights).
        config_file: its ``config.json`` (None: the standard config of ``resolution``).
        sha256: content hash identifying the weights (``"random-seed<N>"`` for random ones).
    """

    kind: str
    name: str
    resolution: int
    weights_file: Path | None
    config_file: Path | None
    sha256: str

    @property
    def slug(self) -> str:
        """A short file-name-safe label for cache file names."""
        if self.kind == "pretrained":
            return self.name
        if self.kind == RANDOM:
            return f"random{RANDOM_SEED}"
        return "local"


def check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int | float):
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    if int(resolution) != resolution or int(resolution) not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    return int(resolution)


def _config_output_dim(config_file: Path) -> int:
    data = _read_json(config_file)
    if data is None:
        raise ValueError(f"{str(config_file)!r} is not a readable JSON config")
    dim = data.get("output_dim")
    if not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"{str(config_file)!r} has no valid 'output_dim' (got {dim!r})")
    return dim


def resolve_weights(
    weights: str | os.PathLike[str] | None,
    resolution: int,
    *,
    download: bool = True,
    progress: Progress | None = None,
) -> WeightsSource:
    """Resolve a ``--weights`` value into a :class:`WeightsSource`.

    Args:
        weights: ``None`` (pretrained ``biggan-deep-<resolution>``), a pretrained name,
            ``"random"``, or a folder with ``pytorch_model.bin`` + ``config.json`` (or the
            ``.bin`` file itself; its ``config.json`` is read from the same folder when
            present, else the standard config of ``resolution`` is used).
        resolution: the model's output size. 128/256/512 for pretrained and random weights;
            a local model's ``config.json`` must agree with it.
        download: fetch pretrained weights that are not cached (else OSError when missing).

    Raises:
        ValueError: unknown name, missing files, resolution mismatch.
    """
    if weights is None:
        weights = f"biggan-deep-{check_resolution(resolution)}"
    text = os.fspath(weights)
    if text == RANDOM:
        res = check_resolution(resolution)
        return WeightsSource(RANDOM, RANDOM, res, None, None, f"random-seed{RANDOM_SEED}")
    if text in PRETRAINED:
        res = check_resolution(resolution)
        if PRETRAINED[text] != res:
            raise ValueError(
                f"weights {text!r} are for resolution {PRETRAINED[text]}, not {resolution}"
            )
        folder = fetch_weights(text, progress=progress, download=download)
        record = _read_json(folder / SIDECAR_NAME) or {}
        digest = _combined_hash(record["files"][WEIGHTS_NAME]["sha256"], "standard")
        return WeightsSource("pretrained", text, res, folder / WEIGHTS_NAME, None, digest)
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(
            f"unknown weights {text!r}: expected one of {', '.join(PRETRAINED)}, 'random', "
            f"or an existing folder with {WEIGHTS_NAME} and {CONFIG_NAME}"
        )
    if path.is_dir():
        weights_file, config_file = path / WEIGHTS_NAME, path / CONFIG_NAME
        if not weights_file.is_file():
            raise ValueError(f"weights folder {text!r} has no {WEIGHTS_NAME}")
        if not config_file.is_file():
            raise ValueError(f"weights folder {text!r} has no {CONFIG_NAME}")
    else:
        weights_file = path
        config_file = path.parent / CONFIG_NAME
        if not config_file.is_file():
            config_file = None
    if config_file is not None:
        dim = _config_output_dim(config_file)
        if dim != resolution:
            raise ValueError(
                f"weights {text!r} are for resolution {dim}, not {resolution} "
                f"(output_dim in {config_file.name})"
            )
    else:
        check_resolution(resolution)
    digest = _combined_hash(
        sha256_file(weights_file), sha256_file(config_file) if config_file else "standard"
    )
    return WeightsSource("local", text, int(resolution), weights_file, config_file, digest)


def _combined_hash(weights_sha: str, config_sha: str) -> str:
    return hashlib.sha256(f"{weights_sha}:{config_sha}".encode()).hexdigest()


def weights_dir(name: str) -> Path:
    """Cache folder of a pretrained model's files."""
    return cache_dir() / "weights" / name


def fetch_weights(name: str, *, progress: Progress | None = None, download: bool = True) -> Path:
    """The cache folder holding a pretrained model's ``pytorch_model.bin``.

    A cached copy is re-hashed against the SHA-256 recorded when it was downloaded; a missing
    or damaged file is downloaded again (resuming a partial download). Nothing touches the
    network when the cached copy is intact.

    Args:
        name: ``biggan-deep-128``, ``biggan-deep-256`` or ``biggan-deep-512``.
        progress: ``progress(bytes_done, bytes_total)`` while downloading.
        download: allow downloading; when False a missing file raises OSError.

    Raises:
        ValueError: unknown name.
        OSError: the file is missing and could not be downloaded.
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}: expected one of {list(PRETRAINED)}")
    folder = weights_dir(name)
    path = folder / WEIGHTS_NAME
    record = _read_json(folder / SIDECAR_NAME) or {}
    files = record.get("files")
    entry = files.get(WEIGHTS_NAME) if isinstance(files, dict) else None
    if isinstance(entry, dict) and path.is_file() and _intact(path, entry):
        return folder
    if path.exists():
        logger.warning("cached %s does not match its recorded SHA-256: fetching it again", path)
        path.unlink()
    if not download:
        raise OSError(f"pretrained {name} is not cached in {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in _MIRRORS[PRETRAINED[name]]:
        try:
            _download(url, path, progress)
        except OSError as e:
            errors.append(f"{url}: {e}")
            continue
        entry = {"sha256": sha256_file(path), "size": path.stat().st_size, "url": url}
        write_json(
            folder / SIDECAR_NAME,
            {"name": name, "files": {WEIGHTS_NAME: entry}, "fetched": time.time()},
        )
        logger.info("cached %s in %s", name, folder)
        return folder
    raise OSError(
        f"could not download {name} ({'; '.join(errors)}); put its {WEIGHTS_NAME} in {folder}, "
        "pass --weights FOLDER, or use --weights random"
    )


def _intact(path: Path, entry: dict[str, Any]) -> bool:
    return path.stat().st_size == entry.get("size") and sha256_file(path) == entry.get("sha256")


def _download(url: str, dest: Path, progress: Progress | None, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with an HTTP Range request."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "dmv-fast"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            os.replace(part, dest)
            return
        raise OSError(f"HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, TimeoutError) as e:
        raise OSError(str(getattr(e, "reason", e))) from e
    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else 0
        logger.info("downloading %s%s", url, f" (resuming at {have} bytes)" if resumed else "")
        done = have
        with open(part, "ab" if resumed else "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, max(total, done))
    if total and done != total:
        raise OSError(f"download of {url} stopped at {done} of {total} bytes")
    os.replace(part, dest)


# ---------------------------------------------------------------------------------------------
# ONNX cache


def check_export_args(
    precision: str, batch_size: int, scaling: int, pixels: str, pixel_format: str = "rgb24"
) -> tuple[str, int, int, str]:
    """Validate the graph settings; returns them normalised (ValueError naming the bad one)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not (1 <= batch_size <= MAX_BATCH)
    ):
        raise ValueError(f"batch size must be an integer in 1..{MAX_BATCH}, got {batch_size!r}")
    if (
        isinstance(scaling, bool)
        or not isinstance(scaling, int)
        or not (1 <= scaling <= MAX_SCALING)
    ):
        raise ValueError(f"scaling must be an integer in 1..{MAX_SCALING}, got {scaling!r}")
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS}, got {pixels!r}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, got {pixel_format!r}")
    return precision, batch_size, scaling, pixels


def exporter_version() -> str:
    from dmv_fast_export import EXPORTER_VERSION

    return EXPORTER_VERSION


def onnx_key(
    source: WeightsSource,
    precision: str,
    batch_size: int,
    scaling: int,
    pixels: str,
    pixel_format: str = "rgb24",
) -> dict[str, Any]:
    """Everything an exported graph depends on.

    ``pixel_format="yuv420p"``: the graph also outputs YUV 4:2:0 planes (made on the GPU for
    the encoder), checked against the host conversion at export.
    """
    return {
        "pixel_format": pixel_format,
        "model": source.slug,
        "weights_sha256": source.sha256,
        "resolution": source.resolution,
        "precision": precision,
        "batch_size": batch_size,
        "scaling": scaling,
        "pixels": pixels,
        "exporter_version": exporter_version(),
    }


def onnx_path(key: dict[str, Any]) -> Path:
    """Cache path of the graph described by ``key`` (its sidecar is ``.json`` beside it)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = (
        f"{key['model']}-{key['resolution']}-{key['precision']}-b{key['batch_size']}"
        f"-x{key['scaling']}-{key['pixels']}{'-yuv' if key['pixel_format'] != 'rgb24' else ''}"
        f"-{digest}.onnx"
    )
    return cache_dir() / "onnx" / name


def cached_onnx(key: dict[str, Any]) -> Path | None:
    """The cached graph for ``key`` if it is intact, else None (a damaged entry is removed)."""
    path = onnx_path(key)
    sidecar = path.with_suffix(".json")
    if not path.exists() and not sidecar.exists():
        return None
    record = _read_json(sidecar)
    ok = (
        record is not None
        and record.get("key") == key
        and path.is_file()
        and path.stat().st_size == record.get("onnx_size")
        and sha256_file(path) == record.get("onnx_sha256")
    )
    if ok:
        return path
    logger.warning("cached graph %s is damaged or stale: exporting it again", path.name)
    for p in (path, sidecar):
        with contextlib.suppress(OSError):
            p.unlink()
    return None


def onnx_record(path: Path) -> dict[str, Any] | None:
    """The sidecar of a cached or exported graph (None when there is none)."""
    return _read_json(Path(path).with_suffix(".json"))


def torch_available() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("torch", "pytorch_pretrained_biggan")
    )


def ensure_onnx(
    resolution: int,
    weights: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    batch_size: int = 30,
    scaling: int = 1,
    pixels: str = "stretch",
    output: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    pixel_format: str = "rgb24",
    force: bool = False,
) -> Path:
    """The exported generator graph for these settings, exported on first use.

    This is the graph cache's one entry point: renders reach it through
    :func:`ensure_graph`, ``dmv-fast export`` directly.

    The cache is checked first (by weights hash, precision, batch, scaling, pixels and
    exporter version; a damaged entry is rebuilt). Exporting needs the ``[export]`` extra.

    Args:
        resolution: 128, 256 or 512 (a local model: its ``config.json``'s ``output_dim``).
        weights: see :func:`resolve_weights`.
        precision: ``"fp32"`` or ``"fp16"``.
        batch_size: the graph's static batch size.
        scaling: integer Lanczos upscaling inside the graph (1 = none).
        pixels: ``"stretch"`` or ``"fixed"``.
        output: also copy the graph (and its ``.json`` sidecar) here.
        progress: ``progress(done, total)``.
        pixel_format: ``"rgb24"``, or ``"yuv420p"`` for a graph that also outputs the
            encoder's YUV 4:2:0 planes.
        force: export again even when an intact cached graph exists.

    Returns:
        Path of the ``.onnx`` file: ``output`` when given, else the cached file. The graph
        takes ``noise`` float32 ``[B, 128]``, ``classes`` float32 ``[B, 1000]``, ``bn_idx``
        int64 ``[2]`` and ``bn_w`` float32 ``[2]`` and returns ``frames`` uint8
        ``[B, H, W, 3]``.

    Raises:
        ValueError: bad settings or weights. RuntimeError: torch is needed and missing.
    """
    precision, batch_size, scaling, pixels = check_export_args(
        precision, batch_size, scaling, pixels, pixel_format
    )
    source = resolve_weights(weights, resolution, progress=progress)
    key = onnx_key(source, precision, batch_size, scaling, pixels, pixel_format)
    path = None if force else cached_onnx(key)
    if path is None:
        if not torch_available():
            raise RuntimeError(f"exporting the generator needs PyTorch: {_EXPORT_HINT}")
        from dmv_fast_export.export import export_source

        path = export_source(source, key, progress=progress)
    if output is None:
        return path
    return copy_onnx(path, output)


def ensure_graph(plan: Plan, progress: Progress | None = None) -> Path:
    """The cached graph a :class:`~dmv_fast.plan.Plan` runs (exported on first use)."""
    spec = plan.spec
    return ensure_onnx(
        spec.resolution,
        spec.weights,
        plan.precision,
        plan.batch_size,
        scaling=spec.scaling,
        pixels=spec.pixels,
        progress=progress,
        pixel_format=plan.pixel_format,
    )


def copy_onnx(path: Path, output: str | os.PathLike[str]) -> Path:
    """Copy a graph and its sidecar to ``output`` (a file path, or a folder to copy into)."""
    out = Path(output).expanduser()
    if out.is_dir():
        out = out / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() != path.resolve():
        shutil.copyfile(path, out)
        sidecar = path.with_suffix(".json")
        if sidecar.exists():
            shutil.copyfile(sidecar, out.with_suffix(".json"))
    return out
