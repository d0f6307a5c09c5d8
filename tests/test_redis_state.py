"""RedisState against the real Redis (db 15): same values as MemoryState, atomic, isolated, expiring, failing fast."""

from __future__ import annotations

import multiprocessing
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import redis

from woolguard.api.testing import pipe_sockets
from woolguard.engine import Engine
from woolguard.events import EventKind
from woolguard.features import FeatureStateUnavailable, MemoryState, RedisState
from woolguard.features import state as memory_module
from woolguard.features.catalog import DEFAULT_WINDOWS, MAX_ENTRIES, Window, WindowOp
from woolguard.sim import SimConfig, simulate

pytestmark = pytest.mark.redis

C, D, F, G = WindowOp.COUNT, WindowOp.DISTINCT, WindowOp.FIRST_SEEN, WindowOp.GAPS
CLAIMS = frozenset({EventKind.CLAIM, EventKind.SCAN})

#: Short windows, every op, kinds filters and a composite key: expiry and forgetting happen within a test.
SHORT = (
    Window("dev_n_2s", C, ("device",), 2),
    Window("dev_claims_5s", C, ("device",), 5, kinds=CLAIMS),
    Window("dev_accts_3s", D, ("device",), 3, member="account"),
    Window("ip_devs_4s", D, ("ip",), 4, member="device", kinds=CLAIMS),
    Window("acct_seen_s", F, ("account",), 6),
    Window("dev_seen_s", F, ("device",), 2, kinds=CLAIMS),
    Window("acct_gaps", G, ("account",), 5),
    Window("ip_gaps", G, ("ip",), 3, kinds=CLAIMS),
    Window("camp_dev_n", C, ("campaign", "device"), 4),
)


_used: list[str] = []


def tenant() -> str:
    """A fresh tenant: tests keep to keys of their own and delete them afterwards (see ``cleanup``)."""
    name = "t" + uuid.uuid4().hex[:12]
    _used.append(name)
    return name


@pytest.fixture(autouse=True)
def cleanup(request):
    url = request.getfixturevalue("redis_shared_url") if "redis_shared_url" in request.fixturenames else None
    yield
    if url is not None:
        for name in _used:
            RedisState(url, tenant=name).clear()
    _used.clear()


def state(url: str, **kw) -> RedisState:
    kw.setdefault("tenant", tenant())
    kw.setdefault("timeout_s", 2.0)
    return RedisState(url, **kw)


class RoundRobin:
    """Spreads one event stream over several backends, as a pool of workers would."""

    def __init__(self, states: list[RedisState]):
        self.states = states
        self.windows = states[0].windows
        self.n = 0

    def observe(self, ts_ms, kind, entities):
        self.n += 1
        return self.states[self.n % len(self.states)].observe(ts_ms, kind, entities)

    def peek(self, ts_ms, entities):
        return self.states[self.n % len(self.states)].peek(ts_ms, entities)


# -- equivalence -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign():
    events = list(simulate(SimConfig(seed=3, scale=0.05)))
    engine = Engine(state=MemoryState())
    return events, [engine.decide(ev) for ev in events]


def test_engine_on_redis_decides_exactly_as_on_memory(redis_shared_url, campaign):
    events, expected = campaign
    engine = Engine(state=state(redis_shared_url))
    for ev, want in zip(events, expected, strict=True):
        got = engine.decide(ev)
        assert got.features == want.features, ev.event_id
        assert got == want


def test_four_workers_sharing_one_tenant_decide_exactly_as_one_memory(redis_shared_url, campaign):
    events, expected = campaign
    name = tenant()
    pool = RoundRobin([state(redis_shared_url, tenant=name) for _ in range(4)])
    assert len({id(s.client) for s in pool.states}) == 4
    engine = Engine(state=pool)
    for ev, want in zip(events, expected, strict=True):
        assert engine.decide(ev) == want, ev.event_id


