"""A static HTTP server on 127.0.0.1 with byte ranges and byte counting (tests and benchmarks).

``python -m http.server`` ignores ``Range``; object stores honour it, and GDAL's ``/vsicurl/``
relies on it. :class:`RangeServer` serves a folder with single-range ``206`` answers (``416``
past the end), ``HEAD``, and counts requests and body bytes per path, so a test can assert
that reading one window of a large COG fetched only a small fraction of the file. Failures can
be injected per path (``server.fail("a.tif", 404)``).

The server runs in a child *process* (this file run as a script, standard library only): GDAL
holds the GIL in parts of a read, so a server thread in the reading process would stall (and
time out) GDAL's own requests. Counters and fault
injection go through control URLs (``/__geoemb__/stats``, ``/reset``, ``/fail``).

Examples
--------
>>> with RangeServer("/data") as srv:  # doctest: +SKIP
...     url = srv.url("2024/10N/x.tiff")
...     srv.stats()["bytes_sent"]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlparse

__all__ = ["RangeServer"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
#: Prefix of the control URLs (not counted, not files).
CONTROL = "__geoemb__/"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        rel = unquote(urlparse(self.path).path).lstrip("/")
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents and path != self.server.root:
            return None  # outside the served folder
        return path if path.is_file() else None

    def _send(
        self, code: int, body: bytes = b"", headers: dict | None = None, length: int | None = None
    ) -> None:
        """Answer ``code``; HEAD sends the headers only (``length``: the body it would send)."""
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        sent = 0
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            sent = len(body)
        self.server.count(self.path, sent)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _control(self, rel: str) -> None:
        srv = self.server
        with srv.lock:
            if rel == CONTROL + "reset":
                srv.stats = {"requests": 0, "bytes_sent": 0, "per_path": {}}
            elif rel == CONTROL + "fail":
                q = parse_qs(urlparse(self.path).query)
                path, status = q["path"][0], int(q["status"][0])
                if status:
                    srv.fail[path] = status
                else:
                    srv.fail.pop(path, None)
            body = json.dumps(srv.stats).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        rel = unquote(urlparse(self.path).path).lstrip("/")
        if rel.startswith(CONTROL):
            self._control(rel)
            return
        fail = self.server.fail.get(rel)
        if fail:
            self._send(fail, f"injected HTTP {fail}".encode())
            return
        path = self._file()
        if path is None:
            self._send(404, b"not found")
            return
        size = path.stat().st_size
        rng = self.headers.get("Range")
        m = _RANGE.match(rng.strip()) if rng else None
        if rng and m is None:  # multiple or malformed ranges: the whole file (RFC 9110 allows it)
            rng = None
        if not rng:
            body = path.read_bytes() if self.command != "HEAD" else b""
            self._send(200, body, {"Accept-Ranges": "bytes",
                                   "Content-Type": "application/octet-stream"}, length=size)  # fmt: skip
            return
        a, b = m.group(1), m.group(2)
        if a == "":  # suffix range: the last b bytes
            start, end = max(0, size - int(b)), size - 1
        else:
            start, end = int(a), (int(b) if b else size - 1)
        if start >= size or end < start:
            self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            return
        end = min(end, size - 1)
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self._send(206, body, {"Content-Range": f"bytes {start}-{end}/{size}",
                               "Accept-Ranges": "bytes",
                               "Content-Type": "application/octet-stream"})  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.fail: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "bytes_sent": 0, "per_path": {}}

    def count(self, path: str, nbytes: int) -> None:
        with self.lock:
            self.stats["requests"] += 1
            self.stats["bytes_sent"] += nbytes
            acc = self.stats["per_path"].setdefault(unquote(urlparse(path).path).lstrip("/"),
                                                    [0, 0])  # fmt: skip
            acc[0] += 1
            acc[1] += nbytes


class RangeServer:
    """Serve ``root`` on ``http://127.0.0.1:<free port>/`` from a child process.

    Use as a context manager. :attr:`requests`, :attr:`bytes_sent` and :attr:`per_path`
    (``relative path -> [requests, bytes]``) count since start or :meth:`reset`. The child runs
    this file as a script (standard library only: it starts in a fraction of a second).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> RangeServer:
        self._proc = subprocess.Popen(
            [sys.executable, "-S", str(Path(__file__).resolve()), str(self.root)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line.strip().isdigit():
            self._proc.kill()
            raise RuntimeError(f"RangeServer: the server process did not start ({line!r})")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            if self._proc.stdout:
                self._proc.stdout.close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, rel: str | os.PathLike) -> str:
        """The URL of ``rel`` (a path relative to the served folder)."""
        return self.base + quote(str(rel).replace(os.sep, "/"))

    def _control(self, what: str) -> dict:
        with urllib.request.urlopen(self.base + CONTROL + what, timeout=30) as r:
            return json.loads(r.read())

    def stats(self) -> dict:
        """``{"requests", "bytes_sent", "per_path"}`` so far."""
        return self._control("stats")

    @property
    def requests(self) -> int:
        return int(self.stats()["requests"])

    @property
    def bytes_sent(self) -> int:
        return int(self.stats()["bytes_sent"])

    @property
    def per_path(self) -> dict[str, list[int]]:
        return self.stats()["per_path"]

    def reset(self) -> None:
        """Zero the counters."""
        self._control("reset")

    def fail(self, rel: str, status: int | None) -> None:
        """Answer ``status`` for ``rel`` from now on (``None``: serve it again)."""
        self._control(f"fail?path={quote(rel)}&status={status or 0}")


if __name__ == "__main__":  # the child: serve argv[1], print the port, run until terminated
    _srv = _Server(Path(sys.argv[1]))
    print(_srv.server_address[1], flush=True)
    _srv.serve_forever(poll_interval=0.05)
