"""Routes of the web app: login, plate list, plate view (See3), drop view, ranked list, Cinder,
thumbnails and the admin page. All writes go through ``_write`` (one transaction each) and
every POST form is CSRF-checked.

==========================  ======================================================  ===========
route                       what                                                    who
==========================  ======================================================  ===========
GET/POST ``/login``         log in                                                  anyone
POST ``/logout``            log out                                                 logged in
GET ``/plates``             plates the user may see (``?q=`` barcode filter)        logged in
GET ``/plates/{barcode}``   plate view (``?inspection=ID&cls=crystal&disagree=1``)  logged in
GET ``/drops/{id}``         one drop: images over time, all scores, probabilities   logged in
GET ``/ranked``             drops most likely to hold crystals first                logged in
GET ``/images/{id}/thumb``  cached JPEG (``?size=128``); ``/full`` is 1024 px       logged in
GET ``/cinder``             next queued image to score (no other scores shown)      scorer, admin
POST ``/cinder/score``      record a score (idempotent by form key)                 scorer, admin
GET ``/admin``              consensus rule, class colours, scheme upload, shares    admin
POST ``/admin/...``         ``rule``, ``colour``, ``schemes``, ``share``, ``ashes``  admin
==========================  ======================================================  ===========
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from xtalscreen.drops import schema as S
from xtalscreen.drops.schemes import MARCO_CLASSES, normalise_label
from xtalscreen.errors import XtalscreenError
from xtalscreen.web import views
from xtalscreen.web.app import LoginRequired
from xtalscreen.web.auth import WebSession, authenticate, check_csrf, csrf_token

router = APIRouter()

#: Cinder's keyboard: MARCO class -> keys (digit, letter); "s" skips.
KEYS = {"crystal": ("1", "c"), "precipitate": ("2", "p"), "clear": ("3", "l"), "other": ("4", "o")}
SKIP_KEY = "s"
_KEY = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _db(request: Request, *, write: bool = False):
    from xtalscreen.drops.db import session_scope

    with session_scope(request.app.state.engine, write=write) as session:
        yield session


def _user(request: Request, *roles: S.Role) -> S.User:
    """The logged-in user (LoginRequired if none); 403 if its role is not in ``roles``."""
    sess = request.state.session
    user = None
    if sess.user_id is not None:
        with _db(request) as session:
            user = session.get(S.User, sess.user_id)
    if user is None or not user.active:
        raise LoginRequired()
    request.state.user = user
    if roles and user.role not in roles:
        raise HTTPException(403, f"Your role ({user.role.value}) may not do this; "
                                 f"it needs: {', '.join(r.value for r in roles)}.")
    return user


def _csrf(request: Request, token: str | None) -> None:
    if not check_csrf(request.state.session, request.app.state.secret, token):
        raise HTTPException(403, "The form was not accepted (CSRF check failed: it is stale, was "
                                 "sent from another site or was altered). Reload the page and try again.")


def _render(request: Request, name: str, status: int = 200, **ctx):
    ctx.setdefault("user", getattr(request.state, "user", None))
    ctx["csrf"] = csrf_token(request.state.session, request.app.state.secret)
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status)


def _not_found(exc: views.NotFound):
    return HTTPException(404, str(exc))


def _safe_next(nxt: str | None) -> str:
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/plates"
    return nxt


# ----------------------------------------------------------------------------- login
@router.get("/")
def home():
    return RedirectResponse("/plates", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/plates"):
    return _render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, name: str = Form(""), password: str = Form(""),
          csrf: str = Form(""), next: str = Form("/plates")):
    _csrf(request, csrf)
    with _db(request) as session:
        user = authenticate(session, name.strip(), password)
    if user is None:
        return _render(request, "login.html", 401, next=_safe_next(next),
                       error="Unknown user name or wrong password.")
    request.state.session = WebSession.new(user.id)  # new nonce: no session fixation
    request.state.session_changed = True
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")):
    _csrf(request, csrf)
    request.state.session = WebSession.new()
    request.state.session_changed = True
    return RedirectResponse("/login", status_code=303)


# ----------------------------------------------------------------------------- See3
@router.get("/plates")
def plates(request: Request, q: str = "", page: int = 1):
    user = _user(request)
    page = max(1, page)
    with _db(request) as session:
        rows, total = views.list_plates(session, user, q=q.strip(), page=page)
    return _render(request, "plates.html", plates=rows, total=total, page=page, q=q,
                   pages=max(1, -(-total // 50)))


@router.get("/plates/{barcode}")
def plate(request: Request, barcode: str, inspection: int | None = None, cls: str = "",
          disagree: bool = False):
    user = _user(request)
    cls = normalise_label(cls) if cls else ""
    if cls and cls not in MARCO_CLASSES:
        raise HTTPException(400, f"cls must be one of {', '.join(MARCO_CLASSES)}, got {cls!r}.")
    try:
        with _db(request) as session:
            pv = views.plate_view(session, user, barcode, inspection_id=inspection,
                                  cls=cls or None, disagree=disagree)
    except views.NotFound as exc:
        raise _not_found(exc) from None
    return _render(request, "plate.html", pv=pv, cls=cls, disagree=disagree, classes=MARCO_CLASSES)


@router.get("/drops/{drop_id}")
def drop(request: Request, drop_id: int):
    user = _user(request)
    try:
        with _db(request) as session:
            dv = views.drop_view(session, user, drop_id)
    except views.NotFound as exc:
        raise _not_found(exc) from None
    return _render(request, "drop.html", dv=dv)


@router.get("/ranked")
def ranked(request: Request, limit: int = 100):
    user = _user(request)
    limit = min(max(1, limit), 1000)
    with _db(request) as session:
        rows = views.ranked(session, user, limit=limit)
    return _render(request, "ranked.html", rows=rows, limit=limit)


def _image_file(request: Request, image_id: int, size: int):
    from xtalscreen.web.thumbs import SIZES, thumbnail

    user = _user(request)
    if size not in SIZES:
        raise HTTPException(400, f"size must be one of {', '.join(map(str, SIZES))}, got {size}.")
    try:
        with _db(request) as session:
            uri = views.image_for_user(session, user, image_id).uri
    except views.NotFound as exc:
        raise _not_found(exc) from None
    try:
        path = thumbnail(request.app.state.thumb_cache, image_id, uri, size)
    except XtalscreenError as exc:
        raise HTTPException(404, f"Image {image_id}: {exc}") from None
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


@router.get("/images/{image_id}/thumb")
def thumb(request: Request, image_id: int, size: int = 128):
    return _image_file(request, image_id, size)


@router.get("/images/{image_id}/full")
def full(request: Request, image_id: int):
    return _image_file(request, image_id, 1024)


# ----------------------------------------------------------------------------- Cinder
@router.get("/cinder")
def cinder(request: Request, after: int = 0, scored: str = ""):
    user = _user(request, S.Role.admin, S.Role.scorer)
    with _db(request) as session:
        task = views.cinder_next(session, user, after=after)
        choices = views.marco_choices(session)
    return _render(request, "cinder.html", task=task, choices=choices, keys=KEYS,
                   skip_key=SKIP_KEY, key=secrets.token_urlsafe(24),
                   scored=scored if scored in MARCO_CLASSES else "")


@router.post("/cinder/score")
def cinder_score(request: Request, item_id: int = Form(...), cls: str = Form(""),
                 key: str = Form(""), csrf: str = Form("")):
    from xtalscreen.drops.consensus import update_consensus

    user = _user(request, S.Role.admin, S.Role.scorer)
    _csrf(request, csrf)
    if not _KEY.match(key):
        raise HTTPException(400, "The form has no valid submission key; reload the Cinder page.")
    try:
        with _db(request, write=True) as session:
            item = views.cinder_item(session, user, item_id)
            if session.get(S.ScoreSubmission, key) is not None:  # sent twice: counted once
                return RedirectResponse(f"/cinder?after={item_id}", status_code=303)
            choice = {c.name: c for c in views.marco_choices(session)}.get(normalise_label(cls))
            if choice is None:
                raise HTTPException(400, f"Class {cls!r} is not in the scoring scheme (marco); "
                                         f"choose one of: {', '.join(MARCO_CLASSES)}.")
            score = S.Score(image_id=item.image_id, scorer_kind=S.ScorerKind.human,
                            scorer=user.name, class_id=choice.id, scored_at=S.now_utc())
            session.add(score)
            session.flush()
            session.add(S.ScoreSubmission(key=key, user_id=user.id, image_id=item.image_id,
                                          score_id=score.id))
            session.flush()
            update_consensus(session, item.image_id)
    except views.NotFound as exc:
        raise _not_found(exc) from None
    except IntegrityError:  # the same key raced in from a second click
        pass
    return RedirectResponse(f"/cinder?after={item_id}&scored={choice.name}", status_code=303)


# ----------------------------------------------------------------------------- admin
def _admin_page(request: Request, status: int = 200, message: str | None = None):
    from xtalscreen.drops.consensus import current_rule

    with _db(request) as session:
        rule, _ = current_rule(session)
        schemes = session.scalars(select(S.ClassScheme).order_by(S.ClassScheme.name)).all()
        table = [(s.name, [(c.id, c.name, c.colour) for c in s.classes]) for s in schemes]
        counts = {"queued": session.query(S.CinderItem).filter(S.CinderItem.done_at.is_(None)).count(),
                  "agreed": session.query(S.ConsensusLabel).count()}
    return _render(request, "admin.html", status, rule=rule, schemes=table, counts=counts,
                   message=message, max_upload=request.app.state.max_upload_hint)


@router.get("/admin")
def admin(request: Request):
    _user(request, S.Role.admin)
    return _admin_page(request)


@router.post("/admin/rule")
def admin_rule(request: Request, min_scorers: str = Form(""), min_agreement_pct: str = Form(""),
               csrf: str = Form("")):
    from xtalscreen.drops.consensus import set_rule

    user = _user(request, S.Role.admin)
    _csrf(request, csrf)
    try:
        pct = float(min_agreement_pct)
    except ValueError:
        raise HTTPException(400, f"min_agreement_pct must be a number (percent), got {min_agreement_pct!r}.") from None
    try:
        with _db(request, write=True) as session:
            set_rule(session, min_scorers=min_scorers, min_agreement=pct / 100.0, by=user.name)
    except XtalscreenError as exc:
        raise HTTPException(400, str(exc)) from None
    return RedirectResponse("/admin", status_code=303)


@router.post("/admin/colour")
def admin_colour(request: Request, class_id: int = Form(...), colour: str = Form(""),
                 csrf: str = Form("")):
    _user(request, S.Role.admin)
    _csrf(request, csrf)
    if not _HEX.match(colour):
        raise HTTPException(400, f"colour must look like #1a2b3c, got {colour!r}.")
    with _db(request, write=True) as session:
        row = session.get(S.SchemeClass, class_id)
        if row is None:
            raise HTTPException(404, f"no scheme class with id {class_id}")
        row.colour = colour.lower()
    return RedirectResponse("/admin", status_code=303)


@router.post("/admin/schemes")
def admin_schemes(request: Request, file: UploadFile = File(...), csrf: str = Form("")):
    from xtalscreen.drops.db import sync_schemes
    from xtalscreen.drops.schemes import _parse

    _user(request, S.Role.admin)
    _csrf(request, csrf)
    name = file.filename or "upload"
    try:
        doc = json.loads(file.file.read().decode("utf-8"))
        schemes = _parse(doc, name)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(400, f"{name}: not a UTF-8 JSON scheme file ({exc}).") from None
    except XtalscreenError as exc:
        raise HTTPException(400, str(exc)) from None
    with _db(request, write=True) as session:
        added = sync_schemes(session, schemes)
    return _admin_page(request, message=f"Loaded {len(schemes)} scheme(s) from {name}; {added} class(es) added.")


@router.post("/admin/share")
def admin_share(request: Request, barcode: str = Form(""), user_name: str = Form(""),
                csrf: str = Form("")):
    from xtalscreen.web.auth import share_plate

    _user(request, S.Role.admin)
    _csrf(request, csrf)
    try:
        with _db(request, write=True) as session:
            new = share_plate(session, barcode.strip(), user_name.strip())
    except XtalscreenError as exc:
        raise HTTPException(404, str(exc)) from None
    return _admin_page(request, message=f"Plate {barcode} {'shared with' if new else 'was already visible to'} {user_name}.")


@router.post("/admin/ashes")
def admin_ashes(request: Request, since: str = Form("7d"), uncertain: str = Form("0"),
                csrf: str = Form("")):
    from xtalscreen.drops.ashes import queue_ashes

    _user(request, S.Role.admin)
    _csrf(request, csrf)
    try:
        n = int(uncertain or 0)
    except ValueError:
        raise HTTPException(400, f"uncertain must be a whole number, got {uncertain!r}.") from None
    try:
        rep = queue_ashes(request.app.state.engine, since=since or None, uncertain=n)
    except XtalscreenError as exc:
        raise HTTPException(400, str(exc)) from None
    return _admin_page(request, message="Ashes: " + rep.summary() + ".")
