"""Every route of the web app, in-process (FastAPI TestClient): auth, roles, CSRF, bad input."""

from __future__ import annotations

import io
import json
import re

import pytest
from sqlalchemy import func, select

from xtalscreen.drops import schema as S
from xtalscreen.drops.db import session_scope
from xtalscreen.drops.schemes import marco_colour

CRYSTAL, PRECIP, CLEAR, OTHER = (marco_colour(c) for c in ("crystal", "precipitate", "clear", "other"))


def _count(world, model, *where) -> int:
    eng = world.engine()
    try:
        with session_scope(eng) as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))
    finally:
        eng.dispose()


def _cell(html: str, pos: str) -> str:
    m = re.search(rf'<a class="drop[^"]*" id="drop-{re.escape(pos)}"[^>]*>', html)
    assert m, f"drop {pos} not in the page"
    return m.group(0)


# ----------------------------------------------------------------------------- login / session
def test_pages_need_login(client):
    for path in ("/plates", f"/plates/X", "/drops/1", "/ranked", "/cinder", "/admin", "/images/1/thumb"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    assert client.get("/").headers["location"] == "/plates"


def test_login_sets_a_signed_httponly_lax_cookie(client, h):
    r = h.login(client, "sam")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert client.get("/plates").status_code == 200
    # A tampered cookie is an anonymous session.
    value = client.cookies.get("xts_session")
    client.cookies.set("xts_session", value[:-2] + ("00" if value[-2:] != "00" else "11"))
    assert client.get("/plates").status_code == 303


def test_wrong_password_and_unknown_user(client, h):
    token = h.csrf_of(client.get("/login").text)
    for name, pw in (("sam", "wrong-password"), ("nobody", h.PASSWORD)):
        r = client.post("/login", data={"name": name, "password": pw, "csrf": token})
        assert r.status_code == 401 and "Unknown user name or wrong password" in r.text


def test_login_without_csrf_is_rejected(client, h):
    client.get("/login")
    r = client.post("/login", data={"name": "sam", "password": h.PASSWORD})
    assert r.status_code == 403 and "CSRF" in r.text


def test_login_next_is_local_only(client, h):
    token = h.csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": "sam", "password": h.PASSWORD, "csrf": token,
                                    "next": "//evil.example/x"})
    assert r.headers["location"] == "/plates"


def test_logout(client, h):
    h.login(client, "sam")
    token = h.csrf(client)
    assert client.post("/logout", data={"csrf": "x" * 40}).status_code == 403
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/plates").status_code == 303


# ----------------------------------------------------------------------------- plates and roles
@pytest.mark.parametrize("user, visible", [("ada", {"XS001-0001", "XS001-0002"}),
                                           ("sam", {"XS001-0001"}), ("olga", {"XS001-0002"}),
                                           ("sue", set())])
def test_plate_list_shows_only_visible_plates(client, h, user, visible):
    h.login(client, user)
    html = client.get("/plates").text
    assert {b for b in ("XS001-0001", "XS001-0002") if f">{b}</a>" in html} == visible