def test_gang_windows_on_redis_match_memory(redis_shared_url, campaign):
    """With a gang table in force (here every simulated gang account, score 80), the windows over the engine's
    gang entities (``gang_account``: members active in the campaign; ``gang_link``: an account joined through, or
    assisted, a known member) hold the same values on Redis as in memory, and both are exercised."""
    events, _ = campaign
    gangs = {ev.account.id: (80, 5) for ev in events if ev.truth}
    mem = Engine(state=MemoryState(), gangs=gangs)
    red = Engine(state=state(redis_shared_url), gangs=gangs)
    links = active = 0
    for ev in events:
        want = mem.decide(ev)
        got = red.decide(ev)
        assert got == want, ev.event_id
        links += want.features["acct_gang_links_7d"] > 0
        active += want.features["camp_gang_accounts_10m"] > 0
    assert links > 20 and active > 20


def random_stream(rng: random.Random, n: int):
    """Few entities, many equal timestamps, gaps around the window lengths, missing entities, every kind."""
    ts = 1_700_000_000_000
    kinds = list(EventKind)
    for _ in range(n):
        ts += rng.choice((0, 0, 1, 7, 400, 999, 1000, 1001, 2500, 4000, 7000))
        ents = {
            "account": rng.choice(("a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "")),
            "device": rng.choice(("d1", "d2", "d3", None)),
            "ip": rng.choice(("10.0.0.1", "10.0.0.2", None)),
            "campaign": rng.choice(("c1", "c2", None)),
        }
        yield ts, rng.choice(kinds), ents


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_streams_with_saturation_match_memory_exactly(redis_shared_url, monkeypatch, seed):
    # Tiny caps so that counts saturate, distinct sets evict their least recently seen member (with ties),
    # and gap histories roll over; patched where each backend reads them.
    from woolguard.features import catalog

    monkeypatch.setattr(catalog, "MAX_ENTRIES", 4)
    monkeypatch.setattr(catalog, "GAP_HISTORY", 4)
    monkeypatch.setattr(memory_module, "MAX_ENTRIES", 4)
    monkeypatch.setattr(memory_module, "GAP_HISTORY", 4)
    rng = random.Random(seed)
    mem, red = MemoryState(SHORT), state(redis_shared_url, windows=SHORT)
    for ts, kind, ents in random_stream(rng, 1500):
        if rng.random() < 0.1:  # (not later than the next event: MemoryState.peek forgets what expired by then)
            assert red.peek(ts, ents) == mem.peek(ts, ents)
        assert red.observe(ts, kind, ents) == mem.observe(ts, kind, ents), (ts, kind, ents)
    for later in (ts, ts + 1500, ts + 3500, ts + 7000):
        assert red.peek(later, ents) == mem.peek(later, ents)


#: Windows that share a ZSET in Redis (same key, member and kinds, different lengths) next to ones that do not.
SHARING = (
    Window("dev_n_2s", C, ("device",), 2),
    Window("dev_n_5s", C, ("device",), 5),
    Window("dev_claims_1s", C, ("device",), 1, kinds=CLAIMS),
    Window("dev_claims_4s", C, ("device",), 4, kinds=CLAIMS),
    Window("dev_accts_3s", D, ("device",), 3, member="account"),
    Window("dev_accts_1s", D, ("device",), 1, member="account"),
    Window("dev_accts_6s", D, ("device",), 6, member="account"),
    Window("dev_ips_2s", D, ("device",), 2, member="ip"),
    Window("camp_dev_n_1s", C, ("campaign", "device"), 1),
    Window("camp_dev_n_3s", C, ("campaign", "device"), 3),
)


def test_windows_sharing_one_zset():
    from woolguard.features.redis_state import shared_with

    assert shared_with(SHARING) == [1, None, 3, None, 6, 6, None, None, 9, None]
    names = [w.name for w in DEFAULT_WINDOWS]
    pairs = {(names[i], names[j]) for i, j in enumerate(shared_with(DEFAULT_WINDOWS)) if j is not None}
    assert pairs == {("dev_payouts_10m", "dev_payouts_1d"), ("dev_accounts_1d", "dev_accounts_7d"),
                     ("camp_accounts_1m", "camp_accounts_10m")}


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_shared_zsets_match_memory_exactly_with_saturation(redis_shared_url, monkeypatch, seed):
    from woolguard.features import catalog

    monkeypatch.setattr(catalog, "MAX_ENTRIES", 4)
    monkeypatch.setattr(memory_module, "MAX_ENTRIES", 4)
    rng = random.Random(seed)
    mem, red = MemoryState(SHARING), state(redis_shared_url, windows=SHARING)
    for ts, kind, ents in random_stream(rng, 1500):
        if rng.random() < 0.1:
            assert red.peek(ts, ents) == mem.peek(ts, ents)
        assert red.observe(ts, kind, ents) == mem.observe(ts, kind, ents), (ts, kind, ents)
    for later in (ts, ts + 1500, ts + 3500, ts + 7000):
        assert red.peek(later, ents) == mem.peek(later, ents)
    # One ZSET per key, holding only the slots of the windows that keep their own entries (4 of the device's 8).
    kept = {":".join(k.decode().split(":")[2:4]) for k in red.stored_keys()}
    assert kept <= {"z:device", "z:campaign+device", "seq"}
    r = red.client
    for key in red.stored_keys():
        if key.startswith(f"{red.prefix}z:device:".encode()):
            assert {m[0] for m in r.zrange(key, 0, -1)} <= {1, 2, 3, 4}
        elif key.startswith(f"{red.prefix}z:campaign+device:".encode()):
            assert {m[0] for m in r.zrange(key, 0, -1)} == {1}


def test_claim_in_the_same_script_call(redis_shared_url):
    red = state(redis_shared_url)
    red.load()  # the raw command below does not load the code itself
    r = red.client
    claim = f"{red.prefix}idem:e1"
    ts, kind, ents = EVENT
    cmd, present = red.command(ts, kind, ents, claim_key=claim, claim_ttl_ms=60_000)
    first = red.result(present, r.execute_command(*cmd))
    assert first == MemoryState().observe(*EVENT)
    assert r.get(claim) == b"" and 0 < r.pttl(claim) <= 60_000
    again = red.result(present, r.execute_command(*cmd))  # claimed: nothing counted twice
    assert again == b""
    r.set(claim, b"decision")
    assert red.result(present, r.execute_command(*cmd)) == b"decision"
    assert red.peek(ts, ents) == first


def test_counts_saturate_at_max_entries_like_memory(redis_shared_url):
    windows = (Window("dev_n", C, ("device",), 60), Window("dev_accts", D, ("device",), 60, member="account"))
    mem, red = MemoryState(windows), state(redis_shared_url, windows=windows)
    ts = 1_700_000_000_000
    for i in range(MAX_ENTRIES + 50):
        ents = {"device": "d", "account": f"a{i % (MAX_ENTRIES + 10)}"}
        assert red.observe(ts + i // 100, EventKind.CLAIM, ents) == mem.observe(ts + i // 100, EventKind.CLAIM, ents)
    assert red.peek(ts + 100, {"device": "d"}) == [MAX_ENTRIES, MAX_ENTRIES]


def test_missing_entities_and_empty_state(redis_shared_url):
    red = state(redis_shared_url)
    empty = [-1 if w.op is G else 0 for w in DEFAULT_WINDOWS]
    assert red.peek(1_700_000_000_000, {"account": "nobody"}) == empty
    assert red.observe(1_700_000_000_000, EventKind.LOGIN, {}) == empty
    assert list(red.stored_keys()) == []


# -- concurrency -------------------------------------------------------------------------------------

HOT = {"device": "d-hot", "ip": "10.9.9.9", "campaign": "c1"}
PER_WORKER = 250


def hammer(url: str, name: str, worker: int) -> list[int]:
    """One worker's events on the shared device: returns the device's payout count after each."""
    st = RedisState(url, tenant=name, timeout_s=5.0)
    index = [w.name for w in st.windows].index("dev_payouts_1d")
    ts = 1_700_000_000_000
    return [st.observe(ts, EventKind.CLAIM, {**HOT, "account": f"w{worker}-{i}"})[index] for i in range(PER_WORKER)]


def check_exact(url: str, name: str, results: list[list[int]]) -> None:
    total = len(results) * PER_WORKER
    # Each event saw its own count: no two updates interleaved, none lost.
    assert sorted(v for r in results for v in r) == list(range(1, total + 1))
    final = dict(zip([w.name for w in DEFAULT_WINDOWS],
                     RedisState(url, tenant=name).peek(1_700_000_000_000, HOT), strict=True))
    assert final["dev_payouts_1d"] == final["dev_payouts_10m"] == final["ip_payouts_10m"] == total
    assert final["dev_accounts_1d"] == final["ip_accounts_1h"] == total


def test_threads_hammering_one_device_lose_no_update(redis_shared_url):
    name = tenant()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(hammer, [redis_shared_url] * 8, [name] * 8, range(8)))
    check_exact(redis_shared_url, name, results)


def test_processes_hammering_one_device_lose_no_update(redis_shared_url):
    name = tenant()
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(hammer, [redis_shared_url] * 4, [name] * 4, range(4)))
    check_exact(redis_shared_url, name, results)


# -- tenants and expiry ------------------------------------------------------------------------------


def test_tenants_do_not_see_each_other(redis_shared_url):
    a, b = state(redis_shared_url), state(redis_shared_url)
    ents = {"account": "u1", "device": "d1", "ip": "1.2.3.4", "campaign": "c1"}
    ts = 1_700_000_000_000
    a.observe(ts, EventKind.CLAIM, ents)
    before = a.peek(ts + 1000, ents)
    for i in range(20):
        b.observe(ts + i, EventKind.CLAIM, {**ents, "account": f"u{i}"})
    assert a.peek(ts + 1000, ents) == before
    assert b.peek(ts + 1000, ents) != before
    assert all(k.startswith(f"wg:{{{a.tenant}}}:".encode()) for k in a.stored_keys())
    assert not set(a.stored_keys()) & set(b.stored_keys())
    assert a.clear() > 0
    assert list(a.stored_keys()) == [] and list(b.stored_keys())


@pytest.mark.parametrize("bad", ["", "a:b", "{x}", "a b", "a*", "x" * 65])
def test_tenant_names_cannot_escape_their_namespace(bad):
    with pytest.raises(ValueError, match="tenant"):
        RedisState(tenant=bad)


def test_every_key_expires_its_longest_window_after_its_last_update(redis_shared_url):
    windows = (
        Window("n_1s", C, ("device",), 1), Window("accts_1s", D, ("device",), 1, member="account"),
        Window("seen_1s", F, ("device",), 1), Window("gaps_1s", G, ("device",), 1),
        Window("n_2s", C, ("account",), 2), Window("seen_30s", F, ("account",), 30),
    )
    red = state(redis_shared_url, windows=windows)
    r = red.client
    ents = {"device": "d", "account": "a"}
    for i in range(5):
        red.observe(1_700_000_000_000 + i, EventKind.CLAIM, ents)
    # a key's count and distinct windows share one ZSET (z:), its first-seen and gaps windows one string (m:)
    ttl = {k.decode()[len(red.prefix):]: r.pttl(k) for k in red.stored_keys()}
    assert ttl.pop("seq") == -1  # the tenant's event sequence: one small key, kept
    horizon = {"z:device:d": 1000, "m:device:d": 1000, "z:account:a": 2000, "m:account:a": 30_000}
    assert set(ttl) == set(horizon)
    for name, pttl in ttl.items():
        assert horizon[name] - 500 < pttl <= horizon[name], name
    # A read (peek, or a window whose kinds exclude the event) does not extend a key's life.
    r.pexpire(f"{red.prefix}m:account:a", 10_000)
    red.peek(1_700_000_000_010, ents)
    assert r.pttl(f"{red.prefix}m:account:a") <= 10_000
    time.sleep(1.1)
    left = {k.decode()[len(red.prefix):] for k in red.stored_keys()}
    assert left == {"z:account:a", "m:account:a", "seq"}


def test_stale_entries_of_a_short_window_are_trimmed_in_a_long_lived_key(redis_shared_url):
    """A key lives as long as its longest window; its short windows' old entries go on the periodic trim."""
    windows = (Window("n_1s", C, ("device",), 1), Window("accts_1h", D, ("device",), 3600, member="account"))
    red = state(redis_shared_url, windows=windows)
    ts = 1_700_000_000_000
    for i in range(400):  # 400 events over 40 s: the 1 s window holds ~10 at any time
        red.observe(ts + i * 100, EventKind.CLAIM, {"device": "d", "account": f"a{i % 3}"})
    key = f"{red.prefix}z:device:d"
    assert red.client.zcount(key, 1 * 10**14, 2 * 10**14 - 1) <= 10 + 2 * 16  # the window + a trim period
    assert red.client.zcount(key, 2 * 10**14, 3 * 10**14 - 1) == 3


def test_timestamps_outside_the_score_range_are_refused(redis_shared_url):
    red = state(redis_shared_url)
    with pytest.raises(ValueError, match="ts"):
        red.observe(-1, EventKind.CLAIM, {"device": "d"})
    with pytest.raises(ValueError, match="ts"):
        red.observe(10**14, EventKind.CLAIM, {"device": "d"})
    mem = MemoryState()
    for ts in (0, 0, 1, 5000, 600_000, 600_001):  # windows reaching back before 0 count from 0
        ents = {"device": "d", "account": f"a{ts % 2}"}
        assert red.observe(ts, EventKind.CLAIM, ents) == mem.observe(ts, EventKind.CLAIM, ents)


# -- failures ----------------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy to Redis whose mode a test flips: 'up' forwards, 'stall' accepts and never answers."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.mode = "stall"
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.mode == "stall":
                self.held.append(conn)
                continue
            upstream = socket.create_connection(self.target)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=pipe_sockets, args=(src, dst), daemon=True).start()


    def close(self) -> None:
        self.server.close()
        for s in self.held:
            s.close()


