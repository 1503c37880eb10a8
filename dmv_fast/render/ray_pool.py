"""Segments on Ray: actors that each hold a generator session, across GPUs and nodes.

:class:`RayPool` starts one actor per GPU of the cluster (``num_gpus=1``, or a fraction with
``actors_per_gpu``) when the model may run on a GPU and the cluster has GPUs, otherwise one
CPU actor per CPU. Each actor is a :class:`dmv_fast.render.workers.SegmentWorker`: it builds its
session once and renders the segments an ``ActorPool`` hands it. A segment travels as its
vectors; it comes back as the encoded segment file's bytes, so nodes need no shared disk.
An actor that dies is restarted by Ray and its segment retried (``max_restarts``,
``max_task_retries``). The same actors serve every song of a batch.

Ray is an optional extra (``pip install 'dmv-fast[ray]'``) and is imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import signal
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from dmv_fast.render.workers import SegmentDone, SegmentTask, SegmentWorker, WorkerModel

logger = logging.getLogger("dmv_fast")

RAY_HINT = "pip install 'dmv-fast[ray]'"
#: How often Ray restarts a dead actor and retries the segment it was rendering.
MAX_RESTARTS = 3


#: Seconds to wait for a cluster's address to answer before giving up.
CONNECT_TIMEOUT = 10.0
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>\[[0-9a-fA-F:.]+\]|[\w.-]+):(?P<port>\d{1,5})$")
#: Whether the Ray session was started by :func:`connect` (the pool that uses it ends it).
_started_here = False


def require_ray() -> Any:
    """Import Ray, or raise one clear line saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RuntimeError(f"Ray is not installed; install it with: {RAY_HINT}") from e
    return ray


def check_address(address: str) -> None:
    """ValueError unless ``address`` has the form of a Ray address: ``local``, ``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT``."""
    if address in ("local", "auto"):
        return
    m = _ADDRESS.match(address) if isinstance(address, str) else None
    if m is None or not 0 < int(m.group("port")) < 65536:
        raise ValueError(
            f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT, auto or local"
        )


def _found(address: str) -> str:
    """The cluster ``auto`` means (``RAY_ADDRESS``, or the one ``ray start`` left), as
    HOST:PORT; the address itself when Ray cannot tell."""
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:  # another Ray: it finds the cluster itself
        return address
    try:
        found = get_ray_address_from_environment(address, None)
    except ConnectionError as e:
        if "could not find any running" not in str(e).lower():  # several clusters, say
            raise RuntimeError(f"--ray auto: {str(e).strip().splitlines()[0]}") from None
        raise RuntimeError(
            "no Ray cluster found (--ray auto); start one with `ray start --head`, "
            "or use --ray local for a Ray instance of this run"
        ) from None
    return found if isinstance(found, str) else address


