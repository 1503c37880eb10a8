"""ImageNet classes by index and by name."""

from __future__ import annotations

import pytest

from dmv_fast.vectors.classes import class_labels, class_name, resolve_classes


def test_the_1000_labels_ship_with_the_package():
    labels = class_labels()
    assert len(labels) == 1000
    assert labels[0] == "tench, Tinca tinca"
    assert labels[1] == "goldfish, Carassius auratus"
    assert labels[980] == "volcano"
    assert labels[999] == "toilet tissue, toilet paper, bathroom tissue"
    assert class_name(555) == "fire engine, fire truck"


def test_indices_and_names_resolve_in_order():
    assert resolve_classes(["45", "goldfish", 7, "Volcano", "  fire truck ", "fire_engine"]) == (
        45,
        1,
        7,
        980,
        555,
        555,
    )
    assert resolve_classes(["great white shark", "Carcharodon carcharias"]) == (2, 2)
    assert resolve_classes(["0", "999"]) == (0, 999)


@pytest.mark.parametrize("token", ["1000", "-1", 1000])
def test_indices_out_of_range(token):
    with pytest.raises(ValueError, match="0..999"):
        resolve_classes([token])


def test_unknown_name_lists_the_closest_labels():
    with pytest.raises(ValueError) as info:
        resolve_classes(["goldfsh"])
    message = str(info.value)
    assert "'goldfsh'" in message and "'goldfish' (1)" in message and "\n" not in message
    with pytest.raises(ValueError, match="unknown ImageNet class name 'qwxz'"):
        resolve_classes(["qwxz"])


def test_ambiguous_name_lists_every_match():
    with pytest.raises(ValueError) as info:
        resolve_classes(["crane"])
    message = str(info.value)
    assert "ambiguous" in message and "134" in message and "517" in message


def test_class_name_rejects_bad_indices():
    with pytest.raises(ValueError, match="0..999"):
        class_name(1000)
