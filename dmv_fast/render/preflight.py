"""The cheap checks of a render that touch the file system, run once before any work.

Ranges are checked when :class:`~dmv_fast.settings.options.RenderOptions` and
:class:`~dmv_fast.settings.spec.ModelSpec` are made, and what the machine can run when the plan is
resolved; what is left is here: the song (exists, readable, decodable header, channels the
encoder takes) and the output (its folder exists and takes a new file, its name leaves room
for the temporary name, it is not the song, nor is the song one of the record files it
writes, it is not a folder, it does not exist unless overwriting). Temporaries that killed runs left beside the output are swept here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dmv_fast.audio.decode import AudioInfo, probe_audio
from dmv_fast.audio.track import check_audio
from dmv_fast.files import sweep, temporary_name
from dmv_fast.render.record import plot_path, record_paths
from dmv_fast.settings.options import RenderOptions

#: AAC in MP4 carries at most 8 channels (7.1).
MAX_CHANNELS = 8
#: Room the temporary names beside the output need on top of its own name.
TEMP_NAME_ROOM = 48


def check_output(path: Path, overwrite: bool, song: Path | None = None) -> None:
    """Refuse an output that could not be written, before any expensive work starts.

    Raises:
        ValueError: the folder is missing or takes no new file, the name is too long, the
            output is a folder or the song itself. FileExistsError: it exists and
            ``overwrite`` is False.
    """
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder, not a file")
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(path.name)) + TEMP_NAME_ROOM > name_max:
        raise ValueError(
            f"output name {path.name[:40]!r}... is too long: at most "
            f"{name_max - TEMP_NAME_ROOM} bytes leave room for its temporary name"
        )
    if song is not None and path.exists() and _same_file(path, song):
        raise ValueError(f"output {str(path)!r} is the song itself: choose another output")
    if song is not None:
        for written in (*record_paths(path), plot_path(path)):
            if written.exists() and _same_file(written, song):
                raise ValueError(
                    f"song {str(song)!r} is {written.name!r}, a file the render of"
                    f" {str(path)!r} writes: rename the song or choose another output"
                )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists (pass --overwrite to replace it)")
    # The real test of a writable folder (access() says yes for root, and for /proc), under
    # the very temporary name the video will have.
    probe = temporary_name(path)
    try:
        with open(probe, "xb"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise ValueError(
            f"output folder {str(folder)!r} does not take a new file ({e.strerror or e})"
        ) from None
    sweep(folder)  # temporaries of runs that were killed


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return False


def check_song(song: str | os.PathLike[str]) -> AudioInfo:
    """The song's header: readable, not empty, at most :data:`MAX_CHANNELS` channels."""
    info = probe_audio(song)
    if info.channels > MAX_CHANNELS:
        raise ValueError(
            f"song {os.fspath(song)!r} has {info.channels} channels; the video's AAC track takes "
            f"at most {MAX_CHANNELS}: mix it down first (for example to stereo)"
        )
    check_audio(song)  # a sample rate or layout the AAC track cannot take
    return info


def preflight(options: RenderOptions, *, overwrite: bool) -> AudioInfo:
    """Every file-system check of a render, in one place; returns the song's header.

    ``-s`` (save only) needs no song analysis but still muxes the song's audio, so the song
    is checked in every mode.
    """
    if options.plot:  # NAME.plot.png needs the optional matplotlib
        from dmv_fast.preview.figure import require_matplotlib

        require_matplotlib()
    info = check_song(options.song)
    check_output(Path(options.output_file), overwrite, Path(options.song))
    return info
