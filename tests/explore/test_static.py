"""The server hands out files of its static folder only: traversal, encodings, symlinks, dot files."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from geoemb.explore.static_files import STATIC_ROOT, StaticNotFound, safe_static_path

ESCAPES = [
    "../app.py",
    "../../explore/app.py",
    "vendor/../../app.py",
    "/etc/passwd",
    "//etc/passwd",
    "..",
    ".",
    "",
    ".gitignore",
    "vendor/leaflet/../../.gitignore",
    "app.js\x00.png",
    "..\\app.py",
    "C:/Windows/win.ini",
    "vendor/leaflet",  # a directory
    "nope.js",
]


@pytest.mark.parametrize("rel", ESCAPES)
def test_safe_static_path_refuses(rel):
    with pytest.raises(StaticNotFound):
        safe_static_path(rel)


def test_safe_static_path_serves_own_files():
    assert safe_static_path("app.js") == STATIC_ROOT / "app.js"
    assert safe_static_path("vendor/leaflet/leaflet.js").is_file()


def test_symlinks_refused_even_inside(tmp_path):
    root = tmp_path / "static"
    (root / "sub").mkdir(parents=True)
    (root / "ok.txt").write_text("ok")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "out.txt").symlink_to(secret)  # points outside
    (root / "in.txt").symlink_to(root / "ok.txt")  # points inside: still refused
    (root / "sub" / "up").symlink_to(tmp_path, target_is_directory=True)
    assert safe_static_path("ok.txt", root) == root / "ok.txt"
    for rel in ("out.txt", "in.txt", "sub/up/secret.txt"):
        with pytest.raises(StaticNotFound):
            safe_static_path(rel, root)


@pytest.mark.parametrize(
    "url",
    [
        "/static/..%2f..%2fapp.py",
        "/static/%2e%2e/%2e%2e/app.py",
        "/static/%2e%2e%2f%2e%2e%2fexplore%2fapp.py",
        "/static/..%5capp.py",
        "/static/%2fetc%2fpasswd",
        "/static/app.js%00.png",
        "/static/.gitignore",
        "/static/vendor%2f..%2f..%2fapp.py",
    ],
)
def test_encoded_traversal_over_http(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code, r.text[:100])
    assert "import" not in r.text and "root:" not in r.text


def test_static_files_over_http(client):
    r = client.get("/static/vendor/leaflet/leaflet.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/manifest.parquet").status_code == 404  # corpus files are not served
    assert client.get("/static/../manifest.parquet").status_code == 404


def _serve(app):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    t0 = time.time()
    while not server.started:
        assert time.time() - t0 < 30, "server did not start"
        time.sleep(0.05)
    return server, th, sock.getsockname()[1]


def _raw_get(port, target, host="127.0.0.1"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.loopback
def test_raw_requests_over_loopback(app):
    """Unnormalised request targets, as a hostile client sends them (no client-side cleanup)."""
    server, th, port = _serve(app)
    try:
        assert _raw_get(port, "/static/app.js")[0] == 200
        for target in ("/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fapp.py",
                       "/static/./../app.py", "/static/%2e%2e/index.html/../../app.py",
                       "/static//etc/passwd", "/static/vendor/leaflet/../../../app.py"):  # fmt: skip
            status, body = _raw_get(port, target)
            assert status in (400, 404), (target, status)
            assert b"root:" not in body and b"import" not in body
        assert _raw_get(port, "/info", host="attacker.example")[0] == 400  # DNS rebinding guard
    finally:
        server.should_exit = True
        th.join(10)
