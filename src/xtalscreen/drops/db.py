"""Database connections, schema creation/upgrade and small shared queries.

``db`` arguments are a file path (an SQLite database, the default back-end) or an SQLAlchemy URL:
``sqlite:///drops.sqlite``, ``postgresql+psycopg://user@host:5432/dbname`` (``postgresql://``
and ``postgres://`` mean the same; the psycopg 3 driver is used). A PostgreSQL schema other than
``public`` is chosen with ``?options=-csearch_path%3Dmyschema``.

The schema is created and upgraded by Alembic (migrations ship in
``xtalscreen/drops/migrations``); :func:`init_db` runs ``alembic upgrade head`` and loads the
class schemes, and is safe to run again. One engine per process with a small pool keeps the
number of database connections to a handful.

Examples
--------
>>> from xtalscreen.drops.db import connect, init_db, session_scope
>>> engine = connect("sqlite://")            # in memory; a path or URL in real use
>>> report = init_db(engine)
>>> report.created
True
>>> engine.dispose()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, exc, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session

from xtalscreen.drops import schema as S
from xtalscreen.drops.schemes import TARGET_SCHEME, load_schemes, normalise_label
from xtalscreen.errors import InputError, ParameterError


#: Connection pool of a PostgreSQL engine: at most POOL_SIZE + MAX_OVERFLOW connections.
POOL_SIZE = 2
MAX_OVERFLOW = 2
#: Seconds to wait for a PostgreSQL server before giving up.
CONNECT_TIMEOUT_S = 5
#: PostgreSQL advisory-lock key held while init_db migrates ("xtalscre" as a 64-bit integer).
_INIT_LOCK_KEY = int.from_bytes(b"xtalscre", "big") & 0x7FFFFFFFFFFFFFFF


def resolve_url(db: str | Path | URL) -> URL:
    """Turn a path or URL into an SQLAlchemy :class:`~sqlalchemy.engine.URL`.

    A plain path (no ``://``) becomes ``sqlite:///<absolute path>``; ``postgresql://`` and
    ``postgres://`` become ``postgresql+psycopg://``. Raises :class:`ParameterError` for other
    back-ends or unparsable URLs.
    """
    if isinstance(db, URL):
        url = db
    else:
        text = str(db).strip()
        if not text:
            raise ParameterError("--db must be a database file path or URL, got an empty string")
        if "://" not in text:
            path = Path(text).expanduser()
            if path.is_dir():
                raise ParameterError(f"--db {text!r} is a folder; give a database file path "
                                     f"(e.g. {text.rstrip('/')}/drops.sqlite) or a URL")
            return URL.create("sqlite", database=str(path.resolve()))
        try:
            url = make_url(text)
        except exc.ArgumentError:
            raise ParameterError(f"--db {text!r} is not a database URL; use a file path, "
                                 f"sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB") from None
    backend = url.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url.set(drivername="sqlite")
    raise ParameterError(f"--db {url.render_as_string(hide_password=True)!r}: database back-end "
                         f"{backend!r} is not supported; use SQLite (a file path) or PostgreSQL "
                         f"(postgresql+psycopg://USER@HOST:PORT/DB)")


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Let SQLAlchemy, not the sqlite3 module, open transactions, so that DDL (migrations) is
    # transactional too: a schema change is all or nothing, and one commit instead of many.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE) and so queue behind each other
    # (busy timeout) instead of failing with "database is locked" when both read first.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def connect(db: str | Path | URL, *, echo: bool = False, must_exist: bool = False) -> Engine:
    """Create the engine for ``db`` (see :func:`resolve_url`) with a small connection pool.

    Parameters
    ----------
    db : str, Path or URL
        Database file path or URL.
    echo : bool
        Log every SQL statement (debugging).
    must_exist : bool
        For an SQLite file: raise :class:`InputError` if it does not exist (instead of creating
        an empty one). Commands other than ``init`` use this.

    The engine does not connect until first used; connection problems surface there and are
    translated by :func:`db_errors`. Call ``engine.dispose()`` when done.
    """
    url = resolve_url(db)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            if must_exist and not path.is_file():
                raise InputError("no such database file; create it with "
                                 f"'xtalscreen drops init --db {path}'", path=str(path))
            if not path.parent.is_dir():
                raise InputError("the folder of the database file does not exist", path=str(path))
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, echo=echo, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW,
                            pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def describe(engine: Engine) -> str:
    """The engine's URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


@contextlib.contextmanager
def db_errors(engine: Engine, action: str = "use") -> Iterator[None]:
    """Translate database driver errors into one-line :class:`InputError` naming the database."""
    try:
        yield
    except exc.OperationalError as e:
        reason = str(getattr(e, "orig", e) or e).strip().splitlines()[0]
        raise InputError(f"cannot {action} the database: {reason}", path=describe(engine)) from e
    except exc.InterfaceError as e:
        reason = str(getattr(e, "orig", e) or e).strip().splitlines()[0]
        raise InputError(f"cannot {action} the database: {reason}", path=describe(engine)) from e


@contextlib.contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error.

    ``write=True`` takes SQLite's write lock at the start of the transaction, so concurrent
    writers wait for each other (up to 30 s) rather than fail; no effect on PostgreSQL.
    """
    if not write:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
        return
    with engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin(), Session(bind=conn, expire_on_commit=False) as session:
            yield session
            session.flush()


# ----------------------------------------------------------------------------- migrations
def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("xtalscreen.drops") / "migrations"))
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for a database without our schema."""
    from alembic.migration import MigrationContext

    with db_errors(engine, "open"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of xtalscreen."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def require_schema(engine: Engine) -> None:
    """Raise :class:`InputError` unless the database has the current xtalscreen schema."""
    rev = current_revision(engine)
    head = head_revision()
    if rev is None:
        raise InputError("the database has no xtalscreen tables; create them with "
                         f"'xtalscreen drops init --db {describe(engine)}'", path=describe(engine))
    if rev != head:
        raise InputError(f"the database schema is at revision {rev}, this xtalscreen needs {head}; "
                         f"upgrade it with 'xtalscreen drops init --db {describe(engine)}'",
                         path=describe(engine))


@dataclass
class InitReport:
    """What :func:`init_db` did."""

    url: str
    previous_revision: str | None
    revision: str
    classes_added: int

    @property
    def created(self) -> bool:
        return self.previous_revision is None


def init_db(db: str | Path | URL | Engine) -> InitReport:
    """Create or upgrade the schema (``alembic upgrade head``) and load the class schemes.

    Idempotent: on an up-to-date database it changes nothing.

    Parameters
    ----------
    db : str, Path, URL or Engine
        Database path/URL, or an engine from :func:`connect` (not disposed here).
    """
    from alembic import command
    from alembic.migration import MigrationContext

    own = not isinstance(db, Engine)
    engine = connect(db) if own else db
    try:
        cfg = _alembic_config()
        # One transaction holding a lock: nodes starting together queue, and exactly one of
        # them migrates and loads the schemes (SQLite: BEGIN IMMEDIATE; PostgreSQL: advisory).
        with db_errors(engine, "connect to"):
            conn = engine.connect()
        with conn, db_errors(engine, "create the schema in"):
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _INIT_LOCK_KEY})
                before = MigrationContext.configure(conn).get_current_revision()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                after = MigrationContext.configure(conn).get_current_revision()
                with Session(bind=conn) as session:
                    added = sync_schemes(session)
                    session.flush()
        return InitReport(describe(engine), before, after, added)
    finally:
        if own:
            engine.dispose()


