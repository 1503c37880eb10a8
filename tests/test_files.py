"""dmv_fast.files: whole files or none, no-replace publishing, stale sweeps, signals."""

from __future__ import annotations

import os
import signal
import stat
import subprocess

import pytest

from dmv_fast import files
from dmv_fast.files import (
    Interrupted,
    atomic_write,
    interrupts,
    is_temporary,
    publish,
    same_file,
    sweep,
    temporary_name,
)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_write_gives_ordinary_permissions(tmp_path, umask_027):
    path = atomic_write(tmp_path / "a.json", "{}\n")
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 less the umask, not 0o600
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_leaves_nothing(tmp_path):
    def boom(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "a.bin", boom)
    assert os.listdir(tmp_path) == []


def test_temporary_names_carry_the_pid(tmp_path):
    tmp = temporary_name(tmp_path / "video.mp4")
    assert tmp.name.startswith(f".video.mp4.tmp-{os.getpid()}-")
    assert is_temporary(tmp) and not is_temporary(tmp_path / "video.mp4")


@pytest.mark.parametrize("kernel_noreplace", [True, False], ids=["renameat2", "link"])
def test_publish_never_replaces_a_file_that_appeared(tmp_path, monkeypatch, kernel_noreplace):
    if not kernel_noreplace:
        monkeypatch.setattr(files, "_rename_noreplace", lambda src, dest: False)
    dest = tmp_path / "out.mp4"
    tmp = temporary_name(dest)
    tmp.write_bytes(b"mine")
    dest.write_bytes(b"theirs")
    with pytest.raises(FileExistsError, match="already exists"):
        publish(tmp, dest, overwrite=False)
    assert dest.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["out.mp4"]
    tmp.write_bytes(b"mine")
    publish(tmp, dest, overwrite=True)
    assert dest.read_bytes() == b"mine" and os.listdir(tmp_path) == ["out.mp4"]
    other = tmp_path / "new.mp4"
    tmp.write_bytes(b"new")
    publish(tmp, other, overwrite=False)
    assert other.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["new.mp4", "out.mp4"]


def test_sweep_removes_only_dead_owners_temporaries(tmp_path):
    dead = tmp_path / f".a.mp4.tmp-{_dead_pid()}-0123abcd"
    live = tmp_path / f".b.mp4.tmp-{os.getppid()}-0123abcd"
    mine = temporary_name(tmp_path / "c.mp4")
    other = tmp_path / ".hidden.tmp-notapid"
    for p in (dead, live, mine, other):
        p.write_bytes(b"x")
    assert sweep(tmp_path) == [dead]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (live, mine, other))
    assert sweep(tmp_path / "missing") == []


def test_same_file_sees_through_links(tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(song)
    os.link(song, tmp_path / "hard.mp4")
    assert same_file(tmp_path / "link.mp4", song)
    assert same_file(tmp_path / "hard.mp4", song)
    assert same_file(tmp_path / "." / "song.wav", song)
    assert not same_file(tmp_path / "other.mp4", song)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_become_interrupts(sig, code):
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as info, interrupts():
        os.kill(os.getpid(), sig)
        for _ in range(10**7):  # the handler runs at the next bytecode boundary
            pass
        pytest.fail("the signal did not interrupt")
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.exit_code == code and str(info.value) == sig.name
    assert signal.getsignal(sig) == before