def _reach(address: str) -> None:
    """Open and close a TCP connection to the cluster's address, within
    :data:`CONNECT_TIMEOUT` seconds (Ray itself would wait for ever)."""
    m = _ADDRESS.match(address)
    if m is None:
        return
    host = m.group("host").strip("[]")
    try:
        with socket.create_connection((host, int(m.group("port"))), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise RuntimeError(f"cannot reach the Ray cluster at {address!r} ({reason})") from None


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (or start a local instance: None or ``local``),
    unless this process already has a Ray session: the address's form is checked and the
    cluster reached first, in one line on failure. The signal handlers Ray installs are
    put back as they were (a signal stops a render the usual way, with one line).

    Raises:
        ValueError: not a Ray address.
        RuntimeError: Ray is not installed; no cluster answers at the address.
    """
    global _started_here
    address = address or "local"
    check_address(address)
    ray = require_ray()
    if ray.is_initialized():
        return
    if address != "local":
        _reach(_found(address) if address == "auto" else address)
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        ray.init(
            address=None if address == "local" else address,
            logging_level=logging.ERROR,  # its notices are not the render's
            include_dashboard=False,
            # The actors' own logs reach this terminal only with -v (they are in Ray's logs).
            log_to_driver=logger.isEnabledFor(logging.DEBUG),
        )
    except ConnectionError as e:
        raise RuntimeError(f"cannot join the Ray cluster at {address!r}: {e}") from None
    finally:
        for s, handler in handlers.items():
            if main and handler is not None:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(s, handler)
    _started_here = True


class RaySegmentWorker(SegmentWorker):
    """A segment worker that reports the Ray node it runs on."""

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())


def actors_that_fit(nodes: list[dict[str, Any]], per_actor: dict[str, float]) -> int:
    """How many actors asking ``per_actor`` (``{"CPU": 1, "GPU": 1}``) the alive nodes hold."""
    total = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        resources = node.get("Resources", {})
        fits = [
            math.floor(resources.get(name, 0) / amount + 1e-9)
            for name, amount in per_actor.items()
            if amount > 0
        ]
        total += min(fits) if fits else 0
    return total


class RayPool:
    """Segment workers as Ray actors.

    Args:
        model: the :class:`~dmv_fast.settings.spec.ModelSpec` (or a plan's) every actor builds; each
            actor resolves it on its own machine (with libx264), so GPU nodes get the GPU
            plan whatever the driver's machine has.
        address: the cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``), or None /
            ``"local"`` for a local Ray instance. Ignored when Ray is already initialised.
        actors: how many actors (default: as many as the cluster holds).
        actors_per_gpu: actors sharing one GPU (each asks ``num_gpus=1/actors_per_gpu``).
        worker_class: the actor class, :class:`RaySegmentWorker` or a subclass.
        max_restarts: restarts of a dead actor, each retrying the segment it held.

    Raises:
        RuntimeError: Ray is not installed, or the cluster has no room for an actor.
    """

    local = False  # actors may run on other machines: segments come back as bytes

    def __init__(
        self,
        model: Any,
        *,
        address: str | None = None,
        actors: int | None = None,
        actors_per_gpu: int = 1,
        worker_class: type[SegmentWorker] = RaySegmentWorker,
        max_restarts: int = MAX_RESTARTS,
    ) -> None:
        ray = require_ray()
        from ray.util import ActorPool

        for name, value in (("actors_per_gpu", actors_per_gpu), ("max_restarts", max_restarts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        if actors_per_gpu < 1:
            raise ValueError(f"actors_per_gpu must be >= 1; got {actors_per_gpu}")
        global _started_here
        self._ray = ray
        connect(address)
        self._owns, _started_here = _started_here, False
        try:
            spec = WorkerModel(model).spec
            gpus = ray.cluster_resources().get("GPU", 0)
            # The spec may run on a GPU unless it says cpu (or int8, a CPU precision).
            maybe_gpu = spec.backend != "cpu" and not spec.cpu_only
            self.on_gpu = maybe_gpu and gpus >= 1
            per_actor = {"CPU": 1.0, "GPU": 1.0 / actors_per_gpu} if self.on_gpu else {"CPU": 1.0}
            room = actors_that_fit(ray.nodes(), per_actor)
            if room < 1:
                raise RuntimeError(
                    f"the Ray cluster has no node with room for a worker ({per_actor})"
                )
            self.actors = min(actors, room) if actors else room
            # One core per CPU actor: its ONNX Runtime gets one thread.
            worker_model = WorkerModel(spec, threads=None if self.on_gpu else 1)
            remote = ray.remote(worker_class).options(
                num_cpus=per_actor["CPU"],
                num_gpus=per_actor.get("GPU", 0),
                max_restarts=max_restarts,
                max_task_retries=max_restarts,
            )
            self._handles = [remote.remote(worker_model) for _ in range(self.actors)]
            self._pool = ActorPool(self._handles)
        except BaseException:
            self.close()
            raise
        logger.info(
            "Ray: %d segment actors (%s)", self.actors, "one GPU each" if self.on_gpu else "CPU"
        )

    def run(self, tasks: Iterable[SegmentTask]) -> Iterator[SegmentDone]:
        """Render every task on the actors; yield results as they finish (any order).

        Raises:
            RuntimeError: a segment failed for good (its actor died more than
                ``max_restarts`` times, or the segment raised).
        """
        ray = self._ray
        results = self._pool.map_unordered(
            lambda actor, task: actor.render.remote(task), list(tasks)
        )
        while True:
            try:
                done = next(results)
            except StopIteration:
                return
            except ray.exceptions.RayError as e:
                cause = getattr(e, "cause", None)
                text = str(cause) if cause is not None else str(e).strip().splitlines()[-1]
                raise RuntimeError(f"a Ray segment worker failed: {text}") from e
            yield done

    def close(self) -> None:
        """End the actors, and the Ray instance if this pool started it."""
        for handle in getattr(self, "_handles", []):
            try:
                self._ray.kill(handle)
            except Exception as e:  # already gone
                logger.debug("while ending a Ray actor: %s", e)
        self._handles = []
        if self._owns:
            self._ray.shutdown()
            self._owns = False

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
