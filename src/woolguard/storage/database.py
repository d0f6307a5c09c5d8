"""Opening the database: URL defaults, engine settings per backend, and migrating to the newest schema.

:func:`open_database` is the one way in. It builds the engine (SQLite in WAL mode with a busy timeout,
or PostgreSQL through psycopg 3) and runs the Alembic revisions shipped in ``storage/migrations`` up to
head. Migrating holds a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two
processes opening the same new database at once create the schema exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import msgspec
import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

ENV_URL = "WOOLGUARD_DATABASE_URL"
DEFAULT_URL = "sqlite:///woolguard.db"
MIGRATIONS = Path(__file__).parent / "migrations"
#: Arbitrary constant naming woolguard's migration lock on PostgreSQL (pg_advisory_xact_lock).
_PG_MIGRATION_LOCK = 0x776F6F6C  # "wool"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_url() -> str:
    """``$WOOLGUARD_DATABASE_URL``, else ``sqlite:///woolguard.db`` in the current directory."""
    return os.environ.get(ENV_URL) or DEFAULT_URL


def normalise_url(url: str | None) -> str:
    """Fill in the default and pick the psycopg 3 driver for ``postgresql://`` / ``postgres://`` URLs."""
    url = url or default_url()
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def _enc_hook(obj: Any) -> Any:
    # numpy scalars and arrays have .tolist(); anything else unknown is written as its text, so that a
    # feature of an odd type can never make a decision unstorable.
    tolist = getattr(obj, "tolist", None)
    return tolist() if callable(tolist) else str(obj)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def json_encoder() -> msgspec.json.Encoder:
    """The encoder of the JSON columns (see :func:`json_dumps`), for callers that want bytes."""
    return _encoder


def json_dumps(obj: Any) -> str:
    """Encode for a JSON column: msgspec structs (Reason, Event), dicts, lists, numpy values."""
    return _encoder.encode(obj).decode()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` with woolguard's settings (no migration; see :func:`open_database`)."""
    url = normalise_url(url)
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"check_same_thread": False}
        if parsed.database in (None, "", ":memory:"):
            options["poolclass"] = StaticPool  # one shared in-memory database
        else:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif parsed.get_backend_name() == "postgresql":
        options["pool_pre_ping"] = True
        options["connect_args"] = {"connect_timeout": 10}
    options.update(kwargs)
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the cross-process migration lock until commit."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            yield conn


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction under the migration lock; a no-op when already there."""
    with _migration_lock(engine) as conn:
        command.upgrade(_alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _migration_lock(engine) as conn:
        command.downgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class Database:
    """An engine plus what woolguard knows about it. Build one with :func:`open_database`."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def connect(self) -> Connection:
        return self.engine.connect()

    def begin(self) -> AbstractContextManager[Connection]:
        """A connection in a write transaction, committed on success.

        On SQLite the transaction takes the write lock as it begins (``BEGIN IMMEDIATE``): a deferred transaction
        that reads, then writes after another connection (another worker) has committed, fails at once with
        ``SQLITE_BUSY`` instead of waiting out the busy timeout; an immediate one waits its turn."""
        if self.dialect == "sqlite":
            return self._begin_immediate()
        return self.engine.begin()

    @contextmanager
    def _begin_immediate(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def revision(self) -> str | None:
        return current_revision(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({make_url(self.url).render_as_string(hide_password=True)!r})"


def open_database(url: str | None = None, *, migrate: bool = True, **engine_kwargs: Any) -> Database:
    """Open (creating if needed) the database at ``url`` and upgrade its schema to head.

    ``url`` defaults to ``$WOOLGUARD_DATABASE_URL``, else ``sqlite:///woolguard.db``. Safe to call on an
    existing database and from several processes at once.
    """
    url = normalise_url(url)
    engine = make_engine(url, **engine_kwargs)
    if migrate:
        upgrade(engine)
    return Database(engine, url)
