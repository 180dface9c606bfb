"""Stage 2 of the pipeline: fetch drop images to node-local storage with bounded concurrency.

URIs are local paths, ``file://`` URLs, ``http(s)://`` URLs (the standard library's urllib, so
no aiohttp is needed), or anything else fsspec opens (``sftp://`` needs paramiko, ``s3://``
needs s3fs: install those where used, they are not xtalscreen dependencies). At most ``max_connections`` transfers run at once (C4 limited itself to
10 so as not to overload the imager's file server).

Local files are read where they are unless ``copy_local=True`` (copying a file already on this
node only costs time); remote files are written to ``dest`` under a name derived from the URI.
A file that cannot be fetched gives a :class:`Fetched` with ``error`` set (unreachable host,
HTTP 404, missing file, ...); it never stops the others.

Examples
--------
>>> # got = fetch_all(["/data/a.jpg", "https://imager/b.jpg"], "/scratch/run1")
>>> # [(g.uri, g.path, g.error) for g in got]
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from xtalscreen.errors import ParameterError

#: Default number of simultaneous connections (C4's limit).
MAX_CONNECTIONS = 10
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


@dataclass
class Fetched:
    """One URI's outcome: the local ``path`` (None on failure), ``error`` (reason) and timing."""

    uri: str
    path: Path | None
    error: str | None = None
    copied: bool = False
    seconds: float = 0.0
    nbytes: int = 0


def local_path(uri: str) -> Path | None:
    """The local path of a plain path or ``file://`` URI, else None."""
    if not _URL.match(uri):
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return None


def _dest_name(uri: str) -> str:
    tail = Path(urlparse(uri).path).name or "image"
    return f"{hashlib.sha1(uri.encode()).hexdigest()[:12]}_{tail}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def fetch_one(uri: str, dest: Path, *, copy_local: bool = False, timeout: float = 30.0) -> Fetched:
    """Fetch one URI into folder ``dest`` (see the module docstring)."""
    t0 = time.perf_counter()
    try:
        lp = local_path(uri)
        if lp is not None:
            if not lp.is_file():
                return Fetched(uri, None, "file not found" if not lp.exists() else "not a file",
                               seconds=time.perf_counter() - t0)
            if not copy_local:
                return Fetched(uri, lp, None, False, time.perf_counter() - t0, lp.stat().st_size)
            target = dest / _dest_name(uri)
            shutil.copyfile(lp, target)
            return Fetched(uri, target, None, True, time.perf_counter() - t0, target.stat().st_size)
        target = dest / _dest_name(uri)
        tmp = target.with_name(target.name + ".part")
        scheme = urlparse(uri).scheme.lower()
        if scheme in ("http", "https"):
            src_cm = urllib.request.urlopen(uri, timeout=timeout)
        else:
            import fsspec

            try:
                src_cm = fsspec.open(uri, "rb").open()
            except (ImportError, ValueError) as exc:
                return Fetched(uri, None, f"cannot open {scheme}:// URLs here ({_reason(exc)}); "
                                          f"install the fsspec backend for {scheme}",
                               seconds=time.perf_counter() - t0)
        with src_cm as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(target)
        return Fetched(uri, target, None, True, time.perf_counter() - t0, target.stat().st_size)
    except Exception as exc:  # any transport error is this image's failure, never the run's
        return Fetched(uri, None, _reason(exc), seconds=time.perf_counter() - t0)


def fetch_all(uris: list[str], dest: str | Path, *, max_connections: int = MAX_CONNECTIONS,
              copy_local: bool = False, timeout: float = 30.0) -> list[Fetched]:
    """Fetch ``uris`` into folder ``dest`` with at most ``max_connections`` at once; same order.

    Parameters
    ----------
    uris : list of str
        Local paths or URLs.
    dest : str or Path
        Node-local folder for the copies (created).
    max_connections : int
        Most simultaneous transfers (>= 1).
    copy_local : bool
        Copy local files too (default: read them in place).
    timeout : float
        Seconds per HTTP transfer.
    """
    if isinstance(max_connections, bool) or int(max_connections) < 1:
        raise ParameterError(f"max_connections must be >= 1, got {max_connections!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if not uris:
        return []
    n = min(int(max_connections), len(uris))
    if n == 1:
        return [fetch_one(u, dest, copy_local=copy_local, timeout=timeout) for u in uris]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="fetch") as pool:
        return list(pool.map(lambda u: fetch_one(u, dest, copy_local=copy_local, timeout=timeout), uris))
