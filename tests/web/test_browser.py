"""The web app in a real headless browser (Debian ``chromium`` + ``chromium-driver``, Selenium).

Starts uvicorn on a free local port, logs in, loads a plate view, checks the border colours in
a screenshot (human score over the top, machine score underneath), and scores two images in
Cinder with the keyboard. Skips where chromium is missing, except under CI (``CI=true``), where
it fails: CI must ``apt-get install chromium chromium-driver``.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time

import pytest
from sqlalchemy import select

from xtalscreen.drops import schema as S
from xtalscreen.drops.db import session_scope
from xtalscreen.drops.schemes import marco_colour

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.slow


def _need_browser():
    missing = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        msg = f"headless browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(msg + " — CI must install them")
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(world, h):
    import uvicorn

    _need_browser()
    from xtalscreen.web import create_app

    app = create_app(world.url, secret_key="browser-test-secret-0123456789", thumb_cache=world.tmp / "thumbs")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        if time.monotonic() > deadline or not t.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)
    app.state.engine.dispose()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--force-device-scale-factor=1", "--window-size=1400,1000",
                 "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _rgb(hex_colour: str):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _close(a, b, tol=24) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a[:3], b[:3]))


def _wait(drv, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_plate_view_and_cinder_in_chromium(server, browser, world, h, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    drv = browser
    drv.get(server + "/plates")
    assert "/login" in drv.current_url
    drv.find_element(By.ID, "name").send_keys("sam")
    drv.find_element(By.ID, "password").send_keys(h.PASSWORD)
    drv.find_element(By.ID, "login").click()
    assert _wait(drv, lambda: drv.current_url.endswith("/plates")
                 and drv.execute_script("return document.readyState") == "complete")

    # navigate only once the login's redirect has finished loading: a get() issued while it is
    # still in flight can be overtaken by it (the browser then stays on /plates)
    drv.get(f"{server}/plates/{h.P1}")
    if not drv.find_elements(By.ID, "drop-A1.1"):
        drv.get(f"{server}/plates/{h.P1}")
    # the plate's drops are on the page (an empty image list would pass the next wait at once)
    assert _wait(drv, lambda: drv.find_elements(By.ID, "drop-A1.1")), \
        f"no drop A1.1 at {drv.current_url}: {drv.page_source[:300]}"
    assert _wait(drv, lambda: drv.execute_script(
        "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"))
    png = drv.get_screenshot_as_png()
    (tmp_path / "plate.png").write_bytes(png)
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    crystal, precip, clear = (_rgb(marco_colour(c)) for c in ("crystal", "precipitate", "clear"))
    unscored = _rgb("#d9d9d9")
    # A2: sam said crystal (top), the machine said precipitate (bottom); A3: unscored top, clear.
    for pos, top, bottom in (("A1.1", crystal, crystal), ("A2.1", crystal, precip),
                             ("A3.1", unscored, clear)):
        r = drv.find_element(By.ID, f"drop-{pos}").rect
        cx = r["x"] + r["width"] / 2
        got_top = shot.getpixel((int(cx), int(r["y"] + 3)))
        got_bottom = shot.getpixel((int(cx), int(r["y"] + r["height"] - 4)))
        assert _close(got_top, top), (pos, "top", got_top, top)
        assert _close(got_bottom, bottom), (pos, "bottom", got_bottom, bottom)
        # 9 o'clock is where the human half starts: just above it is human, just below machine.
        left = int(r["x"] + 3)
        cy = r["y"] + r["height"] / 2
        assert _close(shot.getpixel((left, int(cy - 12))), top)
        assert _close(shot.getpixel((left, int(cy + 12))), bottom)

    # Cinder: two images scored with the keyboard (2 = precipitate, then c = crystal).
    drv.get(server + "/cinder")
    first = drv.find_element(By.ID, "cinder-image").get_attribute("src")
    drv.find_element(By.TAG_NAME, "body").send_keys("2")
    assert _wait(drv, lambda: "Recorded your score: precipitate" in drv.page_source)
    second = drv.find_element(By.ID, "cinder-image").get_attribute("src")
    assert second != first
    drv.find_element(By.TAG_NAME, "body").send_keys("c")
    assert _wait(drv, lambda: "Recorded your score: crystal" in drv.page_source)
    drv.save_screenshot(str(tmp_path / "cinder.png"))

    image_ids = [int(u.rsplit("/", 2)[-2]) for u in (first, second)]
    eng = world.engine()
    try:
        with session_scope(eng) as s:
            rows = s.execute(select(S.Score.image_id, S.SchemeClass.name)
                             .join(S.SchemeClass, S.SchemeClass.id == S.Score.class_id)
                             .join(S.ScoreSubmission, S.ScoreSubmission.score_id == S.Score.id)
                             .where(S.Score.scorer == "sam")).all()
    finally:
        eng.dispose()
    assert sorted(rows) == sorted(zip(image_ids, ["precipitate", "crystal"]))
