"""A run lock in the database, so that two pipeline runs never overlap.

One row of ``pipeline_lock`` per lock name, holding the holder's host, process id and a
heartbeat that a background thread refreshes every :data:`HEARTBEAT_S` seconds. Works the same on
SQLite and PostgreSQL, and across nodes. A lock is taken over when its holder is dead: on the same
host, its process no longer exists (a run killed with ``kill -9`` does not block the next one);
on another host, its heartbeat is older than ``stale_after`` seconds.

Examples
--------
>>> # with RunLock(engine, "pipeline"):
>>> #     ...                            # LockHeld if another live run holds it
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import threading
import uuid

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from xtalscreen.drops import schema as S
from xtalscreen.drops.db import describe, session_scope
from xtalscreen.errors import XtalscreenError

log = logging.getLogger(__name__)

#: Seconds between heartbeats.
HEARTBEAT_S = 30.0
#: A lock held from another host whose heartbeat is older than this (s) is taken to be dead.
STALE_AFTER_S = 300.0


class LockHeld(XtalscreenError):
    """Another live run holds the lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Context manager holding the named lock (see the module docstring)."""

    def __init__(self, engine: Engine, name: str = "pipeline", *, stale_after: float = STALE_AFTER_S,
                 heartbeat: float = HEARTBEAT_S):
        self.engine, self.name = engine, name
        self.stale_after, self.heartbeat = float(stale_after), float(heartbeat)
        self.host, self.pid = socket.gethostname()[:255], os.getpid()
        self.holder = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _dead(self, row: S.PipelineLock, now: _dt.datetime) -> bool:
        if row.host == self.host and row.pid != self.pid:
            return not _pid_alive(row.pid)
        return (now - row.heartbeat_at).total_seconds() > self.stale_after

    def acquire(self) -> None:
        now = S.now_utc()
        with session_scope(self.engine, write=True) as s:
            row = s.get(S.PipelineLock, self.name, with_for_update=True)
            if row is not None and not self._dead(row, now):
                raise LockHeld(
                    f"another pipeline run holds the lock {self.name!r} on {describe(self.engine)} "
                    f"(host {row.host}, pid {row.pid}, since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC, "
                    f"heartbeat {row.heartbeat_at:%H:%M:%S}); wait for it to finish, or if it is dead "
                    f"on another host, wait {self.stale_after:.0f} s after its last heartbeat")
            if row is not None:
                log.warning("taking over lock %r from dead holder %s (pid %s)", self.name, row.host, row.pid)
                s.delete(row)
                s.flush()
            s.add(S.PipelineLock(name=self.name, holder=self.holder, host=self.host, pid=self.pid,
                                 acquired_at=now, heartbeat_at=now))
        self._thread = threading.Thread(target=self._beat, name="lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.update(S.PipelineLock)
                                 .where(S.PipelineLock.name == self.name,
                                        S.PipelineLock.holder == self.holder)
                                 .values(heartbeat_at=S.now_utc()))
            except exc.SQLAlchemyError as e:  # a missed beat is not fatal; the next one retries
                log.warning("lock heartbeat failed: %s", str(e).splitlines()[0])

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(S.PipelineLock).where(S.PipelineLock.name == self.name,
                                                             S.PipelineLock.holder == self.holder))
        except exc.SQLAlchemyError as e:  # a dead database: the next run takes the lock over
            log.warning("could not release lock %r: %s", self.name, str(e).splitlines()[0])

    def __enter__(self) -> RunLock:
        try:
            self.acquire()
        except exc.IntegrityError:  # another run inserted the row between our read and insert
            raise LockHeld(f"another pipeline run took the lock {self.name!r} just now") from None
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
