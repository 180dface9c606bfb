"""Users, password hashes, signed session cookies and CSRF tokens (standard library only).

- Passwords are stored as ``scrypt$N$r$p$salt$hash`` (``hashlib.scrypt``, 16-byte random salt,
  N = 2**14, r = 8, p = 1); :func:`verify_password` compares in constant time.
- The session cookie carries ``{user id, nonce, issued}`` as base64 JSON plus an HMAC-SHA256
  signature with the server's secret key; it is HttpOnly and SameSite=Lax, and expires after
  :data:`SESSION_MAX_AGE_S`. Logging in starts a new nonce (no session fixation).
- Every form carries a CSRF token, HMAC(secret, nonce): a form from another site, or a stale
  or edited one, fails the check.

Roles (:class:`xtalscreen.drops.schema.Role`): ``admin`` sees every plate and may change class
schemes, colours, consensus rules and plate shares; ``scorer`` sees the plates it owns
(``Plate.owner`` = user name) or that are shared with it, and scores in Cinder; ``owner`` sees
its own and shared plates and does not score in Cinder.

Examples
--------
>>> h = hash_password("correct horse")
>>> verify_password("correct horse", h), verify_password("wrong", h)
(True, False)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from xtalscreen.drops import schema as S
from xtalscreen.errors import InputError, ParameterError

#: scrypt cost parameters (about 50 ms and 16 MiB per hash).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
#: Sessions older than this (seconds) are ignored: log in again.
SESSION_MAX_AGE_S = 12 * 3600
MIN_PASSWORD_LENGTH = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}$")


# ----------------------------------------------------------------------------- passwords
def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``password`` in the stored text form."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32,
                            maxmem=128 * r * n * 2)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (from :func:`hash_password`)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        n, r, p = int(n), int(r), int(p)
        calc = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=n, r=r, p=p,
                              dklen=32, maxmem=128 * r * n * 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(calc.hex(), digest)


# ----------------------------------------------------------------------------- users
def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParameterError(f"user name must be 1-128 letters, digits, '_', '.', '@' or '-' "
                             f"(starting with a letter or digit), got {name!r}")
    return name


def check_role(role) -> S.Role:
    try:
        return S.Role(str(getattr(role, "value", role)))
    except ValueError:
        raise ParameterError(f"--role must be one of {', '.join(r.value for r in S.Role)}, "
                             f"got {role!r}") from None


def add_user(session: Session, name: str, *, role, password: str, update: bool = False) -> S.User:
    """Create user ``name`` (or, with ``update``, change an existing one's role and password)."""
    check_user_name(name)
    role = check_role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ParameterError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    user = session.scalars(select(S.User).where(S.User.name == name)).first()
    if user is not None and not update:
        raise ParameterError(f"user {name!r} exists already; use --update to change the role "
                             f"or password")
    if user is None:
        user = S.User(name=name)
        session.add(user)
    user.role, user.password_hash, user.active = role, hash_password(password), True
    session.flush()
    return user


def authenticate(session: Session, name: str, password: str) -> S.User | None:
    """The active user ``name`` if ``password`` is right, else None (same time either way)."""
    user = session.scalars(select(S.User).where(S.User.name == name)).first()
    if user is None or not user.active:
        verify_password(password, _dummy_hash())  # do not reveal which names exist by timing
        return None
    return user if verify_password(password, user.password_hash) else None


def share_plate(session: Session, barcode: str, user_name: str) -> bool:
    """Let ``user_name`` see plate ``barcode``; return False if it could already."""
    plate = session.scalars(select(S.Plate).where(S.Plate.barcode == barcode)).first()
    if plate is None:
        raise InputError(f"no plate with barcode {barcode!r}")
    user = session.scalars(select(S.User).where(S.User.name == user_name)).first()
    if user is None:
        raise InputError(f"no user called {user_name!r}; add it with 'xtalscreen drops adduser'")
    exists = session.scalars(select(S.PlateShare).where(S.PlateShare.plate_id == plate.id,
                                                        S.PlateShare.user_id == user.id)).first()
    if exists is not None or plate.owner == user.name:
        return False
    session.add(S.PlateShare(plate_id=plate.id, user_id=user.id))
    session.flush()
    return True


def visible_plates(user: S.User):
    """WHERE clause on :class:`Plate` for the plates ``user`` may see (admins: all)."""
    if user.role == S.Role.admin:
        return S.Plate.id.is_not(None)
    shared = select(S.PlateShare.plate_id).where(S.PlateShare.user_id == user.id)
    return (S.Plate.owner == user.name) | S.Plate.id.in_(shared)


# ----------------------------------------------------------------------------- sessions
@dataclass
class WebSession:
    """The signed cookie's content: user id (None: anonymous), CSRF nonce, issue time."""

    user_id: int | None
    nonce: str
    issued: float

    @classmethod
    def new(cls, user_id: int | None = None) -> WebSession:
        return cls(user_id, secrets.token_urlsafe(18), time.time())


def _sign(secret: bytes, data: bytes) -> str:
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def dump_session(sess: WebSession, secret: bytes) -> str:
    body = json.dumps({"u": sess.user_id, "n": sess.nonce, "t": int(sess.issued)},
                      separators=(",", ":")).encode()
    data = base64.urlsafe_b64encode(body).rstrip(b"=")
    return data.decode() + "." + _sign(secret, data)


def load_session(cookie: str | None, secret: bytes, *, max_age: float = SESSION_MAX_AGE_S,
                 now: float | None = None) -> WebSession | None:
    """The session in ``cookie``, or None if absent, tampered with or expired."""
    if not cookie or "." not in cookie:
        return None
    data, sig = cookie.rsplit(".", 1)
    if not hmac.compare_digest(_sign(secret, data.encode()), sig):
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        sess = WebSession(doc["u"], str(doc["n"]), float(doc["t"]))
    except (ValueError, KeyError, TypeError):
        return None
    if sess.user_id is not None and not isinstance(sess.user_id, int):
        return None
    if (now or time.time()) - sess.issued > max_age:
        return None
    return sess


def csrf_token(sess: WebSession, secret: bytes) -> str:
    """The CSRF token of forms rendered for ``sess``."""
    return _sign(secret, b"csrf|" + sess.nonce.encode())[:40]


def check_csrf(sess: WebSession, secret: bytes, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(sess, secret), str(token))


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("not a real password")


__all__ = ["hash_password", "verify_password", "add_user", "authenticate", "share_plate",
           "visible_plates", "WebSession", "dump_session", "load_session", "csrf_token",
           "check_csrf", "check_role", "check_user_name", "SESSION_MAX_AGE_S"]
