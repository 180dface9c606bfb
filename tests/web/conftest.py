"""A small drop world for the web tests: 2 rendered plates (8 wells, 2 inspections), users, scores.

- Plate ``XS001-0001`` belongs to scorer ``sam``; ``XS001-0002`` to owner ``olga``.
- Every image has a machine score (``marco`` ``1.0``): in the latest inspection well i (A1..A8,
  i = 0..7) is class ``MACHINE[i % 4]`` with top probability 0.4 + 0.05 i; in the first
  inspection everything is ``clear``.
- Human scores (latest inspection of plate 1): ``sam`` says crystal for A1 (agrees) and A2
  (disagrees with the machine's precipitate).
- The Cinder queue holds A2 of plate 1 (Ashes: disagreement) and A3, A4 (manual).

The SQLite database is built once per session and copied for each test; the PostgreSQL variant
(``world_any``) is built in the session's test schema.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

_spec = importlib.util.spec_from_file_location("_xts_drops_conftest",
                                               Path(__file__).parents[1] / "drops" / "conftest.py")
_drops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_drops)
pg_schema = _drops.pg_schema  # the same PostgreSQL fixture as tests/drops

PASSWORD = "correct-horse-9"
USERS = {"ada": "admin", "sam": "scorer", "sue": "scorer", "tom": "scorer", "olga": "owner"}
MACHINE = ("crystal", "precipitate", "clear", "other")
SECRET = "test-secret-key-0123456789abcdef"
P1, P2 = "XS001-0001", "XS001-0002"


@dataclass
class World:
    url: str
    tmp: Path

    def engine(self):
        from xtalscreen.drops.db import connect

        return connect(self.url)

    def ids(self, barcode: str = P1, latest: bool = True) -> dict[str, int]:
        """Position ("A1") -> image id in the latest (or first) inspection of ``barcode``."""
        from sqlalchemy import select

        from xtalscreen.drops import schema as S
        from xtalscreen.drops.db import session_scope

        eng = self.engine()
        try:
            with session_scope(eng) as s:
                insp = s.scalars(select(S.Inspection).join(S.Plate).where(S.Plate.barcode == barcode)
                                 .order_by(S.Inspection.imaged_at)).all()
                chosen = insp[-1] if latest else insp[0]
                rows = s.execute(select(S.Image.id, S.Well.row, S.Well.column, S.Image.drop_id)
                                 .join(S.Drop, S.Drop.id == S.Image.drop_id)
                                 .join(S.Well, S.Well.id == S.Drop.well_id)
                                 .where(S.Image.inspection_id == chosen.id)).all()
        finally:
            eng.dispose()
        return {f"{r}{c}": i for i, r, c, _d in rows} | {f"drop:{r}{c}": d for _i, r, c, d in rows}


def populate(url: str, plates: Path) -> None:
    from sqlalchemy import select

    from xtalscreen.drops import schema as S
    from xtalscreen.drops.ashes import queue_ashes, queue_images
    from xtalscreen.drops.db import connect, init_db, scheme_classes, session_scope
    from xtalscreen.drops.importer import import_source
    from xtalscreen.web.auth import add_user

    eng = connect(url)
    try:
        init_db(eng)
        import_source(eng, plates / "plates.csv")
        with session_scope(eng, write=True) as s:
            for name, role in USERS.items():
                add_user(s, name, role=role, password=PASSWORD)
            owners = {P1: "sam", P2: "olga"}
            for p in s.scalars(select(S.Plate)):
                p.owner = owners[p.barcode]
            marco = scheme_classes(s)
            for p in s.scalars(select(S.Plate)):
                insp = sorted(p.inspections, key=lambda i: i.imaged_at)
                for k, ins in enumerate(insp):
                    imgs = sorted(ins.images, key=lambda im: (im.drop.well.row, im.drop.well.column))
                    for i, im in enumerate(imgs):
                        cls = MACHINE[i % 4] if k == len(insp) - 1 else "clear"
                        top = 0.4 + 0.05 * i
                        probs = {c: (top if c == cls else (1 - top) / 3) for c in MACHINE}
                        s.add(S.Score(image_id=im.id, scorer_kind=S.ScorerKind.machine, scorer="marco",
                                      model_version="1.0", class_id=marco[cls].id, probabilities=probs,
                                      scored_at=ins.imaged_at + dt.timedelta(hours=1)))
                        if p.barcode == P1 and k == len(insp) - 1 and i in (0, 1):
                            s.add(S.Score(image_id=im.id, scorer_kind=S.ScorerKind.human,
                                          scorer="sam", class_id=marco["crystal"].id,
                                          scored_at=ins.imaged_at + dt.timedelta(hours=2)))
        queue_ashes(eng, since=None)
        with session_scope(eng, write=True) as s:
            p1 = s.scalars(select(S.Plate).where(S.Plate.barcode == P1)).one()
            last = max(p1.inspections, key=lambda i: i.imaged_at)
            by_pos = {im.drop.well.name: im.id for im in last.images}
            queue_images(s, [by_pos["A3"], by_pos["A4"]])
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def plates_dir(tmp_path_factory) -> Path:
    from xtalscreen.drops.render import render_plates

    out = tmp_path_factory.mktemp("web_plates")
    render_plates(out, plates=2, wells=8, size=64, seed=1, inspections=2, progress=False)
    return out


@pytest.fixture(scope="session")
def template_db(plates_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web_db") / "template.sqlite"
    populate(f"sqlite:///{path}", plates_dir)
    return path


@pytest.fixture
def world(template_db, tmp_path) -> World:
    """The world on a fresh copy of the SQLite template."""
    path = tmp_path / "drops.sqlite"
    shutil.copyfile(template_db, path)
    return World(f"sqlite:///{path}", tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def world_any(request, plates_dir, tmp_path) -> World:
    """The world on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("world")
    engine, name = request.getfixturevalue("pg_schema")
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in _drops.PG_URL else "?"
    url = f"{_drops.PG_URL}{sep}options={quote(f'-csearch_path={name}')}"
    populate(url, plates_dir)
    return World(url, tmp_path)


def make_client(world: World, **kwargs):
    from fastapi.testclient import TestClient

    from xtalscreen.web import create_app

    kwargs.setdefault("secret_key", SECRET)
    kwargs.setdefault("thumb_cache", world.tmp / "thumbs")
    app = create_app(world.url, **kwargs)
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def client(world):
    with make_client(world) as c:
        yield c
        c.app.state.engine.dispose()


@pytest.fixture
def client_any(world_any):
    with make_client(world_any) as c:
        yield c
        c.app.state.engine.dispose()


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "page has no CSRF field"
    return m.group(1)


def login(client, name: str, password: str = PASSWORD):
    r = client.get("/login")
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(r.text),
                                    "next": "/plates"})
    assert r.status_code == 303, r.text
    return r


def csrf(client, path: str = "/plates") -> str:
    return csrf_of(client.get(path).text)


@pytest.fixture(scope="session")
def h():
    """Helpers for the tests (test modules cannot import this conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(login=login, csrf=csrf, csrf_of=csrf_of, make_client=make_client,
                                 PASSWORD=PASSWORD, USERS=USERS, MACHINE=MACHINE, P1=P1, P2=P2)