EVENT = (1_700_000_000_000, EventKind.CLAIM, {"account": "a", "device": "d"})


def test_refused_connection_fails_fast_with_a_clear_error():
    red = RedisState("redis://127.0.0.1:1/15", tenant="acme", timeout_s=0.2)
    start = time.monotonic()
    with pytest.raises(FeatureStateUnavailable, match=r"127\.0\.0\.1:1/15 \(tenant acme\).*ConnectionError"):
        red.observe(*EVENT)
    with pytest.raises(FeatureStateUnavailable):
        red.peek(EVENT[0], EVENT[2])
    assert time.monotonic() - start < 0.5


def test_a_silent_server_times_out_within_the_budget_then_recovers_by_itself(redis_shared_url):
    url = redis.connection.parse_url(redis_shared_url)
    proxy = Proxy((url.get("host", "127.0.0.1"), url.get("port", 6379)))
    try:
        red = RedisState(f"redis://127.0.0.1:{proxy.port}/15", tenant=tenant(), timeout_s=0.2)
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(FeatureStateUnavailable, match="Timeout"):
                red.observe(*EVENT)
            assert time.monotonic() - start < 2 * 0.2 + 0.2
        proxy.mode = "up"
        values = red.observe(*EVENT)  # no reset, no new object: the next call simply works
        assert values == MemoryState().observe(*EVENT)
    finally:
        proxy.close()


