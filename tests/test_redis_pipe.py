"""The pipelined Redis connection of the hot path: replies matched to their commands, batches bounded."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from woolguard.api.redis_pipe import RedisPipe


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
