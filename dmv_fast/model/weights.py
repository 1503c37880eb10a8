"""Model weights: where they come from, the download and its cache. No torch here.

Cache layout (``DMV_FAST_CACHE`` overrides the folder; default: platformdirs'
``user_cache_dir("dmv-fast")``)::

    <cache>/weights/biggan-deep-128/pytorch_model.bin     downloaded once (resumed if cut)
    <cache>/weights/biggan-deep-128/dmv-fast.json         its SHA-256, size and source URL

Weights resolve in a fixed order and never touch the network when the cache or a local path
serves: ``"random"`` (seeded random weights, nothing to fetch), an existing folder or file in
pytorch-pretrained-biggan's format, a pretrained name (cached copy, re-hashed before use;
downloaded only when missing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmv_fast.files import publish, read_json, sha256_file, write_json
from dmv_fast.settings.choices import RESOLUTIONS

logger = logging.getLogger("dmv_fast")

#: ``progress(done, total)``: bytes while downloading, steps while exporting.
Progress = Callable[[int, int], None]

ENV_CACHE = "DMV_FAST_CACHE"
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
    for res in RESOLUTIONS
}
_MIRRORS[128].append(
    f"https://huggingface.co/osanseviero/BigGAN-deep-128/resolve/main/{WEIGHTS_NAME}"
)
PRETRAINED = {f"biggan-deep-{res}": res for res in RESOLUTIONS}


def cache_dir() -> Path:
    """The cache root: ``$DMV_FAST_CACHE`` if set, else the user cache dir for dmv-fast."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dmv-fast"))


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


def _config_output_dim(config_file: Path) -> int:
    data = read_json(config_file)
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
        weights = f"biggan-deep-{resolution}"
    text = os.fspath(weights)
    if text == RANDOM:
        if resolution not in RESOLUTIONS:  # random weights use the standard configs
            raise ValueError(f"random weights come in resolutions {RESOLUTIONS}, not {resolution}")
        return WeightsSource(RANDOM, RANDOM, resolution, None, None, f"random-seed{RANDOM_SEED}")
    if text in PRETRAINED:
        res = resolution
        if PRETRAINED[text] != res:
            raise ValueError(
                f"weights {text!r} are for resolution {PRETRAINED[text]}, not {resolution}"
            )
        folder = fetch_weights(text, progress=progress, download=download)
        record = read_json(folder / SIDECAR_NAME) or {}
        digest = _combined_hash(record["files"][WEIGHTS_NAME]["sha256"], "standard")
        return WeightsSource("pretrained", text, res, folder / WEIGHTS_NAME, None, digest)
    weights_file, config_file = _local_files(text, resolution)
    digest = _combined_hash(
        sha256_file(weights_file), sha256_file(config_file) if config_file else "standard"
    )
    return WeightsSource("local", text, int(resolution), weights_file, config_file, digest)


def _local_files(text: str, resolution: int) -> tuple[Path, Path | None]:
    """``(weights file, config file or None)`` of a local ``--weights`` value, checked."""
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
    return weights_file, config_file


def check_weights(weights: str | os.PathLike[str] | None, resolution: int) -> None:
    """The cheap checks of :func:`resolve_weights`, run before any analysis: a known name at
    its resolution, or local files that exist and whose ``config.json`` agrees. Nothing is
    downloaded or hashed.

    Raises:
        ValueError: what :func:`resolve_weights` would raise for the same value.
    """
    text = os.fspath(weights) if weights is not None else f"biggan-deep-{resolution}"
    if text == RANDOM:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"random weights come in resolutions {RESOLUTIONS}, not {resolution}")
    elif text in PRETRAINED:
        if PRETRAINED[text] != resolution:
            raise ValueError(
                f"weights {text!r} are for resolution {PRETRAINED[text]}, not {resolution}"
            )
    else:
        _local_files(text, resolution)


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
    record = read_json(folder / SIDECAR_NAME) or {}
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
            publish(part, dest, overwrite=True)
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
    publish(part, dest, overwrite=True)
