"""Alembic environment for woolguard's schema.

Run through :func:`woolguard.storage.database.upgrade` (which hands in an open connection, already in a
transaction and holding the migration lock), or from the ``alembic`` command line with
``-x url=...`` / ``sqlalchemy.url`` set.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from woolguard.storage.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    from woolguard.storage.database import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
