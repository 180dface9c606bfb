"""Alembic environment of the xtalscreen drop database.

Run programmatically by :func:`xtalscreen.drops.db.init_db`, which passes an open connection in
``config.attributes["connection"]``. For development (new revisions), from this folder's parent:
``alembic -c <ini with script_location=xtalscreen/drops/migrations and sqlalchemy.url=...>
revision --autogenerate -m "..."``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from xtalscreen.drops.schema import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER via table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
