"""A pipelining asyncio Redis connection for the hot path: every command queued in one event-loop turn
leaves in one write, and the replies come back in order on the same connection.

Under load a worker has many requests in flight; with a blocking client each one would stop the event loop
for a round trip (≈100 µs on loopback, more when Redis waits for a CPU), one after the other. Here the
requests that arrived together share one ``write`` and one wake-up, and the worker keeps running while
Redis works. Commands are packed by hiredis (C) and replies parsed by ``hiredis.Reader``: a few µs per event.

Failure handling matches the blocking client's: at most ``timeout_s`` to connect and ``timeout_s`` for the
replies of a batch, no retries. A timeout or a dropped connection fails every command in flight with a
``redis.ConnectionError`` / ``redis.TimeoutError`` (replies could no longer be matched to their commands),
closes the connection, and the next command connects again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis
from redis.connection import parse_url
from redis.exceptions import NoScriptError, ResponseError

log = logging.getLogger("woolguard.api")

_pack = hiredis.pack_command


#: Batches of commands one connection has in flight at most (see ``RedisPipe._flush``).
MAX_BATCHES = 3
#: Most commands in one write. Measured with bench/service.py's load (1 worker, 32 clients): 3 batches of at
#: most 12 gave ~5.0k decisions/s against ~4.6k for one unbounded batch in flight.
BATCH_SIZE = 12


def pack_set_ex(key: str, value: bytes, ttl_s: int) -> bytes:
    """``SET key value EX ttl_s`` in the Redis protocol (what ``hiredis.pack_command`` gives, without its
    ``sprintf`` per argument)."""
    k = key.encode()
    t = b"%d" % ttl_s
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (
        len(k), k, len(value), value, len(t), t)


def _error(reply: hiredis.ReplyError) -> redis.RedisError:
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: RedisPipe):
        self.pipe = pipe
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        inflight = self.pipe._inflight
        while (reply := reader.gets()) is not False:
            if not inflight:  # pragma: no cover - a reply nobody asked for: the stream is out of step
                self.pipe._fail(redis.ConnectionError("unexpected reply from Redis"), close=True)
                return
            fut, _on_fail, _cmd = inflight.popleft()
            self.pipe._answered += 1
            if fut is None:
                if isinstance(reply, hiredis.ReplyError):
                    log.warning("redis refused a background write: %s", reply)
            elif fut.done():  # pragma: no cover - cancelled by its caller
                pass
            elif isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_error(reply))
            else:
                fut.set_result(reply)
        pipe = self.pipe
        ends = pipe._batch_ends
        while ends and pipe._answered >= ends[0]:
            ends.popleft()
        if pipe._queue and not pipe._scheduled and len(ends) < pipe.max_batches:
            pipe._scheduled = True
            pipe._loop.call_soon(pipe._flush)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._lost(self, exc)


class RedisPipe:
    """One pipelined connection (per worker, per event loop). Not thread-safe: use it from its loop."""

    def __init__(self, url: str, timeout_s: float = 0.05, max_batches: int = MAX_BATCHES,
                 batch_size: int = BATCH_SIZE):
        kw = parse_url(url)
        self.host = kw.get("host", "127.0.0.1")
        self.port = int(kw.get("port", 6379))
        self.path = kw.get("path")
        self.timeout_s = timeout_s
        self._setup: list[tuple[Any, ...]] = []
        if kw.get("password"):
            self._setup.append(("AUTH", *([kw["username"]] if kw.get("username") else []), kw["password"]))
        if int(kw.get("db", 0) or 0):
            self._setup.append(("SELECT", int(kw["db"])))
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queue: list[tuple[bytes, asyncio.Future[Any] | None, Callable[[], None] | None]] = []
        # (future or None for a background write, its failure callback, packed command)
        self._inflight: deque[tuple[asyncio.Future[Any] | None, Callable[[], None] | None, bytes]] = deque()
        self._scheduled = False
        self.max_batches = max(1, max_batches)
        self.batch_size = max(1, batch_size)
        self._batch_ends: deque[int] = deque()  # the value of _sent after each batch still in flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent = 0  # commands written on this connection generation
        self._answered = 0  # replies received
        self._generation = 0
        self.batches = 0
        self.commands = 0

    # -- public ------------------------------------------------------------------------------------

    async def call(self, *args: Any) -> Any:
        """Send one command with the others of this loop turn and return its reply (raises on an error
        reply or a connection failure)."""
        return await self.call_packed(_pack(args))

    async def call_packed(self, packed: bytes) -> Any:
        """:meth:`call` for a command already in the Redis protocol (one command, e.g. from
        :meth:`~woolguard.features.redis_state.RedisState.packed_command`)."""
        loop = self._loop or self._bind()
        fut = loop.create_future()
        self._queue.append((packed, fut, None))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def send(self, *args: Any, on_fail: Callable[[], None] | None = None) -> None:
        """Queue a command whose reply nobody waits for (``on_fail`` runs if it may not have been applied)."""
        self.send_packed(_pack(args), on_fail=on_fail)

    def send_packed(self, packed: bytes, on_fail: Callable[[], None] | None = None) -> None:
        """:meth:`send` for a command already in the Redis protocol."""
        loop = self._loop or self._bind()
        self._queue.append((packed, None, on_fail))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)

    def pending(self) -> int:
        return len(self._queue) + len(self._inflight)

    async def drain(self) -> None:
        """Wait until everything queued so far has been answered (or has failed)."""
        if self.pending():
            try:
                await asyncio.wait_for(self.call("PING"), max(self.timeout_s * 4, 1.0))
            except (TimeoutError, redis.RedisError, OSError):
                pass

    def close(self) -> None:
        self._fail(redis.ConnectionError("closed"), close=True)

    # -- internals ---------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            if self._connecting is None:
                self._connecting = self._loop.create_task(self._connect())  # type: ignore[union-attr]
            return
        if len(self._batch_ends) >= self.max_batches:
            # At most ``max_batches`` batches in flight: what arrives meanwhile leaves with the next write, as
            # soon as the oldest batch is answered. Batches grow with load instead of queueing inside Redis, so
            # a burst cannot push Redis's backlog past the time budget; a second batch lets the worker prepare
            # and answer requests while Redis runs the previous one.
            return
        queue = self._queue
        if len(queue) > self.batch_size:
            # A part now, the rest with the next write: Redis starts on the first commands while the worker
            # is still preparing the others, instead of both taking turns on the whole batch.
            queue, self._queue = queue[: self.batch_size], queue[self.batch_size:]
            self._scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]
        else:
            self._queue = []
        inflight = self._inflight
        for packed, fut, on_fail in queue:
            inflight.append((fut, on_fail, packed))
        transport.write(b"".join(packed for packed, _f, _o in queue))
        self.batches += 1
        self.commands += len(queue)
        self._sent += len(queue)
        self._batch_ends.append(self._sent)
        # One timer per batch: if its last reply is not in within the budget, the connection is given up.
        self._loop.call_later(self.timeout_s, self._check, self._generation, self._sent)  # type: ignore[union-attr]

    def _check(self, generation: int, last: int, final: bool = False) -> None:
        if generation != self._generation or self._answered >= last:
            return
        if not final:
            # Timers run before the loop polls its sockets: when the loop itself was held up (a busy
            # worker, a CPU taken by another process), the reply may be sitting unread. Look again after
            # the next poll before calling it a timeout.
            self._loop.call_later(0.001, self._check, generation, last, True)  # type: ignore[union-attr]
            return
        self._fail(redis.TimeoutError(f"no reply from Redis within {self.timeout_s:g}s"), close=True)

    async def _connect(self) -> None:
        loop = self._loop
        assert loop is not None
        try:
            if self.path:
                conn = loop.create_unix_connection(lambda: _Protocol(self), self.path)
            else:
                conn = loop.create_connection(lambda: _Protocol(self), self.host, self.port)
            transport, protocol = await asyncio.wait_for(conn, self.timeout_s)
        except (TimeoutError, OSError) as exc:
            self._connecting = None
            kind = redis.TimeoutError if isinstance(exc, asyncio.TimeoutError) else redis.ConnectionError
            self._fail(kind(f"cannot connect to Redis at {self.host}:{self.port}: {exc or 'timeout'}"))
            return
        self._connecting = None
        self._transport, self._protocol = transport, protocol  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and not self.path:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._setup:
            self._queue[:0] = [(_pack(args), None, None) for args in self._setup]
        self._flush()

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is self._protocol:
            self._transport = self._protocol = None
            self._fail(redis.ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def _fail(self, exc: redis.RedisError, close: bool = False) -> None:
        """Fail everything in flight and queued; with ``close``, drop the connection (replies out of step)."""
        if close and self._transport is not None:
            transport, self._transport, self._protocol = self._transport, None, None
            transport.abort()
        failed = list(self._inflight)
        self._inflight.clear()
        self._batch_ends.clear()
        self._generation += 1
        self._sent = self._answered = 0
        queue, self._queue = self._queue, []
        failed += [(fut, on_fail, packed) for packed, fut, on_fail in queue]
        for fut, on_fail, _packed in failed:
            if fut is not None:
                if not fut.done():
                    fut.set_exception(exc)
            elif on_fail is not None:
                on_fail()
