"""Database fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is reached at $XTALSCREEN_TEST_PG (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``, as in CI). The session works in its own
schema ``xts_test_<random>`` (reset before each test, dropped at the end), selected through the
connection's ``search_path``. Where the server is unreachable the PostgreSQL variants skip with
the reason, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("XTALSCREEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pg_schema():
    """(admin engine, schema name) of this session's PostgreSQL schema."""
    engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except (sa.exc.DBAPIError, OSError, ImportError) as exc:  # no server (or driver) to test with
        engine.dispose()
        msg = f"PostgreSQL not reachable at {PG_URL}: {str(exc).splitlines()[0]}"
        if _under_ci():
            pytest.fail(msg + " (CI must run the PostgreSQL tests)")
        pytest.skip(msg)
    name = f"xts_test_{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    yield engine, name
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """URL of an empty database: a fresh SQLite file, or the reset PostgreSQL test schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'drops.sqlite'}"
    engine, name = request.getfixturevalue("pg_schema")
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={name}')}"


@pytest.fixture
def engine(db_url):
    """An engine on an initialised database (schema + class schemes)."""
    from xtalscreen.drops.db import connect, init_db

    eng = connect(db_url)
    init_db(eng)
    yield eng
    eng.dispose()
