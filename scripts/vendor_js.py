#!/usr/bin/env python
"""Vendor the map library of the explorer (``geoemb explore``) from the npm registry.

Fetches the pinned Leaflet tarball with ``npm pack`` (falls back to a plain HTTPS download of the
registry tarball when npm is not installed), checks its Subresource-Integrity sha512 against the
value pinned below *before* extracting anything, and copies ``dist/leaflet.js``, ``leaflet.css``,
``images/*`` and the licence into ``src/geoemb/explore/static/vendor/leaflet/`` (git-ignored,
shipped as package data). Run by ``make install``; idempotent (a ``VERSION`` stamp holding the
integrity makes reruns no-ops).

    python scripts/vendor_js.py            # fetch + verify + install
    python scripts/vendor_js.py --check    # exit 1 unless the vendored files match the pin
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE = "leaflet"
VERSION = "1.9.4"
INTEGRITY = "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA=="
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
FILES = {  # path in the tarball -> path under the vendor folder
    "package/dist/leaflet.js": "leaflet.js",
    "package/dist/leaflet.css": "leaflet.css",
    "package/dist/images/layers.png": "images/layers.png",
    "package/dist/images/layers-2x.png": "images/layers-2x.png",
    "package/dist/images/marker-icon.png": "images/marker-icon.png",
    "package/dist/images/marker-icon-2x.png": "images/marker-icon-2x.png",
    "package/dist/images/marker-shadow.png": "images/marker-shadow.png",
    "package/LICENSE": "LICENSE",
}
ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "geoemb" / "explore" / "static" / "vendor" / PACKAGE


def sri(data: bytes) -> str:
    """Subresource-Integrity string (``sha512-<base64>``) of ``data``, as npm records it."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch_tarball() -> bytes:
    """The pinned tarball's bytes (npm pack, else HTTPS from the registry)."""
    npm = shutil.which("npm")
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--silent",
                            "--pack-destination", tmp], check=True, cwd=tmp,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            return (Path(tmp) / f"{PACKAGE}-{VERSION}.tgz").read_bytes()
    with urllib.request.urlopen(TARBALL_URL, timeout=60) as r:  # noqa: S310 - pinned https URL
        return r.read()


def stamp_ok() -> bool:
    stamp = DEST / "VERSION"
    return (
        stamp.exists()
        and stamp.read_text().split() == [VERSION, INTEGRITY]
        and all((DEST / rel).is_file() for rel in FILES.values())
    )


def install(data: bytes) -> None:
    got = sri(data)
    if got != INTEGRITY:
        raise SystemExit(
            f"vendor_js: {PACKAGE}@{VERSION} tarball integrity mismatch: expected {INTEGRITY}, "
            f"got {got}; refusing to install it"
        )
    tmp_dest = DEST.with_name(DEST.name + ".tmp")
    shutil.rmtree(tmp_dest, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, rel in FILES.items():
            f = tar.extractfile(member)
            if f is None:
                raise SystemExit(f"vendor_js: {member} missing from {PACKAGE}@{VERSION}")
            out = tmp_dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(f.read())
    (tmp_dest / "VERSION").write_text(f"{VERSION}\n{INTEGRITY}\n")
    shutil.rmtree(DEST, ignore_errors=True)
    tmp_dest.rename(DEST)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check the vendored files")
    ap.add_argument("--force", action="store_true", help="refetch even if already vendored")
    a = ap.parse_args(argv)
    if a.check:
        ok = stamp_ok()
        print(f"{PACKAGE}@{VERSION}: {'ok' if ok else 'missing or stale'} in {DEST}")
        return 0 if ok else 1
    if stamp_ok() and not a.force:
        print(f"{PACKAGE}@{VERSION} already vendored in {DEST}")
        return 0
    install(fetch_tarball())
    print(f"vendored {PACKAGE}@{VERSION} ({INTEGRITY[:20]}…) into {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
