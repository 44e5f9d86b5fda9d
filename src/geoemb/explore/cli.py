"""``geoemb explore <corpus>``: serve the map explorer on a loopback port and print its URL."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import threading
import time
import webbrowser

from geoemb.errors import GeoembError


def build_parser(prog: str = "geoemb explore") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__)
    ap.add_argument(
        "corpus", help="corpus root with manifest.parquet (geoemb retrieval build-corpus)"
    )
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; anything else exposes the corpus)")  # fmt: skip
    ap.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    ap.add_argument("--basemap-url", default=None,
                    help="optional XYZ tile template drawn under the corpus basemap, e.g. "
                         "http://127.0.0.1:8080/{z}/{x}/{y}.png")  # fmt: skip
    ap.add_argument("--open", action="store_true", help="open the page in the default browser")
    ap.add_argument("--cache-dir", default=None,
                    help="basemap cache parent (default <corpus>/_explore, else ~/.cache)")  # fmt: skip
    ap.add_argument("--max-view-rows", type=int, default=2_000_000,
                    help="refuse viewport queries touching more rows (default 2,000,000)")  # fmt: skip
    ap.add_argument("--max-memory-gb", type=float, default=8.0,
                    help="refuse corpora whose decoded rows need more memory (default 8)")  # fmt: skip
    ap.add_argument("--preload", action="store_true", help="decode every shard at start-up")
    return ap


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the explorer until interrupted; returns the exit status (2 on bad input)."""
    a = build_parser().parse_args(argv)
    import uvicorn

    from geoemb.explore.app import create_app

    loopback = _is_loopback(a.host)
    if not loopback:
        print(f"geoemb explore: WARNING: binding {a.host} serves the corpus to the network",
              file=sys.stderr)  # fmt: skip
    try:
        app = create_app(a.corpus, basemap_url=a.basemap_url, cache_dir=a.cache_dir,
                         max_view_rows=a.max_view_rows,
                         max_memory_bytes=int(a.max_memory_gb * 2**30),
                         allowed_hosts=None if loopback else ["*"], preload=a.preload)  # fmt: skip
    except (GeoembError, FileNotFoundError, ValueError) as e:
        print(f"geoemb explore: error: {e}", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((a.host, a.port))
    except OSError as e:
        print(f"geoemb explore: error: cannot bind {a.host}:{a.port} ({e})", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    host = f"[{a.host}]" if ":" in a.host else a.host
    url = f"http://{host}:{port}/"
    idx = app.state.index
    print(f"geoemb explore: {idx.root} ({idx.n_rows} rows, {len(idx.paths)} shards) at {url}",
          flush=True)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    if a.open:

        def _open() -> None:
            while not server.started:
                time.sleep(0.05)
            webbrowser.open(url)

        threading.Thread(target=_open, daemon=True).start()
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
