"""``NAME.segments/`` beside an output: the finished segments a rerun resumes, owned by one run.

dmv-fast writes these files there, and only these:

- ``manifest.json``: what decides the segments' bitstream; a rerun reuses segments only when
  it is equal;
- ``00000.mp4``, ``00001.mp4``, ...: one per finished segment;
- ``00000.sha256``, ...: the SHA-256 of a finished segment, written by the driver once the
  segment is in; a segment whose bytes no longer match it is rendered again (on a rerun) or
  refused (before the join);
- ``lock``: the pid (and start time) of the run rendering into the folder (a lock whose
  process no longer exists is stale and swept);
- temporaries ``.NAME.tmp-<pid>-<random>`` (:mod:`dmv_fast.files`).

A folder that holds anything else, or files without a dmv-fast manifest, is not dmv-fast's:
it is never reused, changed or removed (:func:`check_segments_folder` refuses it in one line
before any analysis). Removing a folder removes only the files above.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmv_fast.files import (
    as_json,
    atomic_write,
    is_temporary,
    read_json,
    sha256_file,
    sweep,
    write_json,
)
from dmv_fast.video.segments import Segment

logger = logging.getLogger("dmv_fast")

MANIFEST = "manifest.json"
LOCK = "lock"
#: Marks a segments manifest (a folder of another kind is not reused).
SEGMENTS_FORMAT = "dmv-fast-segments"
#: The names of the files dmv-fast writes in a segments folder (temporaries aside).
_OWN = re.compile(r"^(manifest\.json|lock|\d{5,}\.mp4|\d{5,}\.sha256)$")


def segments_folder(output_file: str | os.PathLike[str]) -> Path:
    """The segments folder of an output: ``NAME.segments/`` beside ``NAME.mp4``."""
    out = Path(output_file)
    return out.with_name(out.stem + ".segments")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's live process
    return True


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None where /proc cannot
    tell: with the pid, it names one process even once pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat[stat.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _lock_text() -> str:
    pid = os.getpid()
    return f"{pid} {_started(pid) or ''}".strip() + "\n"


def _lock(folder: Path) -> tuple[int, str | None] | None:
    """``(pid, start time or None)`` written in ``folder``'s lock, or None (no lock)."""
    try:
        fields = (folder / LOCK).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if not fields or not fields[0].isdigit():
        return None
    return int(fields[0]), (fields[1] if len(fields) > 1 else None)


def _lock_pid(folder: Path) -> int | None:
    lock = _lock(folder)
    return lock[0] if lock is not None else None


def lock_owner(folder: Path) -> int | None:
    """The pid of another live run that holds ``folder``, or None (no lock, a stale one, or
    this process's own)."""
    lock = _lock(folder)
    if lock is None or lock[0] == os.getpid() or not _alive(lock[0]):
        return None
    pid, started = lock
    if started is not None and _started(pid) not in (None, started):
        return None  # the pid now names another process
    return pid


def _busy(folder: Path, pid: int) -> ValueError:
    return ValueError(
        f"another run (pid {pid}) is rendering into {str(folder)!r}; wait for it to end or stop it"
    )


def _foreign(folder: Path) -> list[str]:
    """Names in ``folder`` that dmv-fast does not write there (its temporaries aside)."""
    out = []
    for entry in os.scandir(folder):
        if is_temporary(entry.name):
            continue
        if not _OWN.match(entry.name) or not entry.is_file(follow_symlinks=False):
            out.append(entry.name)
    return sorted(out)


def check_segments_folder(folder: Path) -> None:
    """Refuse, before any analysis, a segments folder that a render may not use: one that is
    not a folder, holds files dmv-fast did not write there, or that another live run holds.
    A missing or empty folder is fine.

    Raises:
        ValueError: naming the folder and what is wrong.
    """
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise ValueError(f"{str(folder)!r} exists and is not a segments folder of dmv-fast")
    try:
        foreign = _foreign(folder)
        names = {e.name for e in os.scandir(folder) if not is_temporary(e.name)}
    except OSError as e:
        raise ValueError(f"segments folder {str(folder)!r} cannot be read ({e.strerror})") from e
    if foreign:
        raise ValueError(
            f"segments folder {str(folder)!r} holds {foreign[0]!r}, which dmv-fast did not write:"
            " move it away or choose another output"
        )
    if names - {LOCK} and SegmentFolder.read_manifest(folder) is None:
        raise ValueError(
            f"segments folder {str(folder)!r} has no dmv-fast manifest.json, so its files are not"
            " dmv-fast's: move it away or choose another output"
        )
    owner = lock_owner(folder)
    if owner is not None:
        raise _busy(folder, owner)