# ----------------------------------------------------------------------------- schemes
def sync_schemes(session: Session, schemes=None) -> int:
    """Insert the class schemes (default: the shipped ones) that are missing; return classes added.

    Existing classes keep their ids; their colour, order and mapping are updated to the data.
    """
    schemes = load_schemes() if schemes is None else schemes
    existing = {s.name: s for s in session.scalars(select(S.ClassScheme))}
    added = 0
    target_classes: dict[str, S.SchemeClass] = {}
    # The target scheme first, so that mappings can point at its classes.
    names = [TARGET_SCHEME] + sorted(n for n in schemes if n != TARGET_SCHEME)
    for name in names:
        sdef = schemes[name]
        scheme = existing.get(name)
        if scheme is None:
            scheme = S.ClassScheme(name=name, description=sdef.description)
            session.add(scheme)
        else:
            scheme.description = sdef.description
        by_key = {normalise_label(c.name): c for c in scheme.classes}
        for cdef in sdef.classes:
            row = by_key.get(normalise_label(cdef.name))
            if row is None:
                row = S.SchemeClass(name=cdef.name, colour=cdef.colour, order=cdef.order)
                scheme.classes.append(row)
                added += 1
            row.colour, row.order = cdef.colour, cdef.order
            if name == TARGET_SCHEME:
                target_classes[normalise_label(cdef.name)] = row
            else:
                row.maps_to = target_classes[normalise_label(cdef.maps_to)]
        session.flush()
    return added


def scheme_classes(session: Session, scheme: str = TARGET_SCHEME) -> dict[str, S.SchemeClass]:
    """The classes of ``scheme`` in the database, keyed by normalised label."""
    rows = session.scalars(select(S.SchemeClass).join(S.ClassScheme)
                           .where(S.ClassScheme.name == scheme)).all()
    if not rows:
        known = session.scalars(select(S.ClassScheme.name)).all()
        raise ParameterError(f"unknown class scheme {scheme!r}; the database has: "
                             f"{', '.join(sorted(known)) or 'none (run xtalscreen drops init)'}")
    return {normalise_label(r.name): r for r in rows}


# ----------------------------------------------------------------------------- queries
def pending_inspections(model: str, version: str):
    """SELECT of complete inspections with an image not yet scored by ``model`` ``version``.

    Oldest first. Served by ``ix_inspection_complete_imaged_at``,
    ``uq_image_inspection_id_drop_id_kind`` (leading column ``inspection_id``) and the partial
    unique index ``uq_score_machine``.

    Examples
    --------
    >>> # session.scalars(pending_inspections("marco", "1.0")).all()
    """
    scored = (select(S.Score.id)
              .where(S.Score.image_id == S.Image.id, S.Score.scorer_kind == S.ScorerKind.machine,
                     S.Score.scorer == model, S.Score.model_version == version)
              .exists())
    unscored = (select(S.Image.id)
                .where(S.Image.inspection_id == S.Inspection.id, ~scored)
                .exists())
    return (select(S.Inspection).where(S.Inspection.complete.is_(True), unscored)
            .order_by(S.Inspection.imaged_at, S.Inspection.id))


def plate_drops(barcode: str):
    """SELECT of the drops of the plate ``barcode`` (served by ``ix_well_drop_plate_id``)."""
    return (select(S.Drop).join(S.Plate, S.Drop.plate_id == S.Plate.id)
            .where(S.Plate.barcode == barcode).order_by(S.Drop.id))

