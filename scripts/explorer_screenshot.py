#!/usr/bin/env python
"""Screenshot of ``geoemb explore`` after the README's three clicks (docs/img/explorer.png).

Serves the corpus on 127.0.0.1, opens it in headless Chromium (Debian's package; Playwright's
own browser download is not used), clicks the rows nearest to two positive points and
shift-clicks one negative, and saves the page.

    python -m geoemb.retrieval synth --out data/synthetic/retrieval_corpus --n 20000 --dim 128
    python -m geoemb.retrieval build-corpus --input data/synthetic/retrieval_corpus \\
        --out data/corpus --precision 2 --dim 128
    python scripts/explorer_screenshot.py data/corpus docs/img/explorer.png
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _wait(page, expr: str, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not page.evaluate(expr):
        if time.time() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {expr}")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--view", default="4/22/15", help="zoom/lat/lon of the map")
    ap.add_argument("--pos", default="12,22;16,20", help="positive points lon,lat;lon,lat")
    ap.add_argument("--neg", default="30,8", help="negative points lon,lat")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    import uvicorn
    from playwright.sync_api import sync_playwright

    from geoemb.explore import create_app

    app = create_app(a.corpus, cache_dir=tempfile.mkdtemp(prefix="geoemb-shot-"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/#m={a.view}"
    index = app.state.index

    def nearest(spec: str) -> list[tuple[float, float]]:
        out = []
        for pt in filter(None, spec.split(";")):
            lon, lat = (float(v) for v in pt.split(","))
            rows = index.rows((max(-180, lon - 5), max(-90, lat - 5), min(180, lon + 5),
                               min(90, lat + 5)))  # fmt: skip
            i = int(((rows.lon - lon) ** 2 + (rows.lat - lat) ** 2).argmin())
            out.append((float(rows.lon[i]), float(rows.lat[i])))
        return out

    clicks = [(p, False) for p in nearest(a.pos)] + [(p, True) for p in nearest(a.neg)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(url)
        _wait(page, "!!(window.explorer && window.explorer.ui.ready && window.explorer.ui.done)")
        _wait(page, "document.querySelectorAll('.leaflet-tile-loaded').length >= 6")
        for (lon, lat), shift in clicks:
            done = page.evaluate("window.explorer.ui.done")
            x, y = page.evaluate(
                f"(() => {{ const q = window.explorer.map.latLngToContainerPoint([{lat}, {lon}]);"
                " return [q.x, q.y]; })()"
            )
            if shift:
                page.keyboard.down("Shift")
            page.mouse.click(x, y)
            if shift:
                page.keyboard.up("Shift")
            _wait(page, f"window.explorer.ui.done > {done}")
        time.sleep(1.0)
        page.screenshot(path=a.out)
        print(page.inner_text("#timing"))
        browser.close()
    server.should_exit = True
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
