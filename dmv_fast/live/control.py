"""The live control surface: settings a performer changes while a session plays.

One :class:`Controls` per session (``session.controls``) takes changes from any thread, through
three doors: the Python API (:meth:`dmv_fast.live.session.LiveSession.set`), OSC messages
(:mod:`dmv_fast.live.osc`) and the preview window's keys (:mod:`dmv_fast.live.window`)::

    session.set(truncation=0.6, classes=["goldfish", 97])   # raises ValueError when bad
    session.controls.offer("osc", depth=0.5)                # logs one line when bad, goes on

A change is checked at once, against the ranges of :class:`~dmv_fast.settings.options.RenderOptions`
(defined once, in :mod:`dmv_fast.settings`), and takes effect at the next frame the session
computes: the session calls :meth:`Controls.apply` between audio pushes, under its engine lock,
so the trajectory never changes in the middle of a frame. Truncation and depth glide to their
new value over ``LIVE_GLIDE_SECONDS`` (a jump would flash); the other settings switch at that
frame. Several changes of one setting before the next frame: the last one wins.

What can change (:data:`~dmv_fast.settings.choices.LIVE_SETTINGS`): ``truncation``,
``depth``, ``jitter``, ``pitch_sensitivity``, ``tempo_sensitivity``, ``classes`` (1-12
indices or names in rank order; fewer than 12 set ``num_classes`` to their count) and
``num_classes`` (a larger count takes the seed's candidate classes after the given ones); and
the performer's actions (:data:`~dmv_fast.settings.choices.LIVE_ACTIONS`): ``freeze``
(True: the vectors stop moving, so the picture holds while the audio is still analysed),
``seed`` (a new random stream: a cut to a new noise state and, unless classes were given, new
classes; ``None`` draws one) and ``next_classes`` (a new random set of classes).

Every applied change is recorded with the frame it starts at (:meth:`Controls.changes`, in
``dmv-fast live --stats``); rejected ones are counted (:attr:`Controls.rejected`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from dmv_fast.settings.choices import (
    LIVE_ACTIONS,
    LIVE_GLIDE_SECONDS,
    LIVE_GLIDES,
    LIVE_REJECT_LOG_RATE,
    LIVE_SETTINGS,
    LIVE_TRUNCATION_STEP,
    MAX_CLASSES,
    MAX_SEED,
    N_IMAGENET,
    int_in,
    invalid,
    is_int,
)
from dmv_fast.vectors.classes import resolve_classes
from dmv_fast.vectors.online import OnlineTrajectory
from dmv_fast.vectors.trajectory import new_seed

logger = logging.getLogger("dmv_fast")

MAX_NAME = 200  # characters of a class name worth looking up
CHANGE_LOG = 1 << 16  # changes recorded; later ones are counted only


@dataclass(frozen=True)
class Change:
    """One applied change.

    Attributes:
        frame: the first frame it shows in (its glide starts there).
        setting: a name of ``LIVE_SETTINGS`` or ``LIVE_ACTIONS``.
        value: the new value (a glide's target; classes as indices).
        source: who asked: ``"api"``, ``"osc"``, ``"key"``.
        glide_frames: frames the glide takes to reach ``value`` (0: at once).
    """

    frame: int
    setting: str
    value: Any
    source: str
    glide_frames: int = 0


class Controls:
    """The settings of a live session while it plays; safe to use from any thread.

    Args:
        trajectory: the session's engine; its options are the starting settings.
        glide_seconds: how long truncation and depth take to reach a new value.
    """

    def __init__(
        self, trajectory: OnlineTrajectory, *, glide_seconds: float = LIVE_GLIDE_SECONDS
    ) -> None:
        self._lock = threading.Lock()
        self.glide_frames = max(1, round(glide_seconds * trajectory.fps))
        self._seed = trajectory.seed
        self._candidates = trajectory.drawn
        self._given = trajectory.options.classes is not None  # else the seed's draws
        self._bank = _fill(trajectory.classes, self._candidates)
        k = len(trajectory.classes)
        self._options = replace(trajectory.options, classes=self._bank[:k], num_classes=k)
        self._freeze = False
        self._rolls = 0  # next_classes draws so far
        self._pending: dict[str, tuple[Any, str]] = {}
        self._glides: dict[str, tuple[int, float, float]] = {}  # name: (first frame, from, to)
        self._now = {name: float(getattr(self._options, name)) for name in LIVE_GLIDES}
        self._log: list[Change] = []
        self._logged_out = 0
        self.rejected = 0
        self._quiet_until, self._quiet_count, self._quiet_lines = 0.0, 0, 0
        self.initial = self.settings()

    # -- the doors ----------------------------------------------------------------------------

    def set(self, source: str = "api", **changes: Any) -> None:
        """Change settings from the next frame on; all or nothing.

        Raises:
            ValueError: an unknown setting or a bad value (nothing changes then).
        """
        unknown = sorted(set(changes) - set(LIVE_SETTINGS) - set(LIVE_ACTIONS))
        if unknown:
            known = ", ".join(LIVE_SETTINGS + LIVE_ACTIONS)
            raise ValueError(f"unknown live setting(s) {', '.join(unknown)}; known: {known}")
        with self._lock:
            options, bank, given = self._options, self._bank, self._given
            k = options.num_classes
            plain = {n: v for n, v in changes.items() if n in LIVE_SETTINGS and "classes" not in n}
            if "classes" in changes:
                bank, given = _fill(_classes(changes["classes"]), self._candidates), True
                given_k = len(_classes(changes["classes"]))
                k = given_k if given_k < MAX_CLASSES else k
            if changes.get("next_classes"):
                rng = np.random.default_rng([self._seed, self._rolls + 1])
                drawn = rng.choice(N_IMAGENET, MAX_CLASSES, replace=False)
                bank, given = tuple(int(c) for c in drawn), False
            if "num_classes" in changes:
                k = int_in("num_classes", changes["num_classes"], 1, MAX_CLASSES)
            options = replace(options, **plain, classes=bank[:k], num_classes=k)  # checks
            freeze = self._freeze
            if "freeze" in changes:
                freeze = _flag("freeze", changes["freeze"])
            seed = changes.get("seed", self._seed)
            if "seed" in changes:
                seed = new_seed() if seed is None else int_in("seed", seed, 0, MAX_SEED)
            # Checked: from here on nothing raises.
            self._options, self._bank, self._given, self._freeze = options, bank, given, freeze
            self._rolls += bool(changes.get("next_classes"))
            for name, value in changes.items():
                if name in ("classes", "num_classes", "next_classes"):
                    value = options.classes if name == "next_classes" else getattr(options, name)
                elif name == "seed":
                    value = seed
                elif name == "freeze":
                    value = freeze
                else:
                    value = getattr(options, name)
                self._pending[name] = (value, source)
            if "seed" in changes:
                self._seed = seed

    def offer(self, source: str, **changes: Any) -> bool:
        """:meth:`set` for messages from outside: a bad one is ignored with one log line.

        Returns:
            whether the change was taken.
        """
        try:
            self.set(source, **changes)
        except (ValueError, TypeError, OverflowError) as e:
            self.reject(source, str(e))
            return False
        return True

    def reject(self, source: str, why: str) -> None:
        """Count a bad message and log it (at most ``LIVE_REJECT_LOG_RATE`` lines a second;
        the rest are summed up in one line)."""
        now = time.monotonic()
        with self._lock:
            self.rejected += 1
            if now >= self._quiet_until:
                if self._quiet_count:
                    logger.warning("%d more bad control messages ignored", self._quiet_count)
                self._quiet_until, self._quiet_count, self._quiet_lines = now + 1.0, 0, 0
            if self._quiet_lines >= LIVE_REJECT_LOG_RATE:
                self._quiet_count += 1
                return
            self._quiet_lines += 1
        text = why if len(why) <= MAX_NAME else why[:MAX_NAME] + "..."
        logger.warning("%s: ignored: %s", source, text)

    def toggle_freeze(self, source: str = "key") -> None:
        """Freeze the picture, or let it move again."""
        with self._lock:
            frozen = self._freeze
        self.offer(source, freeze=not frozen)

    def step_truncation(self, steps: int, source: str = "key") -> None:
        """Move the truncation by ``steps`` of ``LIVE_TRUNCATION_STEP``, within
        ``[LIVE_TRUNCATION_STEP, 1]``."""
        with self._lock:
            now = self._options.truncation
        target = round(now + steps * LIVE_TRUNCATION_STEP, 6)
        self.offer(source, truncation=min(1.0, max(LIVE_TRUNCATION_STEP, target)))

    # -- the session side ---------------------------------------------------------------------

    def apply(self, trajectory: OnlineTrajectory, frame: int) -> float:
        """Bring ``trajectory`` to the settings of ``frame`` (the next frame it computes).

        Called by the session between pushes, under its engine lock.

        Returns:
            the truncation of that frame, for the generator.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
            if not pending and not self._glides:
                return self._now["truncation"]
            for name, (value, source) in pending.items():
                glide = 0
                if name in LIVE_GLIDES and value != self._now[name]:
                    self._glides[name] = (frame, self._now[name], float(value))
                    glide = self.glide_frames
                elif name == "freeze":
                    trajectory.hold = bool(value)
                elif name == "seed":
                    trajectory.reseed(value)
                    self._candidates = trajectory.drawn
                    if not self._given:
                        self._bank = trajectory.drawn
                        k = self._options.num_classes
                        self._options = replace(self._options, classes=self._bank[:k])
                self._record(Change(frame, name, value, source, glide))
            for name, (first, start, end) in list(self._glides.items()):
                w = (frame - first + 1) / self.glide_frames
                self._now[name] = end if w >= 1 else start + (end - start) * w
                if w >= 1:
                    del self._glides[name]
            now = self._now
            options = replace(self._options, truncation=now["truncation"], depth=now["depth"])
            trajectory.steer(options, self._bank[: options.num_classes])
            return self._now["truncation"]

    def _record(self, change: Change) -> None:
        if len(self._log) < CHANGE_LOG:
            self._log.append(change)
        else:
            self._logged_out += 1

    # -- what it did --------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The settings asked for (targets of glides in progress)."""
        with self._lock:
            o = self._options
            out: dict[str, Any] = {name: getattr(o, name) for name in LIVE_SETTINGS}
            out["classes"] = list(o.classes or ())
            out.update(freeze=self._freeze, seed=self._seed)
            return out

    def changes(self) -> list[dict[str, Any]]:
        """Every applied change, oldest first, as dicts (``frame``, ``setting``, ``value``,
        ``source``, ``glide_frames``)."""
        with self._lock:
            return [
                {**asdict(c), "value": list(c.value) if isinstance(c.value, tuple) else c.value}
                for c in self._log
            ]

    def to_dict(self) -> dict[str, Any]:
        """The record ``--stats`` keeps: starting settings, changes, rejected messages."""
        changes = self.changes()
        with self._lock:
            return {
                "initial": self.initial,
                "changes": changes,
                "changes_not_recorded": self._logged_out,
                "rejected": self.rejected,
                "glide_frames": self.glide_frames,
            }

    def describe(self) -> str:
        """One line for an overlay: truncation, depth, classes, frozen."""
        s = self.settings()
        frozen = "  frozen" if s["freeze"] else ""
        return (
            f"truncation {s['truncation']:.2f}  depth {s['depth']:.2f}  "
            f"{s['num_classes']} classes{frozen}"
        )


def _classes(value: Any) -> tuple[int, ...]:
    """1..12 class indices or names, as indices (the order kept)."""
    tokens = [value] if isinstance(value, (str, int)) else value
    if not isinstance(tokens, (list, tuple)) or not 1 <= len(tokens) <= MAX_CLASSES:
        n = len(tokens) if isinstance(tokens, (list, tuple)) else tokens
        raise invalid("classes", n, f"1..{MAX_CLASSES} class indices or names")
    for token in tokens:
        if not (is_int(token) or isinstance(token, str)) or len(str(token)) > MAX_NAME:
            raise invalid("class", token, "an ImageNet index (0-999) or name")
    classes = resolve_classes(int(t) if is_int(t) else t for t in tokens)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {list(classes)}")
    return classes


def _fill(classes: tuple[int, ...], candidates: tuple[int, ...]) -> tuple[int, ...]:
    """``classes`` followed by the candidates not among them, 12 in all."""
    rest = [c for c in candidates if c not in classes]
    return (tuple(classes) + tuple(rest))[:MAX_CLASSES]


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (is_int(value) and value in (0, 1)):
        return bool(value)
    raise invalid(name, value, "True/False or 1/0")
