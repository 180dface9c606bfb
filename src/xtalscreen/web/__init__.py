"""The drop-scoring web app: plate views (See3), a ranked list, Cinder consensus scoring, admin.

Server-rendered HTML (FastAPI + Jinja2) over the drop database; run it with
``xtalscreen web --db drops.sqlite``. Build it in-process with :func:`create_app`.

- :mod:`xtalscreen.web.app`: the app factory, session cookies, request-size limit, error pages.
- :mod:`xtalscreen.web.routes`: the pages and forms (a table of routes and roles is there).
- :mod:`xtalscreen.web.views`: the database queries behind the pages.
- :mod:`xtalscreen.web.auth`: password hashes, users, plate visibility, signed cookies, CSRF.
- :mod:`xtalscreen.web.thumbs`: the on-disk thumbnail cache.
"""

from __future__ import annotations


def create_app(db_url, **kwargs):
    """Build the web app; see :func:`xtalscreen.web.app.create_app`."""
    from xtalscreen.web.app import create_app as _create

    return _create(db_url, **kwargs)


__all__ = ["create_app"]
