"""Test support for the service: a tenant with a key, a private Redis server, a TCP proxy that can be cut.

Used by ``tests/test_api*.py`` and ``bench/service.py``; nothing here runs in production.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from woolguard.storage.database import Database

from .keys import create_key, create_tenant


def tenant_with_key(db: Database, tenant: str) -> dict[str, str]:
    """Create ``tenant`` and return headers carrying a fresh key of it."""
    create_tenant(db, tenant)
    return {"Authorization": f"Bearer {create_key(db, tenant)}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: ``redis-server`` options that make a Redis 7 answer ``FCALL`` and ``FUNCTION`` as Redis 6 does
#: (``ERR unknown command``): the feature state's ``EVALSHA`` fallback under test.
WITHOUT_FUNCTIONS = ("--rename-command", "FCALL", "", "--rename-command", "FCALL_RO", "",
                     "--rename-command", "FUNCTION", "")


class PrivateRedis:
    """A throw-away ``redis-server`` on a free port in a temp dir, stoppable and restartable on that port
    (``args``: more ``redis-server`` options, e.g. :data:`WITHOUT_FUNCTIONS`)."""

    def __init__(self, args: tuple[str, ...] = ()) -> None:
        self.args = args
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="wg-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir), *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)



def pipe_sockets(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes from ``src`` to ``dst`` until either side closes, then shut both down (proxy threads)."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

class CuttableProxy:
    """A TCP forwarder on a free port to ``target``; :meth:`cut` closes it and every connection through it
    (new connections are refused), :meth:`restore` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._open = False

    def start(self) -> CuttableProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._open = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while self._open:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._open:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe_sockets, args=(a, b), daemon=True).start()


    def cut(self) -> None:
        self._open = False
        if self._listener is not None:
            try:  # wakes the accept() blocked in the other thread (close alone would not, on Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()


def event(i: int, **over: Any) -> dict[str, Any]:
    """A plausible claim event; ``i`` picks account, device and IP from small pools so windows fill up."""
    ev: dict[str, Any] = {
        "event_id": f"e{i}", "kind": "claim", "ts": 1_767_225_600_000 + i * 1500,
        "account": {"id": f"acct{i % 37}"}, "campaign_id": "spring",
        "device": {"id": f"dev{i % 11}", "model": "Mi 11", "os": "android", "os_version": "13",
                   "emulator": i % 29 == 0},
        "ip": f"36.{i % 5}.{i % 3}.{i % 7 + 1}", "phone": f"138{i % 13:08d}", "value": 5.0,
    }
    ev.update(over)
    return ev
