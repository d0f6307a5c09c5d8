"""The pipelined Redis connection of the hot path: replies matched to their commands, batches bounded."""

from __future__ import annotations

import asyncio
import uuid

import hiredis
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from woolguard.api.redis_pipe import RedisPipe, pack_set_ex
from woolguard.events import EventKind
from woolguard.features import RedisState


class _Watched(RedisPipe):
    """Records how many batches were in flight after every write."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.inflight_seen: list[int] = []

    def _flush(self) -> None:
        before = self.batches
        super()._flush()
        if self.batches != before:
            self.inflight_seen.append(len(self._batch_ends))


@pytest.mark.parametrize(("batch_size", "max_batches"), [(1, 1), (4, 2), (12, 3), (1000, 1)])
def test_every_caller_gets_its_own_reply_in_bounded_batches(redis_shared_url: str, batch_size: int,
                                                            max_batches: int) -> None:
    prefix = f"wg-pipe-test:{uuid.uuid4().hex}:"
    n = 60

    async def main() -> tuple[list[object], _Watched]:
        pipe = _Watched(redis_shared_url, timeout_s=2.0, max_batches=max_batches, batch_size=batch_size)

        async def one(i: int) -> object:
            await pipe.call("SET", f"{prefix}{i}", f"value-{i}", "EX", 60)
            incr = await pipe.call("INCR", f"{prefix}count")
            got = await pipe.call("GET", f"{prefix}{i}")
            return got, incr

        try:
            out = await asyncio.gather(*(one(i) for i in range(n)))
            await pipe.call("DEL", f"{prefix}count", *[f"{prefix}{i}" for i in range(n)])
        finally:
            pipe.close()
        return list(out), pipe

    out, pipe = asyncio.run(main())
    assert [got for got, _ in out] == [f"value-{i}".encode() for i in range(n)]
    assert sorted(incr for _, incr in out) == list(range(1, n + 1))  # each INCR answered once, to its caller
    assert pipe.inflight_seen and max(pipe.inflight_seen) <= max_batches
    sent = 3 * n + 1 + len(pipe._setup)  # and SELECT of the URL's database
    assert pipe.commands == sent
    assert pipe.batches >= sent / batch_size  # no write carried more than batch_size commands


# -- commands written by hand in the Redis protocol: byte for byte what hiredis packs ------------------------------

_VALUE = st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab%c|é\r\n$*\x00"), max_size=12))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_VALUE, min_size=15, max_size=15), kind=st.sampled_from(list(EventKind)),
       ts=st.one_of(st.sampled_from([0, 1, 10**13, 10**14 - 2]), st.integers(0, 10**14 - 2)),
       claim=st.text(min_size=1, max_size=30), ttl=st.integers(1, 10**10))
def test_packed_command_is_what_hiredis_packs(values: list[str | None], kind: EventKind, ts: int, claim: str,
                                              ttl: int) -> None:
    state = RedisState(client=redis.Redis(), tenant="t-1")  # never connects: only packs
    ents = dict(zip(state._names, values, strict=False))
    cmd, present = state.command(ts, kind, ents, claim_key=claim, claim_ttl_ms=ttl)
    packed, present2 = state.packed_command(ts, kind, ents, claim, ttl)
    assert packed == hiredis.pack_command(cmd)
    assert present2.windows == present.windows
    again, _ = state.packed_command(ts, kind, ents, claim, ttl)  # from the cached template
    assert again == packed


@given(key=st.text(max_size=40), value=st.binary(max_size=200), ttl=st.integers(0, 10**9))
def test_pack_set_ex_is_what_hiredis_packs(key: str, value: bytes, ttl: int) -> None:
    assert pack_set_ex(key, value, ttl) == hiredis.pack_command(("SET", key, value, "EX", ttl))


@pytest.mark.parametrize("functions", [True, False])
def test_packed_command_runs_the_script(redis_shared_url: str, functions: bool) -> None:
    """The service's path (packed command through the pipe) gives the windows ``observe`` gives: ``FCALL`` of the
    library, or ``EVALSHA`` of the script."""
    tenant = f"pk{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_shared_url)
    state = RedisState(client=client, tenant=tenant, functions=functions)
    twin = RedisState(client=client, tenant=tenant + "b")
    state.load()
    assert _call_of(state.packed_command(1, EventKind.CLAIM, {"device": "d"}, "k", 1)[0]) == (
        ("FCALL", state.function) if functions else ("EVALSHA", state.sha))
    ents = {"account": "a1", "device": "d1", "ip": "1.2.3.4", "campaign": "c", "phone": "k:p"}

    async def run() -> list[object]:
        pipe = RedisPipe(redis_shared_url)
        try:
            out = []
            for i in range(5):
                packed, present = state.packed_command(1_000_000 + i * 1000, EventKind.CLAIM, ents,
                                                       f"wg:{{{tenant}}}:idem:e{i}", 60_000)
                out.append(state.result(present, await pipe.call_packed(packed)))
            return out
        finally:
            pipe.close()

    got = asyncio.run(run())
    want = [twin.observe(1_000_000 + i * 1000, EventKind.CLAIM, ents) for i in range(5)]
    assert got == want
    assert got[-1] != got[0]  # the windows moved
    state.clear()
    twin.clear()


def _call_of(packed: bytes) -> tuple[str, str]:
    """The command and its first argument (function name or SHA) of a packed command."""
    parts = packed.split(b"\r\n")
    return parts[2].decode(), parts[4].decode()


def test_packed_command_is_fcall_until_redis_refuses_functions() -> None:
    state = RedisState(client=redis.Redis(), tenant="t-1")  # never connects: only packs
    ents = {"account": "a1", "device": "d1", "campaign": "c"}
    packed, _ = state.packed_command(5_000, EventKind.CLAIM, ents, "k", 1_000)
    assert _call_of(packed) == ("FCALL", state.function)
    state._without_functions(redis.ResponseError("unknown command 'FUNCTION'"))  # what a refused load does
    evalsha, _ = state.packed_command(5_000, EventKind.CLAIM, ents, "k", 1_000)
    assert _call_of(evalsha) == ("EVALSHA", state.sha)
    assert evalsha == hiredis.pack_command(state.command(5_000, EventKind.CLAIM, ents, "k", 1_000)[0])
    assert evalsha.split(b"\r\n")[5:] == packed.split(b"\r\n")[5:]  # the same keys and arguments


def _run_through_pipe(url: str, state: RedisState, flush: list[tuple[object, ...]], n: int) -> list[object]:
    """``n`` events through the pipe as the service sends them (load and make the command again when
    :func:`needs_load`), with the admin commands ``flush`` sent on another connection before every third."""
    admin = redis.Redis.from_url(url)
    ents = {"account": "a1", "device": "d1", "ip": "1.2.3.4", "campaign": "c", "phone": "k:p"}

    async def run() -> list[object]:
        pipe = RedisPipe(url, timeout_s=2.0)
        try:
            out = []
            for i in range(n):
                if i % 3 == 1:
                    for cmd in flush:
                        admin.execute_command(*cmd)
                args = (1_000_000 + i * 1000, EventKind.CLAIM, ents, f"wg:{{{state.tenant}}}:idem:e{i}", 60_000)
                packed, present = state.packed_command(*args)
                try:
                    reply = await pipe.call_packed(packed)
                except redis.ResponseError as exc:
                    assert state.needs_load(exc), exc
                    await state.load_async(pipe.call)
                    packed, present = state.packed_command(*args)
                    reply = await pipe.call_packed(packed)
                out.append(state.result(present, reply))
            return out
        finally:
            pipe.close()

    return asyncio.run(run())


def test_pipe_reloads_the_library_after_function_flush(private_redis) -> None:
    url = private_redis.url
    state = RedisState(url, tenant="t-1")
    twin = RedisState(url, tenant="t-2", functions=False)
    ents = {"account": "a1", "device": "d1", "ip": "1.2.3.4", "campaign": "c", "phone": "k:p"}
    got = _run_through_pipe(url, state, [("FUNCTION", "FLUSH")], 12)
    assert got == [twin.observe(1_000_000 + i * 1000, EventKind.CLAIM, ents) for i in range(12)]
    assert state.functions
    stats = state.client.info("commandstats")
    assert stats["cmdstat_function|load"]["calls"] == 1 + 4  # first use, then after each flush
    assert stats["cmdstat_fcall"]["calls"] == 12 + 1 + 4
    assert stats["cmdstat_evalsha"]["calls"] == 12 + 1  # the twin's


def test_pipe_falls_back_to_evalsha_without_functions(private_redis_without_functions) -> None:
    url = private_redis_without_functions.url
    state = RedisState(url, tenant="t-1")
    twin = RedisState(url, tenant="t-2", functions=False)
    ents = {"account": "a1", "device": "d1", "ip": "1.2.3.4", "campaign": "c", "phone": "k:p"}
    got = _run_through_pipe(url, state, [("SCRIPT", "FLUSH")], 12)
    assert not state.functions
    assert got == [twin.observe(1_000_000 + i * 1000, EventKind.CLAIM, ents) for i in range(12)]
    stats = state.client.info("commandstats")
    assert stats["cmdstat_script|load"]["calls"] == 1 + 4  # first use, after each flush (the twin finds it)
    assert stats["cmdstat_evalsha"]["calls"] == (12 + 4) + 12  # a NOSCRIPT after each flush, the twin's


def test_packed_command_after_the_layout_cache_was_cleared() -> None:
    """The templates and the layouts are bounded caches cleared on their own: a template must never outlive the
    layout it was made for."""
    state = RedisState(client=redis.Redis(), tenant="t-1")
    ents = {"account": "a1", "device": "d1", "campaign": "c"}
    first, _ = state.packed_command(5_000, EventKind.CLAIM, ents, "k", 1_000)
    state._layouts.clear()  # what a burst of 4,096 odd layouts does
    again, present = state.packed_command(5_000, EventKind.CLAIM, ents, "k", 1_000)
    assert again == first
    cmd, _ = state.command(5_000, EventKind.CLAIM, ents, claim_key="k", claim_ttl_ms=1_000)
    assert again == hiredis.pack_command(cmd) and present.windows
