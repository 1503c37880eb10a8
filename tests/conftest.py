"""Shared fixtures: songs synthesized on the fly, and the shipped real clip."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from _media import write_song

DATA = Path(__file__).parent / "data"


@pytest.fixture
def make_song(tmp_path: Path) -> Callable[..., Path]:
    """``make_song(name="song.wav", seconds=3, rate=22050, channels=1, seed=0, **sf_kwargs)``.

    Writes a synthesized piece with soundfile (format from the name's extension) and returns
    its path.
    """

    def make(
        name: str = "song.wav",
        seconds: float = 3.0,
        rate: int = 22050,
        channels: int = 1,
        seed: int = 0,
        **kwargs,
    ) -> Path:
        return write_song(tmp_path / name, seconds, rate, channels, seed=seed, **kwargs)

    return make


@pytest.fixture
def song_wav(make_song: Callable[..., Path]) -> Path:
    """Three seconds of synthesized chords and drums, 44100 Hz stereo WAV."""
    return make_song("song.wav", seconds=3.0, rate=44100, channels=2)


@pytest.fixture
def real_song() -> Path:
    """8.9 s of real CC0 music jingles (Ogg Vorbis, 44100 Hz mono); see tests/data/README.md."""
    return DATA / "kenney_jingles.ogg"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A local weights folder (pytorch_model.bin + config.json) of a BigGAN-deep-128 of the
    real layout but 4 channels wide: renders of real exported graphs in seconds."""
    pytest.importorskip("torch")
    from _models import write_narrow_folder

    return write_narrow_folder(tmp_path_factory.mktemp("tiny-biggan"))


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One model cache (``DMV_FAST_CACHE``) for a whole test module's exports."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("DMV_FAST_CACHE", str(path))
        yield path


@pytest.fixture(autouse=True)
def _restore_dmv_fast_logger():
    """The CLI configures the ``dmv_fast`` logger for a terminal; undo it after each test."""
    log = logging.getLogger("dmv_fast")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
