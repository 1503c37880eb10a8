"""OSC in: a live session steered by Open Sound Control messages over UDP (the optional ``osc``
extra, python-osc for the packet format).

:class:`OscServer` listens on a UDP port (``127.0.0.1`` unless another host is given) on its
own thread and turns each message into a change of the session's
:class:`~dmv_fast.live.control.Controls`. One address per setting (:data:`ADDRESSES`)::

    /dmv/truncation f        (0, 1], glides          /dmv/classes s|i ...   1-12 names or indices
    /dmv/depth f             0.01-1, glides          /dmv/num_classes i     1-12
    /dmv/jitter f            0-1                     /dmv/next_classes      new random classes
    /dmv/pitch_sensitivity f 1-299                   /dmv/freeze [i]        1 (or none): freeze
    /dmv/tempo_sensitivity f (0, 100]                /dmv/unfreeze
                                                     /dmv/seed [i]          none: a new seed

Numbers may come as OSC ints or floats (``num_classes`` and ``seed`` must be whole); a float32
is read as the shortest decimal it stands for (``0.3``, not ``0.30000001``). Bundles
are taken apart and their time tags ignored: a change applies at the next frame. A message that
is malformed, of the wrong type or arity, out of range, names an unknown class or an unknown
address is ignored with one log line (see :meth:`Controls.reject`) and the show goes on.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from typing import Any

import numpy as np

from dmv_fast.live.control import Controls
from dmv_fast.settings.choices import MAX_CLASSES, OSC_HOST, OSC_PREFIX

logger = logging.getLogger("dmv_fast")

FLOAT_SETTINGS = ("truncation", "depth", "jitter", "pitch_sensitivity", "tempo_sensitivity")
#: Every address and the arguments it takes.
ADDRESSES = {
    **{f"{OSC_PREFIX}{name}": "f" for name in FLOAT_SETTINGS},
    f"{OSC_PREFIX}classes": "s|i ... (1-12)",
    f"{OSC_PREFIX}num_classes": "i",
    f"{OSC_PREFIX}next_classes": "",
    f"{OSC_PREFIX}freeze": "[i]",
    f"{OSC_PREFIX}unfreeze": "",
    f"{OSC_PREFIX}seed": "[i]",
}
MAX_PACKET = 65536  # bytes: the largest UDP datagram
MAX_NESTING = 8  # bundles within bundles
BUNDLE = b"#bundle\x00"
SHOWN = 120  # characters of a message shown in a log line


def load_osc() -> Any:
    """python-osc's message parser.

    Raises:
        ValueError: python-osc is not installed, naming the extra to install.
    """
    try:
        from pythonosc import osc_message
    except ImportError as e:
        raise ValueError(f"--osc needs python-osc: pip install 'dmv-fast[osc]' ({e})") from None
    return osc_message


def split_bundles(data: bytes, depth: int = 0) -> list[bytes]:
    """The message datagrams of an OSC packet: a message, or a bundle of messages and bundles
    (time tags ignored). Our own walk: python-osc's loops forever on a negative element size.

    Raises:
        ValueError: a truncated bundle, an element size that is not a positive multiple of 4
            within the packet, or bundles nested deeper than ``MAX_NESTING``.
    """
    if not data.startswith(BUNDLE):
        return [data]
    if depth >= MAX_NESTING:
        raise ValueError(f"OSC bundles nested deeper than {MAX_NESTING}")
    if len(data) < 16:
        raise ValueError("OSC bundle shorter than its header")
    out: list[bytes] = []
    i = 16  # "#bundle\0" and the time tag
    while i < len(data):
        size = int.from_bytes(data[i : i + 4], "big", signed=True)
        i += 4
        if size <= 0 or size % 4 or i + size > len(data):
            raise ValueError(f"OSC bundle element of {size} bytes at byte {i - 4}")
        out += split_bundles(data[i : i + size], depth + 1)
        i += size
    return out


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (on ``127.0.0.1``) or ``HOST:PORT`` as ``(host, port)``; port 0 picks a free one.

    Raises:
        ValueError: not of that form, or the port outside 0..65535.
    """
    host, sep, port = str(text).strip().rpartition(":")
    host = host.strip("[]") if sep else OSC_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (sep and not host):
        raise ValueError(f"--osc must be PORT or HOST:PORT with a port in 0..65535, got {text!r}")
    return host, int(port)


