"""Files that appear whole or not at all, and runs that clean up after themselves.

Every file dmv-fast writes (video, record, frames, manifest, exported graph, cache sidecars)
goes through :func:`temporary` + :func:`publish` or the shorthand :func:`atomic_write`:

- the bytes go to a hidden temporary file beside the destination, named
  ``.NAME.tmp-<pid>-<random>`` so that the process that owns it can be identified later;
- the file is flushed and fsynced, given the permissions of an ordinary new file (the user's
  umask, not ``mkstemp``'s private 0600), then renamed onto the destination;
- without ``overwrite`` the rename never replaces a file that appeared meanwhile (another run
  to the same output): ``renameat2(RENAME_NOREPLACE)`` where the kernel has it, else a hard
  link then unlink; the loser gets a one-line :class:`FileExistsError`.

:func:`sweep` deletes the temporaries of processes that no longer exist (a run killed with
SIGKILL, a power cut); the pipeline calls it on the output folder, the frames folder and the
ONNX cache before it starts. :func:`interrupts` turns SIGTERM and SIGHUP into
:class:`Interrupted` (a :class:`KeyboardInterrupt`, like SIGINT) so that the same cleanup runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("dmv_fast")

__all__ = [
    "Interrupted",
    "as_json",
    "atomic_write",
    "interrupts",
    "is_temporary",
    "publish",
    "read_json",
    "same_file",
    "sha256_file",
    "sweep",
    "temporary",
    "temporary_name",
    "write_json",
]

#: ``.NAME.tmp-<pid>-<8 hex>``: the pid tells :func:`sweep` whether the owner still runs.
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def temporary_name(dest: str | os.PathLike[str]) -> Path:
    """A fresh temporary path beside ``dest``: ``.NAME.tmp-<pid>-<random>``."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like one of our temporaries."""
    return _TEMP_RE.match(Path(path).name) is not None


def _umask() -> int:
    # os.umask can only be read by setting it; do it under a lock so threads agree.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def temporary(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``dest`` that is deleted unless it was published.

    The body creates the file at the yielded path (any way it likes) and may call
    :func:`publish`; on an exception (KeyboardInterrupt included) the file is removed.
    """
    tmp = temporary_name(dest)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        tmp.unlink()  # not published: nothing to keep


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


_LIBC = _libc()


def _rename_noreplace(src: Path, dest: Path) -> bool:
    """``renameat2(RENAME_NOREPLACE)``; False when the kernel or file system lacks it."""
    fn = getattr(_LIBC, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dest))


def publish(
    tmp: str | os.PathLike[str], dest: str | os.PathLike[str], overwrite: bool, sync: bool = True
) -> None:
    """Move the finished temporary ``tmp`` onto ``dest`` in one step.

    The file is given ordinary permissions and (``sync``) fsynced first, so that a power cut
    cannot leave an empty file under the final name. With ``overwrite`` an existing ``dest``
    is replaced; without it ``dest`` is never replaced, even by a file another process
    created a moment ago.

    Raises:
        FileExistsError: ``dest`` exists and ``overwrite`` is False (``tmp`` is removed).
        OSError: the rename failed (``tmp`` is removed).
    """
    tmp, dest = Path(tmp), Path(dest)
    try:
        if sync:
            _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, dest)
        elif not _rename_noreplace(tmp, dest):
            os.link(tmp, dest)  # fails with EEXIST when dest exists: never replaces
            os.unlink(tmp)
    except FileExistsError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise FileExistsError(
            f"{str(dest)!r} already exists (another run wrote it meanwhile; pass --overwrite"
            " to replace it)"
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync:
        _fsync_dir(dest.parent)


def atomic_write(
    dest: str | os.PathLike[str],
    write: Callable[[IO[bytes]], Any] | bytes | str,
    *,
    overwrite: bool = True,
    sync: bool = True,
) -> Path:
    """Write ``dest`` whole or not at all.

    Args:
        dest: the final path; its folder must exist.
        write: ``write(f)`` filling a binary file object, or the bytes / text itself.
        overwrite: replace an existing ``dest`` (False: :class:`FileExistsError` instead).
        sync: fsync before the rename (survives a power cut, not only a crash); files that
            are verified when read back (the ``-d`` frames) can skip it.

    Returns:
        ``dest`` as a Path.
    """
    dest = Path(dest)
    with temporary(dest) as tmp:
        with open(tmp, "xb") as f:
            if isinstance(write, str):
                f.write(write.encode("utf-8"))
            elif isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
        publish(tmp, dest, overwrite, sync)
    return dest


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, whole or not at all, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def as_json(data: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` as it reads back from JSON (tuples become lists, keys strings): what a
    manifest compares against the one stored. ValueError naming ``what`` if it is not JSON."""
    try:
        return json.loads(json.dumps(data))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON data: {e}") from e


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, as hex (OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return True
    return True


def sweep(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries in ``folder`` whose owning process is gone.

    Temporaries of live processes (a concurrent run) are left alone. A missing or unreadable
    folder is not an error.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    if removed:
        logger.info(
            "removed %d temporary file(s) left in %s by a run that was killed",
            len(removed),
            folder,
        )
    return removed


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same existing file (through links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return False


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``signum`` is the signal, ``exit_code`` 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def interrupts(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, ``signals`` raise :class:`Interrupted` in the main thread.

    The cleanup that a SIGINT gets (``finally`` blocks, temporaries deleted) then runs for
    SIGTERM and SIGHUP too. Outside the main thread this does nothing. The previous handlers
    come back at the end.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = {}
    for s in signals:
        with contextlib.suppress(OSError, ValueError):
            previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