def test_a_script_unknown_to_the_server_is_loaded_on_first_use(redis_shared_url):
    # A catalogue nobody used before has a script Redis has never seen: the first EVALSHA gets NOSCRIPT.
    odd = random.Random().randrange(10**6, 10**7)
    windows = (Window("n_odd", C, ("device",), odd),)
    red = state(redis_shared_url, windows=windows, functions=False)
    assert red.client.script_exists(red.sha) == [False]
    assert red.observe(*EVENT) == [1]
    assert red.client.script_exists(red.sha) == [True]
    assert red.observe(*EVENT) == [2]


# -- the function library (FCALL), reloaded when Redis lost it, and the EVALSHA fallback ----------------------------


def library_names(client: redis.Redis, pattern: str = "wg_*") -> list[str]:
    """The names of the loaded function libraries that match ``pattern`` (FUNCTION LIST, RESP2: flat pairs)."""
    return sorted(dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"].decode()
                  for lib in client.function_list(library=pattern))


def test_the_function_library_is_loaded_on_first_use_and_called(redis_shared_url):
    # A catalogue nobody used before: the first FCALL gets "Function not found", loads the library, calls again.
    odd = random.Random().randrange(10**6, 10**7)
    red = state(redis_shared_url, windows=(Window("n_odd", C, ("device",), odd),))
    r = red.client
    assert red.functions and red.function.startswith("wg_") and len(red.function) == 19
    assert library_names(r, red.function) == []
    try:
        assert red.observe(*EVENT) == [1]
        assert library_names(r, red.function) == [red.function]
        assert r.script_exists(red.sha) == [False]  # no EVALSHA was needed
        calls = r.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)
        assert red.observe(*EVENT) == [2]
        assert r.info("commandstats")["cmdstat_fcall"]["calls"] >= calls + 1
        assert red.functions
    finally:
        r.function_delete(red.function)


