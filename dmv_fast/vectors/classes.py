"""ImageNet classes by index or by name.

The 1000 ImageNet-1k labels ship as package data (``data/imagenet_classes.txt``, line ``i`` is
class ``i``: its WordNet synonyms separated by ", ", e.g. ``tench, Tinca tinca``). A name
matches a class when it equals one of the class's synonyms, ignoring case, surrounding spaces
and underscores-for-spaces; an unknown or ambiguous name is a ``ValueError`` that lists the
closest labels.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from importlib import resources

from dmv_fast.settings.choices import N_IMAGENET


@functools.lru_cache(maxsize=1)
def class_labels() -> tuple[str, ...]:
    """The 1000 labels, index ``i`` = ImageNet class ``i``."""
    text = resources.files("dmv_fast").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != N_IMAGENET:  # a broken installation, not a user error
        raise RuntimeError(f"imagenet_classes.txt holds {len(labels)} labels, not {N_IMAGENET}")
    return labels


def class_name(index: int) -> str:
    """The label of ImageNet class ``index`` (0..999), all synonyms: ``"tench, Tinca tinca"``."""
    if isinstance(index, bool) or not 0 <= int(index) < N_IMAGENET or int(index) != index:
        raise ValueError(f"class index must be in 0..{N_IMAGENET - 1}, got {index!r}")
    return class_labels()[int(index)]


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().casefold()


@functools.lru_cache(maxsize=1)
def _synonym_index() -> dict[str, tuple[int, ...]]:
    index: dict[str, list[int]] = {}
    for i, label in enumerate(class_labels()):
        for synonym in label.split(","):
            key = _normalise(synonym)
            if key and i not in index.setdefault(key, []):
                index[key].append(i)
    return {k: tuple(v) for k, v in index.items()}


def find_class(name: str) -> int:
    """The index of the class that has ``name`` among its synonyms.

    Raises:
        ValueError: no class has that name (the closest labels are listed), or several do.
    """
    key = _normalise(name)
    synonyms = _synonym_index()
    hits = synonyms.get(key, ())
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        choices = "; ".join(f"{i} ({class_labels()[i]})" for i in hits)
        raise ValueError(f"class name {name!r} is ambiguous: {choices}; give the index instead")
    close = difflib.get_close_matches(key, list(synonyms), n=5, cutoff=0.6)
    if close:
        hint = "; closest: " + ", ".join(
            f"{c!r} ({'/'.join(map(str, synonyms[c]))})" for c in close
        )
    else:
        hint = "; see dmv_fast/data/imagenet_classes.txt for the 1000 labels"
    raise ValueError(f"unknown ImageNet class name {name!r}{hint}")


def resolve_classes(tokens: Iterable[str | int]) -> tuple[int, ...]:
    """Turn ``--classes`` tokens (indices or names) into ImageNet indices, in the given order.

    Args:
        tokens: integers or strings: ``"45"``, ``"goldfish"``, ``"fire engine"``, ``"fire_engine"``.

    Returns:
        The indices, one per token (checked to be in 0..999; distinctness and count are checked
        by :meth:`dmv_fast.settings.options.RenderOptions.validate`).

    Raises:
        ValueError: an index outside 0..999, an unknown or ambiguous name.
    """
    out: list[int] = []
    for token in tokens:
        if isinstance(token, bool):
            raise ValueError(f"class must be an index or a name, got {token!r}")
        if isinstance(token, int):
            index = token
        else:
            text = str(token).strip()
            if re.fullmatch(r"[+-]?\d+", text):
                index = int(text)
            else:
                out.append(find_class(text))
                continue
        if not 0 <= index < N_IMAGENET:
            raise ValueError(f"class index must be in 0..{N_IMAGENET - 1}, got {token!r}")
        out.append(index)
    return tuple(out)