def _acquire(folder: Path) -> None:
    """Take ``folder``'s lock for this process (a stale lock is swept)."""
    path = folder / LOCK
    for _ in range(3):
        try:
            atomic_write(path, _lock_text(), overwrite=False)
            return
        except FileExistsError:
            if _lock_pid(folder) == os.getpid():
                return
            owner = lock_owner(folder)
            if owner is not None:
                raise _busy(folder, owner) from None
            logger.info("%s: removing the lock of a run that no longer exists", folder)
            path.unlink(missing_ok=True)
    raise _busy(folder, _lock_pid(folder) or 0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SegmentFolder:
    """``NAME.segments/``: finished segment files, their checksums and the manifest that made
    them; open with :meth:`open` (this run then holds the folder)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest

    @staticmethod
    def read_manifest(folder: Path) -> dict[str, Any] | None:
        """The manifest of an existing folder, or None (no folder, or an unreadable one)."""
        data = read_json(folder / MANIFEST)
        return data if data is not None and data.get("format") == SEGMENTS_FORMAT else None

    @classmethod
    def open(cls, folder: Path, manifest: dict[str, Any]) -> SegmentFolder:
        """Create or reuse ``folder`` for ``manifest``, and hold it for this run.

        Segments made with another manifest (other settings, song or vectors) belong to
        another video: they are deleted. Leftover temporaries of a killed run are deleted too.

        Raises:
            ValueError: the folder is not dmv-fast's, or another live run holds it.
        """
        manifest = as_json({"format": SEGMENTS_FORMAT, **manifest}, "segments manifest")
        check_segments_folder(folder)
        folder.mkdir(exist_ok=True)
        _acquire(folder)
        store = cls(folder, manifest)
        if cls.read_manifest(folder) != manifest:
            stale = sorted(folder.glob("*.mp4"))
            if stale:
                logger.info(
                    "%s holds %d segments of other settings; rendering them again",
                    folder,
                    len(stale),
                )
            store._delete(keep_lock=True)
            write_json(folder / MANIFEST, manifest)
        sweep(folder)  # temporaries of runs that were killed
        return store

    def path(self, segment: Segment) -> Path:
        return self.folder / segment.name

    def checksum_path(self, segment: Segment) -> Path:
        """The file holding the SHA-256 of ``segment``'s file: ``00007.sha256``."""
        return self.folder / f"{segment.index:05d}.sha256"

    def _intact(self, segment: Segment) -> str | None:
        """Why ``segment``'s file cannot be used, or None when it is the file recorded."""
        path = self.path(segment)
        try:
            recorded = self.checksum_path(segment).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return "has no recorded checksum (its run ended before recording it)"
        try:
            found = sha256_file(path)
        except OSError as e:
            return f"cannot be read ({e.strerror})"
        return None if found == recorded else "is not the file recorded (its SHA-256 differs)"

    def missing(self, segments: Sequence[Segment]) -> list[Segment]:
        """Segments without a whole file: a file that is not the one recorded (damaged,
        truncated, or finished after its run's driver stopped) is deleted and counted."""
        out = []
        for seg in segments:
            if not self.path(seg).exists():
                self.checksum_path(seg).unlink(missing_ok=True)
                out.append(seg)
                continue
            why = self._intact(seg)
            if why is not None:
                logger.warning("segment %s %s; rendering it again", self.path(seg), why)
                self._drop(seg)
                out.append(seg)
        return out

    def finished(self, segment: Segment, data: bytes | None = None) -> None:
        """Record a finished segment: store its bytes when they came from elsewhere (a Ray
        actor), then its SHA-256 beside it (both atomically)."""
        if data is not None:
            atomic_write(self.path(segment), data)
            digest = _sha256(data)
        else:
            digest = sha256_file(self.path(segment))
        atomic_write(self.checksum_path(segment), digest + "\n")

    def write(self, segment: Segment, data: bytes) -> Path:
        """Store an encoded segment received from elsewhere, with its checksum."""
        self.finished(segment, data)
        return self.path(segment)

    def verify(self, segments: Sequence[Segment]) -> None:
        """Check every segment against its recorded SHA-256 before a join.

        Raises:
            RuntimeError: a segment changed on disk after it was rendered (it is deleted, so
                that the same command renders it again).
        """
        for seg in segments:
            why = self._intact(seg)
            if why is not None:
                self._drop(seg)
                raise RuntimeError(
                    f"segment {str(self.path(seg))!r} {why}; it was deleted: run the same"
                    " command again to render it anew"
                )

    def _drop(self, segment: Segment) -> None:
        for path in (self.path(segment), self.checksum_path(segment)):
            path.unlink(missing_ok=True)

    def finished_count(self) -> int:
        """Segment files in the folder."""
        return sum(1 for _ in self.folder.glob("*.mp4"))

    def release(self) -> None:
        """Give the folder up (its lock, when this process holds it); the files stay."""
        if _lock_pid(self.folder) == os.getpid():
            (self.folder / LOCK).unlink(missing_ok=True)

    def _delete(self, keep_lock: bool = False) -> None:
        """Delete the files dmv-fast writes here (this process's temporaries included)."""
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        own_tmp = f"-{os.getpid()}-"
        for entry in entries:
            name = entry.name
            ours = _OWN.match(name) and not (keep_lock and name == LOCK)
            if ours or (is_temporary(name) and own_tmp in name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        sweep(self.folder)

    def remove(self) -> None:
        """Delete the folder: only the files dmv-fast wrote; a folder that holds anything
        else afterwards is left (with that)."""
        if lock_owner(self.folder) is not None:
            return  # another run took it over meanwhile
        if not self.folder.is_dir():
            return
        self._delete()
        try:
            self.folder.rmdir()
        except OSError:
            logger.info("%s holds files dmv-fast did not write: it is left", self.folder)

    def discard(self) -> None:
        """After a failure before any segment was rendered: remove the folder when it holds
        no finished segment, else keep the segments and give the folder up."""
        if self.finished_count():
            self.release()
        else:
            self.remove()
