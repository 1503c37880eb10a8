"""A small pool of spawned worker processes that live and die with the process that started
them (the driver).

Each worker is a fresh interpreter (``spawn``) holding one object built from a picklable
factory; it receives tasks one at a time over its own pipe and answers with progress
messages and a result. What the pool guarantees:

- **Signals are the driver's business.** A worker ignores SIGINT and SIGHUP (a terminal's
  Ctrl-C or hangup reaches the whole process group: the driver decides, and no worker prints
  a traceback) from the moment it starts. SIGTERM ends a worker quietly: the task it was on
  stops, and its temporary files are deleted on the way out.
- **A worker dies with its driver**, whatever kills the driver (SIGKILL included): on Linux
  the kernel sends it SIGTERM (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread sees
  the end of a pipe that only the driver holds open; a worker that does not stop within
  :data:`GRACE` seconds of either exits at once.
- **Stopping is immediate.** :meth:`ProcessPool.close`, or a run abandoned by an exception
  or an interrupt, sends SIGTERM to the workers, SIGKILL to those still there after
  :data:`GRACE` seconds, reaps every one (no zombies) and deletes the temporaries the killed
  ones left beside their tasks' files.
- **A dead worker is replaced.** The task it held runs again on a fresh worker, at most
  :data:`MAX_RETRIES` times; then the run fails with one line. An exception raised by a task
  is not retried: it is raised in the driver.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dmv_fast.files import Interrupted, sweep

logger = logging.getLogger("dmv_fast")

#: Retries of a task whose worker died (as Ray restarts a dead actor).
MAX_RETRIES = 3
#: Seconds a worker is given to stop after SIGTERM before SIGKILL.
GRACE = 3.0
_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------------------------------
# The worker's side


def _stop_quietly(signum: int, frame: Any) -> None:
    # Once: a second SIGTERM (the terminal's to the group, then the driver's) must not
    # interrupt the way out, where nothing would catch it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def _die_with(parent: int, deathsig: bool) -> None:
    """SIGTERM when the driver dies: from the kernel (Linux), else from a watchdog."""
    if deathsig and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError, TypeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the driver died before the line above
        raise Interrupted(signal.SIGTERM)


def _watch(alive: Any) -> None:
    """A thread waiting for the end of the pipe only the driver holds: the driver is gone."""

    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            alive.recv_bytes()  # nothing is ever sent: this returns at the driver's end
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE)
        os._exit(1)

    threading.Thread(target=wait, name="dmv-fast-driver-watch", daemon=True).start()


def _logging(level: int, fmt: str | None) -> None:
    """The driver's log level (``-q``, ``-v``) and format on this process's stderr."""
    log = logging.getLogger("dmv_fast")
    log.setLevel(level)
    if fmt is not None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        log.handlers[:] = [handler]
        log.propagate = False


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _serve(conn: Any, alive: Any, parent: int, deathsig: bool, payload: bytes) -> None:
    """A worker's life: obey only SIGTERM, die with the driver, build the object, serve tasks.

    ``payload`` is the pickled ``(factory, args, level, fmt)``: it is unpickled (importing
    whatever the factory needs) only after the signals are set.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_quietly)
    try:
        _die_with(parent, deathsig)
        _watch(alive)
        factory, args, level, fmt = pickle.loads(payload)
        _logging(level, fmt)
        worker = factory(*args)
        while (task := conn.recv()) is not None:
            try:
                done = worker.render(task, on_frames=lambda n: conn.send(("frames", n)))
            except Exception as exc:
                logger.debug("task %r failed", getattr(task, "key", None), exc_info=True)
                conn.send(("error", _picklable(exc)))
            else:
                conn.send(("done", done))
    except (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):
        sys.exit(128 + signal.SIGTERM)  # stopped, or the driver is gone: nothing to say