class OscServer:
    """OSC messages over UDP into a session's controls, on a thread of its own.

    The socket is bound when the server is made (a taken port fails then, before any work);
    :meth:`start` begins serving into ``controls``.

    Args:
        address: ``PORT`` or ``HOST:PORT`` (see :func:`parse_address`).
        controls: the session's control surface (or later, through :meth:`start`).
    """

    def __init__(self, address: str | int, controls: Controls | None = None) -> None:
        self._parser = load_osc()
        host, port = parse_address(str(address))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            raise ValueError(f"--osc cannot listen on {host}:{port} ({e.strerror or e})") from None
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self.controls = controls
        self.messages = 0  # messages taken
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, controls: Controls | None = None) -> OscServer:
        """Serve into ``controls`` (or the ones given at construction) until :meth:`close`."""
        if controls is not None:
            self.controls = controls
        if self.controls is None:
            raise ValueError("the OSC server needs the session's controls")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="dmv-fast-osc", daemon=True)
            self._thread.start()
            logger.info("OSC: listening on %s:%d", *self.address)
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sock.close()

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._sock.recvfrom(MAX_PACKET)
            except TimeoutError:
                continue
            except OSError as e:  # the socket closed under us, or a transient error
                if self._stop.is_set():
                    break
                logger.debug("OSC receive: %s", e)
                continue
            self.take(data)

    def take(self, data: bytes) -> None:
        """Handle one UDP datagram (an OSC message or bundle)."""
        assert self.controls is not None
        try:
            messages = [self._parser.OscMessage(d) for d in split_bundles(data)]
        except Exception as e:  # python-osc raises several kinds on garbage
            self.controls.reject("osc", f"malformed OSC packet of {len(data)} bytes ({e})")
            return
        for message in messages:
            try:
                self._message(message.address, list(message.params))
            except Exception as e:  # a handler bug must not stop the server
                self.controls.reject("osc", f"{_show(message.address)}: {e}")

    def _message(self, address: str, args: list[Any]) -> None:
        assert self.controls is not None
        c = self.controls
        name = address[len(OSC_PREFIX) :] if address.startswith(OSC_PREFIX) else None
        where = f"osc {_show(address)}"
        if address not in ADDRESSES or name is None:
            c.reject("osc", f"unknown address {_show(address)} (known: {', '.join(ADDRESSES)})")
            return
        if name == "classes":
            if not 1 <= len(args) <= MAX_CLASSES:
                c.reject(where, f"takes 1-{MAX_CLASSES} classes, got {len(args)} arguments")
                return
            self._offer(where, classes=args)
            return
        need = {"f": (1, 1), "i": (1, 1), "[i]": (0, 1), "": (0, 0)}[ADDRESSES[address]]
        if not need[0] <= len(args) <= need[1]:
            c.reject(where, f"takes {ADDRESSES[address] or 'no'} argument(s), got {len(args)}")
            return
        value = args[0] if args else None
        if name in FLOAT_SETTINGS:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                c.reject(where, f"takes a number, got {_show(repr(value))}")
                return
            self._offer(where, **{name: _decimal(value)})
        elif name in ("num_classes", "seed", "freeze"):
            if value is not None and not _is_whole(value):
                c.reject(where, f"takes a whole number, got {_show(repr(value))}")
                return
            whole = None if value is None else int(value)
            if name == "freeze":
                self._offer(where, freeze=True if whole is None else whole)
            else:
                self._offer(where, **{name: whole})
        elif name == "unfreeze":
            self._offer(where, freeze=False)
        elif name == "next_classes":
            self._offer(where, next_classes=True)

    def _offer(self, where: str, **change: Any) -> None:
        assert self.controls is not None
        try:
            self.controls.set("osc", **change)
        except (ValueError, TypeError, OverflowError) as e:
            self.controls.reject(where, str(e))
            return
        self.messages += 1
        logger.debug("%s: %s", where, _show(repr(change)))


def _decimal(value: float) -> float:
    """An OSC ``f`` argument (float32) as the decimal it was typed as: 0.3 arrives as
    0.30000001192..., which would pick other BatchNorm statistics than 0.3 (SPEC §5)."""
    single = np.float32(value)
    if math.isfinite(value) and float(single) == value:
        return float(np.format_float_positional(single, unique=True, trim="-"))
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


def _show(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."