def test_scorer_cannot_see_another_owners_plate_drops_or_images(client, world, h):
    ids = world.ids(h.P2)
    h.login(client, "sam")
    for path in (f"/plates/{h.P2}", f"/drops/{ids['drop:A1']}", f"/images/{ids['A1']}/thumb",
                 f"/images/{ids['A1']}/full"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "Traceback" not in r.text and "not shared with you" in r.text
    # ... nor in the ranked list
    assert h.P2 not in client.get("/ranked").text


def test_sharing_a_plate_makes_it_visible(client, world, h):
    h.login(client, "ada")
    token = h.csrf(client, "/admin")
    r = client.post("/admin/share", data={"barcode": h.P2, "user_name": "sue", "csrf": token})
    assert r.status_code == 200 and "shared with sue" in r.text
    r = client.post("/admin/share", data={"barcode": "NOPE", "user_name": "sue", "csrf": token})
    assert r.status_code == 404 and "no plate with barcode" in r.text
    with h.make_client(world) as c2:
        h.login(c2, "sue")
        assert c2.get(f"/plates/{h.P2}").status_code == 200


def test_plate_view_borders_humans_top_machine_bottom(client_any, h):
    h.login(client_any, "sam")
    r = client_any.get(f"/plates/{h.P1}")
    assert r.status_code == 200
    html = r.text
    assert html.count('class="drop') == 8
    # A1: sam said crystal, the machine said crystal; A2: sam crystal, machine precipitate.
    a1, a2, a3 = _cell(html, "A1.1"), _cell(html, "A2.1"), _cell(html, "A3.1")
    assert f"conic-gradient(from 270deg, {CRYSTAL} 0deg 180deg, {CRYSTAL} 180deg 360deg)" in a1
    assert f"conic-gradient(from 270deg, {CRYSTAL} 0deg 180deg, {PRECIP} 180deg 360deg)" in a2
    assert "disagree" in a2 and "disagree" not in a1
    assert f"#d9d9d9 0deg 180deg, {CLEAR} 180deg 360deg" in a3  # no human score yet
    assert 'id="legend"' in html and "not scored" in html
    for colour in (CRYSTAL, PRECIP, CLEAR, OTHER):
        assert f"background: {colour}" in html


def test_two_human_scores_split_the_upper_half(client, world, h):
    eng = world.engine()
    ids = world.ids()
    with session_scope(eng, write=True) as s:
        marco = {c.name: c.id for c in s.scalars(select(S.SchemeClass).join(S.ClassScheme)
                                                 .where(S.ClassScheme.name == "marco"))}
        s.add(S.Score(image_id=ids["A1"], scorer_kind=S.ScorerKind.human, scorer="sue",
                      class_id=marco["other"]))
    eng.dispose()
    h.login(client, "sam")
    a1 = _cell(client.get(f"/plates/{h.P1}").text, "A1.1")
    assert f"{CRYSTAL} 0deg 90deg, {OTHER} 90deg 180deg, {CRYSTAL} 180deg 360deg" in a1


def test_plate_view_filters(client, h):
    h.login(client, "sam")
    html = client.get(f"/plates/{h.P1}?cls=crystal").text
    shown = set(re.findall(r'id="drop-([A-H]\d+\.\d)"', html))
    assert shown == {"A1.1", "A2.1", "A5.1"}  # machine crystal (A1, A5) or human crystal (A2)
    html = client.get(f"/plates/{h.P1}?disagree=1").text
    assert set(re.findall(r'id="drop-([A-H]\d+\.\d)"', html)) == {"A2.1"}
    r = client.get(f"/plates/{h.P1}?cls=diamond")
    assert r.status_code == 400 and "cls must be one of" in r.text


def test_plate_view_earlier_inspection(client, world, h):
    h.login(client, "sam")
    html = client.get(f"/plates/{h.P1}").text
    first = re.findall(r'<option value="(\d+)"', html)[0]
    html = client.get(f"/plates/{h.P1}?inspection={first}").text
    assert html.count(f"{CLEAR} 180deg 360deg") == 8  # everything was clear at first
    assert client.get(f"/plates/{h.P1}?inspection=999999").status_code == 404


@pytest.mark.parametrize("path", ["/plates/NO-SUCH-PLATE", "/drops/999999", "/drops/abc",
                                  "/images/999999/thumb", "/no/such/page"])
def test_unknown_ids_give_a_404_page(client, h, path):
    h.login(client, "ada")
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "404 Not found" in r.text and "Traceback" not in r.text


def test_drop_view_time_course_and_probabilities(client_any, world_any, h):
    ids = world_any.ids()
    h.login(client_any, "sam")
    r = client_any.get(f"/drops/{ids['drop:A5']}")
    assert r.status_code == 200
    html = r.text
    assert html.count('class="inspection"') == 2  # both inspections, oldest first
    assert html.index("2026-01-05") < html.index("2026-01-06")
    assert 'id="probabilities"' in html and "60.0 %" in html  # A5: crystal, p = 0.6
    assert html.count("marco 1.0") == 2


def test_ranked_list_orders_by_crystal_probability(client, h):
    h.login(client, "ada")
    html = client.get("/ranked").text
    probs = [float(p) for p in re.findall(r'<td class="p">([\d.]+) %</td>', html)]
    assert probs == sorted(probs, reverse=True) and probs[0] == pytest.approx(60.0)
    assert len(probs) == 16  # one row per drop (2 plates x 8), the latest score of each
    h.login(client, "sam")
    html = client.get("/ranked?limit=3").text
    assert len(re.findall(r'<td class="p">', html)) == 3 and h.P2 not in html


# ----------------------------------------------------------------------------- thumbnails
def test_thumbnails_are_cached(client, world, h, monkeypatch):
    ids = world.ids()
    h.login(client, "sam")
    r = client.get(f"/images/{ids['A1']}/thumb?size=96")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    cached = world.tmp / "thumbs" / f"{ids['A1']}_96.jpg"
    assert cached.is_file()
    from PIL import Image

    with Image.open(io.BytesIO(r.content)) as im:
        assert max(im.size) <= 96

    def boom(*a, **k):
        raise AssertionError("thumbnail regenerated")

    monkeypatch.setattr(Image, "open", boom)
    assert client.get(f"/images/{ids['A1']}/thumb?size=96").content == cached.read_bytes()
    assert client.get(f"/images/{ids['A1']}/thumb?size=97").status_code == 400


def test_missing_image_file_is_a_404_page(client, world, h):
    ids = world.ids()
    eng = world.engine()
    with session_scope(eng, write=True) as s:
        s.get(S.Image, ids["A2"]).uri = str(world.tmp / "gone.jpg")
    eng.dispose()
    h.login(client, "sam")
    r = client.get(f"/images/{ids['A2']}/thumb")
    assert r.status_code == 404 and "image file not found" in r.text


# ----------------------------------------------------------------------------- Cinder
def test_cinder_shows_no_other_scores(client, world, h):
    h.login(client, "sue")  # sue sees nothing: no plate shared
    assert 'id="empty"' in client.get("/cinder").text
    h.login(client, "sam")
    r = client.get("/cinder")
    assert r.status_code == 200 and 'id="score-form"' in r.text
    html = r.text
    item_image = int(re.search(r'src="/images/(\d+)/full"', html).group(1))
    assert item_image == world.ids()["A2"]  # the queued disagreement comes first
    # No probabilities, no machine name, no other people's scores, no border colours.
    assert not re.search(r"\d+(\.\d+)?\s*%", html)
    assert not re.search(r"0\.\d{2}", html)
    for leak in ("marco 1.0", "machine", "conic-gradient", PRECIP, CRYSTAL, "render-truth"):
        assert leak not in html, leak
    assert "keys-help" in html and "<kbd>s</kbd> skip" in html


def test_owner_cannot_use_cinder(client, h):
    h.login(client, "olga")
    assert client.get("/cinder").status_code == 403


def _cinder_form(client, path="/cinder"):
    html = client.get(path).text
    return {"csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1),
            "item_id": re.search(r'name="item_id" value="(\d+)"', html).group(1),
            "key": re.search(r'name="key" value="([^"]+)"', html).group(1)}, html


def test_cinder_score_is_recorded_once(client_any, world_any, h):
    image = world_any.ids()["A2"]
    h.login(client_any, "sam")
    form, _ = _cinder_form(client_any)
    before = _count(world_any, S.Score, S.Score.scorer == "sam", S.Score.image_id == image)
    r = client_any.post("/cinder/score", data=form | {"cls": "precipitate"})
    assert r.status_code == 303 and "scored=precipitate" in r.headers["location"]
    r2 = client_any.post("/cinder/score", data=form | {"cls": "precipitate"})  # double click
    assert r2.status_code == 303
    assert _count(world_any, S.Score, S.Score.scorer == "sam", S.Score.image_id == image) == before + 1
    nxt = client_any.get(r.headers["location"]).text
    assert "Recorded your score: precipitate" in nxt
    assert f'src="/images/{image}/full"' not in nxt  # sam is done with it: the next image


def test_cinder_rejects_class_outside_scheme_and_bad_forms(client, world, h):
    h.login(client, "sam")
    before = _count(world, S.Score, S.Score.scorer == "sam")
    form, _ = _cinder_form(client)
    r = client.post("/cinder/score", data=form | {"cls": "diamond"})
    assert r.status_code == 400 and "diamond&#39; is not in the scoring scheme" in r.text
    r = client.post("/cinder/score", data=form | {"cls": "crystal", "csrf": "0" * 40})
    assert r.status_code == 403 and "CSRF" in r.text
    r = client.post("/cinder/score", data={k: v for k, v in form.items() if k != "csrf"} | {"cls": "crystal"})
    assert r.status_code == 403
    r = client.post("/cinder/score", data=form | {"cls": "crystal", "key": "short"})
    assert r.status_code == 400
    r = client.post("/cinder/score", data=form | {"cls": "crystal", "item_id": "999999"})
    assert r.status_code == 404
    r = client.post("/cinder/score", data={"csrf": form["csrf"]})
    assert r.status_code == 400 and "item_id" in r.text
    assert _count(world, S.Score, S.Score.scorer == "sam") == before
    assert _count(world, S.ScoreSubmission) == 0


def test_cinder_skip_moves_to_the_next_item(client, h):
    h.login(client, "sam")
    form, html = _cinder_form(client)
    first = re.search(r'src="/images/(\d+)/full"', html).group(1)
    html2 = client.get(f"/cinder?after={form['item_id']}").text
    assert re.search(r'src="/images/(\d+)/full"', html2).group(1) != first
    assert "3 image(s) waiting" in html2


def test_cinder_reaches_consensus_under_the_rule(client, world, h):
    image = world.ids()["A3"]
    h.login(client, "ada")
    token = h.csrf(client, "/admin")
    assert client.post("/admin/rule", data={"min_scorers": "2", "min_agreement_pct": "100",
                                            "csrf": token}).status_code == 303
    for user in ("ada", "sam"):
        h.login(client, user)
        form, html = _cinder_form(client)
        for _ in range(3):  # skip until A3 comes up
            if f'src="/images/{image}/full"' in html:
                break
            form, html = _cinder_form(client, f"/cinder?after={form['item_id']}")
        assert f'src="/images/{image}/full"' in html
        assert client.post("/cinder/score", data=form | {"cls": "clear"}).status_code == 303
    eng = world.engine()
    with session_scope(eng) as s:
        label = s.scalars(select(S.ConsensusLabel).where(S.ConsensusLabel.image_id == image)).one()
        assert label.scheme_class.name == "clear" and label.n_scorers == 2
        assert s.scalars(select(S.CinderItem).where(S.CinderItem.image_id == image)).one().done_at
    eng.dispose()


# ----------------------------------------------------------------------------- admin
def test_only_admins_change_schemes_and_rules(client, world, h):
    h.login(client, "sam")
    assert client.get("/admin").status_code == 403
    token = h.csrf(client)
    r = client.post("/admin/rule", data={"min_scorers": "1", "min_agreement_pct": "50", "csrf": token})
    assert r.status_code == 403
    r = client.post("/admin/colour", data={"class_id": "1", "colour": "#000000", "csrf": token})
    assert r.status_code == 403
    r = client.post("/admin/schemes", data={"csrf": token}, files={"file": ("s.json", b"{}")})
    assert r.status_code == 403
    assert _count(world, S.ConsensusRule) == 0


def test_admin_sets_rule_and_colour(client, world, h):
    h.login(client, "ada")
    token = h.csrf(client, "/admin")
    r = client.post("/admin/rule", data={"min_scorers": "4", "min_agreement_pct": "75", "csrf": token})
    assert r.status_code == 303
    assert "at least 4 scorer(s) and 75 % agreement" in client.get("/admin").text
    for bad in ({"min_scorers": "0", "min_agreement_pct": "75"},
                {"min_scorers": "2", "min_agreement_pct": "150"},
                {"min_scorers": "2", "min_agreement_pct": "lots"}):
        r = client.post("/admin/rule", data=bad | {"csrf": token})
        assert r.status_code == 400 and "must be" in r.text
    r = client.post("/admin/rule", data={"min_scorers": "2", "min_agreement_pct": "50", "csrf": "bad"})
    assert r.status_code == 403
    eng = world.engine()
    with session_scope(eng) as s:
        cid = s.scalars(select(S.SchemeClass.id).where(S.SchemeClass.name == "crystal")).first()
    eng.dispose()
    assert client.post("/admin/colour", data={"class_id": cid, "colour": "#ABCDEF",
                                              "csrf": token}).status_code == 303
    assert "#abcdef" in client.get(f"/plates/{h.P1}").text
    r = client.post("/admin/colour", data={"class_id": cid, "colour": "red", "csrf": token})
    assert r.status_code == 400
    r = client.post("/admin/colour", data={"class_id": 999999, "colour": "#000000", "csrf": token})
    assert r.status_code == 404


def test_scheme_upload(client, h):
    from importlib import resources

    h.login(client, "ada")
    token = h.csrf(client, "/admin")
    doc = json.loads(resources.files("xtalscreen.drops").joinpath("data/schemes.json").read_text())
    doc["schemes"].append({"name": "lab", "description": "ours", "classes": [
        {"name": "needles", "colour": "#112233", "maps_to": "crystal"},
        {"name": "nothing", "colour": "#445566", "maps_to": "clear"}]})
    r = client.post("/admin/schemes", data={"csrf": token},
                    files={"file": ("lab.json", json.dumps(doc).encode(), "application/json")})
    assert r.status_code == 200 and "2 class(es) added" in r.text and "needles" in r.text
    r = client.post("/admin/schemes", data={"csrf": token}, files={"file": ("x.json", b"{not json")})
    assert r.status_code == 400 and "not a UTF-8 JSON scheme file" in r.text
    bad = {"schemes": [{"name": "marco", "classes": [{"name": "crystal", "colour": "green"}]}]}
    r = client.post("/admin/schemes", data={"csrf": token}, files={"file": ("b.json", json.dumps(bad).encode())})
    assert r.status_code == 400 and "colour must be" in r.text


def test_large_upload_is_rejected_with_a_message(world, h):
    with h.make_client(world, max_upload_bytes=10_000) as c:
        h.login(c, "ada")
        token = h.csrf(c, "/admin")
        r = c.post("/admin/schemes", data={"csrf": token}, files={"file": ("big.json", b" " * 50_000)})
        assert r.status_code == 413
        assert "Upload too large" in r.text and "the limit is 10,000 bytes" in r.text

        def chunks():  # no Content-Length: counted as it streams
            yield (f'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}\r\n'
                   '--b\r\nContent-Disposition: form-data; name="file"; filename="big.json"\r\n'
                   'Content-Type: application/json\r\n\r\n').encode()
            for _ in range(20):
                yield b" " * 1000

        r = c.post("/admin/schemes", content=chunks(),
                   headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "the limit is 10,000 bytes" in r.text
        assert _count(world, S.ClassScheme) == 4
        c.app.state.engine.dispose()


def test_admin_runs_ashes(client, world, h):
    h.login(client, "ada")
    token = h.csrf(client, "/admin")
    r = client.post("/admin/ashes", data={"since": "all", "uncertain": "2", "csrf": token})
    assert r.status_code == 200 and "2 uncertain" in r.text
    r = client.post("/admin/ashes", data={"since": "soon", "uncertain": "0", "csrf": token})
    assert r.status_code == 400 and "--since must be" in r.text


def test_app_needs_an_initialised_database(tmp_path):
    from xtalscreen.errors import InputError
    from xtalscreen.web import create_app

    with pytest.raises(InputError, match="no such database file"):
        create_app(tmp_path / "missing.sqlite", secret_key="k" * 32)
    import sqlite3

    sqlite3.connect(tmp_path / "empty.sqlite").close()
    with pytest.raises(InputError, match="no xtalscreen tables"):
        create_app(tmp_path / "empty.sqlite", secret_key="k" * 32)


def test_short_secret_key_is_refused(world):
    from xtalscreen.errors import ParameterError
    from xtalscreen.web import create_app

    with pytest.raises(ParameterError, match="secret_key"):
        create_app(world.url, secret_key="short")


def test_ranked_list_uses_the_latest_machine_score(client, world, h):
    ids = world.ids()
    eng = world.engine()
    with session_scope(eng, write=True) as s:
        clear = s.scalars(select(S.SchemeClass).join(S.ClassScheme).where(
            S.ClassScheme.name == "marco", S.SchemeClass.name == "clear")).one()
        s.add(S.Score(image_id=ids["A5"], scorer_kind=S.ScorerKind.machine, scorer="marco",
                      model_version="2.0", class_id=clear.id,
                      probabilities={"crystal": 0.01, "precipitate": 0.01, "clear": 0.97, "other": 0.01}))
    eng.dispose()
    h.login(client, "sam")
    html = client.get("/ranked").text
    rows = re.findall(r'<td class="p">([\d.]+) %</td>\s*<td><a [^>]*>[^<]*</a></td>\s*'
                      r'<td><a href="/drops/(\d+)">([A-H]\d+\.\d)</a>', html)
    by_pos = {pos: float(p) for p, _d, pos in rows}
    assert by_pos["A5.1"] == pytest.approx(1.0)  # the new score (1 %), not the old 60 %
    assert [p for p, _d, _pos in rows] == sorted((p for p, _d, _pos in rows), key=float, reverse=True)
