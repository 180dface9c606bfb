"""The plate view's cost does not grow with the database: few queries, all by index (SQLite plans)."""

from __future__ import annotations

import re

from sqlalchemy import event

#: Tables small enough to scan (a few dozen rows: class schemes and their classes).
SMALL = ("class_scheme", "scheme_class")


def test_plate_view_uses_a_fixed_number_of_indexed_queries(client, h):
    h.login(client, "sam")
    engine = client.app.state.engine
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(f"/plates/{h.P1}").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert 3 <= len(seen) <= 8, [s for s, _ in seen]  # not one query per drop
    with engine.connect() as conn:
        for sql, params in seen:
            plan = " | ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            scans = [s for s in re.findall(r"SCAN (\w+)", plan) if s not in SMALL]
            assert not scans, (sql, plan)