def test_libraries_are_named_by_their_code():
    a, b = RedisState(client=redis.Redis(), tenant="x"), RedisState(client=redis.Redis(), tenant="y")
    assert a.function == b.function  # tenants share a catalogue's library
    other = RedisState(client=redis.Redis(), tenant="x", windows=SHORT)
    assert other.function != a.function
    assert other.library.startswith(f"#!lua name={other.function}\n")
    assert f"redis.register_function('{other.function}', run)" in other.library
    # the library runs the script's code: the same body, with its tables built once
    body = other.script.split("local TRIM_EVERY", 1)[1].split("\n", 1)[1]
    assert body in other.library


def test_needs_load():
    from woolguard.features.redis_state import needs_load

    assert needs_load(redis.exceptions.NoScriptError("No matching script. Please use EVAL."))
    assert needs_load(redis.ResponseError("Function not found"))  # redis-py drops the "ERR "
    assert needs_load(redis.ResponseError("ERR Function not found"))  # the pipe keeps it
    assert needs_load(redis.ResponseError("unknown command 'FCALL', with args beginning with: 'wg_1' '2' "))
    assert needs_load(redis.ResponseError("ERR unknown command `FCALL`, with args beginning with: `wg_1`, `2`, "))
    assert not needs_load(redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."))
    assert not needs_load(redis.ResponseError("ERR user_function:12: Script attempted to access nonexistent global"))
    assert not needs_load(redis.ConnectionError("Connection refused"))


def test_refuses_functions():
    from woolguard.features.redis_state import refuses_functions

    assert refuses_functions(redis.ResponseError("unknown command 'FUNCTION', with args beginning with: 'LOAD' "))
    assert refuses_functions(redis.ResponseError("ERR unknown command `FUNCTION`, with args beginning with: "))
    assert refuses_functions(redis.exceptions.NoPermissionError("this user has no permissions to run the "
                                                                "'function|load' command"))
    assert refuses_functions(redis.ResponseError("NOPERM this user has no permissions to run the 'function|load'"))
    assert refuses_functions(redis.ResponseError("ERR Error compiling function: user_function:2: '=' expected"))
    for passing in ("OOM command not allowed when used memory > 'maxmemory'.", "READONLY You can't write against a "
                    "read only replica.", "BUSY Redis is busy running a script."):
        assert not refuses_functions(redis.ResponseError(passing))
    assert not refuses_functions(redis.ConnectionError("Connection refused"))


def test_a_passing_refusal_of_the_library_does_not_switch_to_evalsha(private_redis):
    """FUNCTION LOAD refused for a passing reason (here OOM): that call fails like any Redis error, the state
    keeps FCALL, and the next call after the cause is gone loads the library."""
    red = state(private_redis.url)
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(FeatureStateUnavailable, match="OutOfMemoryError"):
            red.observe(*EVENT)
    finally:
        admin.config_set("maxmemory", 0)
    stats = admin.info("commandstats")
    assert stats["cmdstat_fcall"]["failed_calls"] == 1  # Function not found
    assert stats["cmdstat_function|load"]["rejected_calls"] == 1  # OOM
    assert red.functions
    assert red.observe(*EVENT) == MemoryState().observe(*EVENT)
    assert red.functions and library_names(admin) == [red.function]


def test_function_flush_mid_run_reloads_with_no_wrong_value(private_redis, monkeypatch):
    """FUNCTION FLUSH (or a restart's empty function table) between any two events: every event is counted once,
    every value is memory's, and the library is back after each flush."""
    from woolguard.features import catalog

    monkeypatch.setattr(catalog, "MAX_ENTRIES", 4)
    monkeypatch.setattr(memory_module, "MAX_ENTRIES", 4)
    rng = random.Random(9)
    mem = MemoryState(SHORT)
    name = tenant()
    workers = [RedisState(private_redis.url, tenant=name, windows=SHORT, timeout_s=2.0) for _ in range(2)]
    pool = RoundRobin(workers)
    admin = redis.Redis.from_url(private_redis.url)
    flushes = 0
    for n, (ts, kind, ents) in enumerate(random_stream(rng, 400)):
        if n % 7 == 3:
            admin.function_flush()
            flushes += 1
        if n % 50 == 17:
            admin.script_flush()  # not used by the function path: changes nothing
        assert pool.observe(ts, kind, ents) == mem.observe(ts, kind, ents), (n, ts, kind, ents)
    assert library_names(admin) == [workers[0].function]
    assert all(w.functions for w in workers)
    assert admin.info("commandstats")["cmdstat_function|load"]["calls"] == 1 + flushes  # first use, each flush
    assert "cmdstat_evalsha" not in admin.info("commandstats")


def test_threads_lose_no_update_while_the_library_is_flushed(private_redis):
    """8 threads on one device while another flushes the library again and again: a call that found no function
    ran nothing, so after its load and retry (or the caller's retry, when a flush hit between load and retry) each
    event is counted exactly once."""
    url = private_redis.url
    name = tenant()
    stop = threading.Event()
    admin = redis.Redis.from_url(url)
    errors: list[str] = []

    def flusher() -> int:
        n = 0
        while not stop.is_set():
            admin.function_flush()
            n += 1
            time.sleep(0.005)
        return n

    def worker(w: int) -> list[int]:
        st = RedisState(url, tenant=name, timeout_s=5.0)
        index = [x.name for x in st.windows].index("dev_payouts_1d")
        out = []
        for i in range(PER_WORKER // 5):
            for _attempt in range(100):
                try:
                    out.append(st.observe(1_700_000_000_000, EventKind.CLAIM, {**HOT, "account": f"w{w}-{i}"})[index])
                    break
                except FeatureStateUnavailable as exc:
                    errors.append(str(exc))
            else:
                raise AssertionError(f"no call got through: {errors[-3:]}")
        return out

    with ThreadPoolExecutor(9) as pool:
        flushes = pool.submit(flusher)
        try:
            results = list(pool.map(worker, range(8)))
        finally:
            stop.set()
        assert flushes.result() > 5
    assert all("Function not found" in e for e in errors), errors[:3]
    total = 8 * (PER_WORKER // 5)
    assert sorted(v for r in results for v in r) == list(range(1, total + 1))
    final = dict(zip([w.name for w in DEFAULT_WINDOWS],
                     RedisState(url, tenant=name).peek(1_700_000_000_000, HOT), strict=True))
    assert final["dev_payouts_1d"] == final["ip_payouts_10m"] == final["dev_accounts_1d"] == total


@pytest.mark.parametrize("seed", [7, 8])
def test_a_redis_without_functions_gets_evalsha_with_the_same_values(private_redis_without_functions, monkeypatch,
                                                                    caplog, seed):
    """A Redis that answers FCALL and FUNCTION as Redis 6 does: the first call's refused load switches the state to
    EVALSHA (for good: no FCALL after it), with memory's values, and NOSCRIPT still reloads the script."""
    from woolguard.features import catalog

    monkeypatch.setattr(catalog, "MAX_ENTRIES", 4)
    monkeypatch.setattr(memory_module, "MAX_ENTRIES", 4)
    url = private_redis_without_functions.url
    admin = redis.Redis.from_url(url)
    with pytest.raises(redis.ResponseError, match="unknown command"):
        admin.function_list()
    rng = random.Random(seed)
    mem, red = MemoryState(SHORT), state(url, windows=SHORT)
    assert red.functions
    flushes = 0
    for n, (ts, kind, ents) in enumerate(random_stream(rng, 300)):
        if n % 50 == 20:
            admin.script_flush()
            flushes += 1
        assert red.observe(ts, kind, ents) == mem.observe(ts, kind, ents), (n, ts, kind, ents)
        assert not red.functions
    stats = admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 300 + flushes  # one NOSCRIPT after each flush
    assert stats["cmdstat_evalsha"]["failed_calls"] == flushes
    assert stats["cmdstat_script|load"]["calls"] == 1 + flushes
    assert "cmdstat_fcall" not in stats and "cmdstat_function|load" not in stats  # unknown commands
    refused = [r for r in caplog.records if "refused the feature function library" in r.getMessage()]
    assert len(refused) == 1  # asked once, refused, remembered
    assert admin.script_exists(red.sha) == [True]


def test_functions_false_never_sends_fcall(private_redis):
    red = state(private_redis.url, functions=False)
    assert red.observe(*EVENT) == MemoryState().observe(*EVENT)
    stats = red.client.info("commandstats")
    assert "cmdstat_fcall" not in stats and "cmdstat_function|load" not in stats
    assert stats["cmdstat_evalsha"]["calls"] == 2  # NOSCRIPT, then after the load
