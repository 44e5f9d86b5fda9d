"""The explorer as a person uses it: headless Chromium (Debian's package) driven by Playwright.

Loads the page on a synthetic corpus, clicks two positives and one negative (shift-click),
checks that markers, heat map and histogram update and that the top-k ids equal the library's
``exemplar_query`` for the same viewport, exports the result set as GeoParquet and reads it back,
reloads the shareable URL, and saves a screenshot (``GEOEMB_SCREENSHOT=docs/img/explorer.png``
also copies it there). Without a browser the test FAILS with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from geoemb.retrieval.exemplar import exemplar_query
from geoemb.utils.geoparquet import validate_geoparquet

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
INSTALL = "apt-get install -y chromium"


def chromium_path() -> str:
    """The system Chromium, or a test failure naming the install command (never a skip)."""
    for cand in (os.environ.get("GEOEMB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):  # fmt: skip
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    pytest.fail(f"Chromium is not installed; the explorer's browser test needs it: `{INSTALL}`")


@pytest.fixture
def served(small_corpus, tmp_path):
    import uvicorn

    from geoemb.explore import create_app

    app = create_app(small_corpus, cache_dir=tmp_path / "cache")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    t0 = time.time()
    while not server.started:
        assert time.time() - t0 < 60, "explorer server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    th.join(10)


def _wait(page, expr: str, timeout: float = 60.0):
    """Poll a JS expression (CDP evaluate: works under the page's strict CSP)."""
    t0 = time.time()
    while True:
        value = page.evaluate(expr)
        if value:
            return value
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {expr}")
        time.sleep(0.1)


def _isolated_rows(store, k: int) -> list[dict]:
    """Rows whose centroid is covered by no other row's footprint (a click there is unambiguous),
    from two distant parts of the corpus."""
    t = store.read(bbox=(1, 41, 19, 49), columns=["id", "lon", "lat", "bbox"]).to_pylist()
    lon = np.array([r["lon"] for r in t])
    lat = np.array([r["lat"] for r in t])
    b = np.array([[r["bbox"][f] for f in ("xmin", "ymin", "xmax", "ymax")] for r in t])
    out = []
    for i in np.argsort(lon):
        cover = (
            (b[:, 0] <= lon[i]) & (b[:, 2] >= lon[i]) & (b[:, 1] <= lat[i]) & (b[:, 3] >= lat[i])
        )
        if cover.sum() == 1:
            out.append(t[i])
    return [out[0], out[len(out) // 2], out[-1]][:k]


def test_click_search_export_share(served, store, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - dev dependency
        pytest.fail("playwright (python) is missing: `pip install -e '.[dev]'`")
    exe = chromium_path()
    pos_rows, neg_row = _isolated_rows(store, 3)[:2], _isolated_rows(store, 3)[2]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(
                viewport={"width": 1280, "height": 800}, accept_downloads=True
            )
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(served)
            _wait(page, "window.explorer && window.explorer.ui.ready && window.explorer.ui.done")
            _wait(page, "document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
            assert "3,000 rows" in page.inner_text("#corpus-info")

            heats = []
            clicked = []
            for row, shift in [(pos_rows[0], False), (pos_rows[1], False), (neg_row, True)]:
                done = page.evaluate("window.explorer.ui.done")
                x, y = page.evaluate(
                    f"(() => {{ const p = window.explorer.map.latLngToContainerPoint("
                    f"[{row['lat']}, {row['lon']}]); return [p.x, p.y]; }})()"
                )
                box = page.locator("#map").bounding_box()
                if shift:
                    page.keyboard.down("Shift")
                page.mouse.click(box["x"] + x, box["y"] + y)
                if shift:
                    page.keyboard.up("Shift")
                ll = page.evaluate(
                    f"(() => {{ const l = window.explorer.map.containerPointToLatLng([{x}, {y}]); "
                    "return [l.lng, l.lat]; })()"
                )
                clicked.append(ll)
                _wait(page, f"window.explorer.ui.done > {done} && window.explorer.ui.last")
                heats.append(page.evaluate("window.explorer.ui.last.heat.png"))

            state = page.evaluate("window.explorer.state")
            # the clicked rows are the library's point lookups at the clicked coordinates
            want = [store.lookup_point(*ll)["id"][0].as_py() for ll in clicked]
            assert [e["id"] for e in state["pos"]] == want[:2]
            assert [e["id"] for e in state["neg"]] == want[2:]
            assert want == [r["id"] for r in pos_rows + [neg_row]]

            last = page.evaluate("window.explorer.ui.last")
            body = page.evaluate("window.explorer.ui.lastBody")
            lib = exemplar_query(store, positive_ids=want[:2], negative_ids=want[2:],
                                 bbox=body["bbox"], combine="mean", k=50)  # fmt: skip
            assert [r["id"] for r in last["results"]] == lib["id"].to_pylist()
            assert len(last["results"]) == 50
            dom_ids = page.eval_on_selector_all("#results li", "els => els.map(e => +e.dataset.id)")
            assert dom_ids == lib["id"].to_pylist()
            # heat map overlay present and changed with each click; histogram drawn
            assert page.evaluate("document.querySelector('img.heat').naturalWidth") > 0
            assert len(set(heats)) == 3
            ink = page.evaluate(
                "(() => { const c = document.getElementById('histogram');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let s = 0; for (let i = 3; i < d.length; i += 4) s += d[i] > 0; return s; })()"
            )
            assert ink > 100
            assert "click→map" in page.inner_text("#timing")

            # export the result set and read it back
            with page.expect_download() as dl:
                page.click("#export-parquet")
            out = tmp_path / "results.parquet"
            dl.value.save_as(out)
            assert validate_geoparquet(out)["version"] == "1.1.0"
            assert pq.read_table(out)["id"].to_pylist() == lib["id"].to_pylist()

            shot = tmp_path / "explorer.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("GEOEMB_SCREENSHOT"):
                Path(os.environ["GEOEMB_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, os.environ["GEOEMB_SCREENSHOT"])

            # the shareable URL restores the query in a fresh page
            url = page.url
            assert "p=" in url and "n=" in url
            page2 = ctx.new_page()
            page2.goto(url)
            _wait(page2, "window.explorer && window.explorer.ui.last")
            st2 = page2.evaluate("window.explorer.state")
            assert [e["id"] for e in st2["pos"]] == want[:2]
            assert [e["id"] for e in st2["neg"]] == want[2:]
            assert page2.evaluate("window.explorer.ui.last.results.map(r => r.id)") == [
                r["id"] for r in last["results"]]  # fmt: skip
            assert not errors, errors
        finally:
            browser.close()


def test_missing_chromium_fails_with_install_command(monkeypatch):
    monkeypatch.delenv("GEOEMB_CHROMIUM", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Path, "is_file", lambda self: False)
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        chromium_path()
