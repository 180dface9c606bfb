"""Stage 2: fetching images from paths, file:// and http:// with bounded concurrency."""

from __future__ import annotations

import pytest

from tests.drops._servers import dead_port, static_server
from xtalscreen.drops.fetch import fetch_all, local_path
from xtalscreen.errors import ParameterError


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"img{i}.jpg").write_bytes(bytes([i]) * (100 + i))
    return src


def test_local_paths_read_in_place_or_copied(files, tmp_path):
    uris = [str(files / "img0.jpg"), (files / "img1.jpg").as_uri(), str(files / "missing.jpg")]
    got = fetch_all(uris, tmp_path / "dest")
    assert got[0].path == files / "img0.jpg" and not got[0].copied
    assert got[1].path == files / "img1.jpg"
    assert got[2].path is None and got[2].error == "file not found"
    got = fetch_all(uris[:1], tmp_path / "dest", copy_local=True)
    assert got[0].copied and got[0].path.parent == tmp_path / "dest"
    assert got[0].path.read_bytes() == (files / "img0.jpg").read_bytes()
    assert local_path("https://x/y.jpg") is None


def test_http_fetch_is_bounded_and_reports_failures(files, tmp_path):
    with static_server(files, delay=0.1) as (base, stats):
        uris = [f"{base}/img{i}.jpg" for i in range(12)] + [f"{base}/nope.jpg"]
        got = fetch_all(uris, tmp_path / "dest", max_connections=3)
    assert [g.uri for g in got] == uris                      # order kept
    for i, g in enumerate(got[:12]):
        assert g.copied and g.error is None
        assert g.path.read_bytes() == (files / f"img{i}.jpg").read_bytes()
    assert got[12].path is None and "404" in got[12].error
    assert stats["peak"] <= 3 and stats["peak"] >= 2        # bounded, and parallel
    assert not list((tmp_path / "dest").glob("*.part"))


def test_unreachable_url_is_one_failure_not_an_exception(tmp_path):
    got = fetch_all([f"http://127.0.0.1:{dead_port()}/a.jpg", "nosuchproto://x/y.jpg"],
                    tmp_path / "d", timeout=2)
    assert got[0].path is None and "refused" in got[0].error.lower()
    assert got[1].path is None and "nosuchproto" in got[1].error


def test_bad_connection_count(tmp_path):
    with pytest.raises(ParameterError, match="max_connections"):
        fetch_all(["a"], tmp_path, max_connections=0)


def test_other_schemes_go_through_fsspec(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/xts-test/a.jpg", b"abc" * 10)
    got = fetch_all(["memory://xts-test/a.jpg", "memory://xts-test/missing.jpg"], tmp_path / "d")
    assert got[0].copied and got[0].path.read_bytes() == b"abc" * 10
    assert got[1].path is None and got[1].error == "file not found"
    fs.rm("/xts-test", recursive=True)
