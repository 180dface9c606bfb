"""Databases the drop benchmarks run against: a SQLite file, and PostgreSQL when reachable.

PostgreSQL rows use a fresh scratch schema per tag on ``$XTALSCREEN_TEST_PG`` (default
127.0.0.1:5432, database ``test``), dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import sys

import sqlalchemy as sa

PG_URL = os.environ.get("XTALSCREEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def backends(tmp: str, prefix: str = "xts_bench"):
    """Yield ``(name, make_url)``; ``make_url(tag)`` gives a fresh database URL for ``tag``."""
    yield "SQLite", lambda tag: f"sqlite:///{tmp}/{tag}.sqlite"
    admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as c:
            c.exec_driver_sql("SELECT 1")
    except (sa.exc.DBAPIError, OSError) as exc:
        print(f"(PostgreSQL rows left out: {str(exc).splitlines()[0]})", file=sys.stderr)
        return
    schemas = []

    def url(tag):
        name = f"{prefix}_{tag}_{secrets.token_hex(3)}"
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        schemas.append(name)
        return f"{PG_URL}?options=-csearch_path%3D{name}"

    try:
        yield "PostgreSQL", url
    finally:
        with admin.begin() as c:
            for name in schemas:
                c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
