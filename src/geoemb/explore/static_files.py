"""Serving the explorer's own static folder, and nothing else.

:func:`safe_static_path` maps a request path to a file strictly inside :data:`STATIC_ROOT`:
percent-decoding has already happened (Starlette), so ``..%2f`` arrives as ``../`` and is refused
like any ``..``/``.`` segment, absolute path, backslash, NUL, dot file, or symlink anywhere on the
way (a symlink could point outside even if its name does not).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

from fastapi.responses import Response

from geoemb.errors import InputError

STATIC_ROOT = Path(__file__).resolve().parent / "static"
VENDOR_FILES = ("vendor/leaflet/leaflet.js", "vendor/leaflet/leaflet.css")
VENDOR_HELP = (
    "the explorer's map library is not vendored: run `python scripts/vendor_js.py` from the "
    "geoemb checkout (`make install` does it), which fetches the pinned Leaflet tarball from the "
    "npm registry and checks its integrity"
)


class StaticNotFound(Exception):
    """No servable file at the requested path (always answered with a plain 404)."""


def check_vendor(root: Path = STATIC_ROOT) -> None:
    """Raise :class:`InputError` with the fix when the vendored map library is missing."""
    missing = [f for f in VENDOR_FILES if not (root / f).is_file()]
    if missing:
        raise InputError(f"{root}: missing {', '.join(missing)}; {VENDOR_HELP}")


def safe_static_path(rel: str, root: Path = STATIC_ROOT) -> Path:
    """Resolve ``rel`` to a regular file inside ``root`` or raise :class:`StaticNotFound`."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise StaticNotFound(rel)
    parts = PurePosixPath(rel).parts
    if any(p in ("", ".", "..") or p.startswith(".") or ":" in p for p in parts):
        raise StaticNotFound(rel)
    path = root
    for p in parts:
        path = path / p
        if path.is_symlink():
            raise StaticNotFound(rel)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise StaticNotFound(rel) from e
    if not real.is_relative_to(root.resolve()) or not real.is_file():
        raise StaticNotFound(rel)
    return real


def static_response(rel: str) -> Response:
    """The file's bytes with its media type, or a JSON 404 naming nothing but the request."""
    try:
        path = safe_static_path(rel)
    except StaticNotFound:
        return Response(b'{"error": {"code": "not_found", "message": "no such static file"}}',
                        status_code=404, media_type="application/json")  # fmt: skip
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        media = "text/javascript"
    return Response(path.read_bytes(), media_type=media,
                    headers={"Cache-Control": "no-cache"})  # fmt: skip
