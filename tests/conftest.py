"""Shared fixtures: real PostgreSQL and Redis servers, skipped when unreachable unless CI=true."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from woolguard.api.testing import PrivateRedis

PG_USERS = ("postgres", "root")
PG_HOSTPORT = "127.0.0.1:5432"
PG_DATABASE = "test"
REDIS_URL = "redis://127.0.0.1:6379/15"


def _unavailable(what: str, why: str) -> None:
    message = f"{what} is not reachable: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: backend tests must run, not skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """``postgresql://USER@127.0.0.1:5432/test`` for the first user that can connect."""
    import psycopg

    errors = []
    for user in PG_USERS:
        url = f"postgresql://{user}@{PG_HOSTPORT}/{PG_DATABASE}"
        try:
            psycopg.connect(url, connect_timeout=3).close()
            return url
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}")
    _unavailable("PostgreSQL", "; ".join(errors))
    raise AssertionError("unreachable")


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of its own, dropped afterwards (tests may run at once)."""
    import psycopg

    schema = f"wg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_server}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> str:
    """redis://127.0.0.1:6379/15, emptied before the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", str(exc))
    client.flushdb()
    client.close()
    return REDIS_URL


def _private_redis(args: tuple[str, ...] = ()) -> Iterator[PrivateRedis]:
    import shutil
    from pathlib import Path

    from woolguard.api.testing import PrivateRedis

    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed (CI=true: failure tests must run)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(args).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A ``redis-server`` of the test's own (a ``PrivateRedis``): to stop, restart or flush at will."""
    yield from _private_redis()


@pytest.fixture
def private_redis_without_functions() -> Iterator[PrivateRedis]:
    """A ``PrivateRedis`` that answers ``FCALL`` and ``FUNCTION`` as Redis 6 does (unknown commands)."""
    from woolguard.api.testing import WITHOUT_FUNCTIONS

    yield from _private_redis(WITHOUT_FUNCTIONS)


@pytest.fixture
def redis_shared_url() -> str:
    """redis://127.0.0.1:6379/15, *not* emptied: for tests that keep to keys of their own (a fresh tenant),
    so that runs in parallel (xdist, or two people's runs) cannot wipe each other's keys mid-test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", str(exc))
    finally:
        client.close()
    return REDIS_URL