# ---------------------------------------------------------------------------------------
# The driver's side


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a worker is started, so that it starts ignoring it (an ignored
    signal stays ignored across exec). Blocked here meanwhile, a Ctrl-C is held, not lost."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is None:  # None: a handler not Python's
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class _Worker:
    """One spawned worker process, seen from the driver."""

    def __init__(self, ctx: Any, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
        log = logging.getLogger("dmv_fast")
        fmt = next((h.formatter._fmt for h in log.handlers if h.formatter), None)
        payload = pickle.dumps((factory, args, log.getEffectiveLevel(), fmt))
        self.conn, theirs = ctx.Pipe()
        watch, self._alive = ctx.Pipe(duplex=False)
        deathsig = threading.current_thread() is threading.main_thread()
        self.process = ctx.Process(
            target=_serve,
            args=(theirs, watch, os.getpid(), deathsig, payload),
            name="dmv-fast-worker",
            daemon=True,
        )
        with _sigint_ignored():
            self.process.start()
        theirs.close()
        watch.close()
        self.task: Any = None
        self.frames = 0  # frames reported for the task held

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def give(self, task: Any) -> None:
        self.task, self.frames = task, 0
        self.conn.send(task)

    def end(self) -> None:
        """Reap the process and close the pipes (after it ended)."""
        self.process.join()
        self.conn.close()
        self._alive.close()


def stop(workers: Iterable[_Worker]) -> None:
    """SIGTERM, then SIGKILL after :data:`GRACE` seconds; reap every worker and delete the
    temporaries the ones that were killed left beside their tasks' files."""
    workers = list(workers)
    folders = {Path(w.task.path).parent for w in workers if getattr(w.task, "path", None)}
    for w in workers:
        if w.alive():
            with contextlib.suppress(OSError):
                w.process.terminate()
    try:
        deadline = time.monotonic() + GRACE
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
    finally:
        for w in workers:
            if w.alive():
                with contextlib.suppress(OSError):
                    w.process.kill()
            w.end()
    for folder in folders:
        sweep(folder)


class ProcessPool:
    """``workers`` spawned processes, each serving tasks with ``factory(*args)``.

    The object a worker builds needs one method, ``render(task, on_frames)``: it returns a
    picklable result and may call ``on_frames(n)`` as it goes. A task may name the file it
    writes as ``task.path`` (its folder is swept of temporaries when a worker is killed).

    Args:
        factory, args: what each worker builds once (picklable: a class and its arguments).
        workers: number of processes.
        on_frames: called here with every ``n`` a worker reports (and ``-n`` for the frames
            of a task whose worker died, which runs again).
        retries: runs of a task again after its worker died.
        what: what a task is called in messages (``"segment"``).
    """

    def __init__(
        self,
        factory: Callable[..., Any],
        args: tuple[Any, ...],
        workers: int,
        on_frames: Callable[[int], None] | None = None,
        retries: int = MAX_RETRIES,
        what: str = "task",
    ) -> None:
        self._ctx = mp.get_context("spawn")
        self._what = what
        self._factory, self._args = factory, args
        self._on_frames = on_frames
        self._retries = retries
        self._workers: list[_Worker | None] = []  # None: stopped, started again when needed
        try:
            for _ in range(workers):
                self._workers.append(self._start())
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Worker:
        return _Worker(self._ctx, self._factory, self._args)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [w.pid for w in self._workers if w is not None and w.pid is not None]

    def run(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """Run every task; yield each result as it finishes (in any order).

        Raises:
            RuntimeError: a task's worker died more than ``retries`` times.
            Exception: what a task raised, as it was raised in the worker.
        """
        todo = iter(tasks)
        again: deque[Any] = deque()
        deaths: dict[Any, int] = {}
        try:
            while True:
                for i, w in enumerate(self._workers):
                    if w is not None and w.task is not None:
                        continue
                    task = again.popleft() if again else next(todo, None)
                    if task is None:
                        break
                    if w is None or not w.alive():  # stopped, or died idle: nothing is lost
                        if w is not None:
                            w.end()
                        w = self._workers[i] = self._start()
                    w.give(task)
                busy = self._busy()
                if not busy:
                    return
                mpc.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                results = []
                for w in busy:
                    result, died = self._read(w)
                    if result is not None:
                        results.append(result)
                    if died:
                        self._replace(w, again, deaths)
                yield from results
        finally:
            busy = self._busy()
            if busy:  # abandoned (an exception, an interrupt): stop what runs, at once
                stop(busy)
                for w in busy:
                    self._workers[self._workers.index(w)] = None

    def _busy(self) -> list[_Worker]:
        return [w for w in self._workers if w is not None and w.task is not None]

    def _read(self, w: _Worker) -> tuple[Any, bool]:
        """What ``w`` sent: (a finished result or None, whether it died)."""
        result = None
        while True:
            try:
                if not w.conn.poll():
                    return result, not w.alive()
                kind, value = w.conn.recv()
            except (EOFError, OSError):
                return result, True
            if kind == "frames":
                w.frames += value
                if self._on_frames is not None:
                    self._on_frames(value)
            elif kind == "done":
                w.task, result = None, value
            else:  # the task raised: so does the run
                w.task = None
                raise value

    def _replace(self, w: _Worker, again: deque[Any], deaths: dict[Any, int]) -> None:
        """A worker died: reap it, start a fresh one, and run its task again (or give up)."""
        w.end()
        how = _how(w.process.exitcode)
        i = self._workers.index(w)
        self._workers[i] = self._start()
        task = w.task
        if task is None:
            return
        if self._on_frames is not None and w.frames:
            self._on_frames(-w.frames)
        key = getattr(task, "key", id(task))
        deaths[key] = deaths.get(key, 0) + 1
        if deaths[key] > self._retries:
            raise RuntimeError(
                f"a worker process died {deaths[key]} times on the same {self._what} "
                f"(the last one {how}); giving up"
            )
        logger.warning(
            "a worker process died (%s); running its %s again on a fresh one (%d of %d)",
            how,
            self._what,
            deaths[key],
            self._retries,
        )
        again.append(task)

    def close(self) -> None:
        """Stop every worker at once (a task still running is abandoned) and reap them."""
        workers, self._workers = [w for w in self._workers if w is not None], []
        stop(workers)

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
