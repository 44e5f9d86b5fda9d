"""FastAPI app of the map explorer: a thin JSON layer over the corpus index and the library.

Endpoints (JSON in/out; errors are ``{"error": {"code", "message"}}`` with a 4xx status):

=====================  ==========================================================================
``GET /``              the page (``static/index.html``)
``GET /static/<f>``    files of the package's ``static/`` folder only (no ``..``, no dot files,
                       no symlinks, nothing outside it)
``GET /info``          corpus summary, limits, basemap settings
``GET /tiles/z/x/y.png``  PCA-RGB basemap tile of the corpus (transparent where it has no rows)
``POST /exemplar``     ``{lon, lat[, tolerance_deg]}`` or ``{id[, lon, lat]}`` → the corpus row
``POST /search``       viewport query → top-k / threshold results, heat map PNG, histogram, timing
``POST /export``       the same body + ``format`` (``geoparquet`` | ``geotiff``) → file download
=====================  ==========================================================================

Status codes: 400 malformed JSON; 422 schema or value errors (``bbox_too_large`` when the view
touches more rows than ``max_view_rows``); 404 unknown id / point outside the corpus / unknown
file or tile; 409 the corpus changed on disk since start-up. The client never sends a file path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from geoemb.errors import InputError
from geoemb.explore.basemap import Basemap
from geoemb.explore.index import (
    CorpusChangedError,
    CorpusIndex,
    CorpusReadError,
    ViewTooLargeError,
)
from geoemb.explore.kernels import warmup
from geoemb.explore.query import (
    NotFoundError,
    Ref,
    SearchParams,
    export_raster,
    export_results,
    resolve,
    search,
)
from geoemb.explore.render import draw, heat_png
from geoemb.explore.static_files import check_vendor, static_response

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
MAX_EXEMPLARS = 64


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ---------------------------------------------------------------------- request models


class ExemplarBody(BaseModel):
    """An exemplar: ``id`` (with optional ``lon``/``lat`` hint) or a point ``lon``/``lat``."""

    model_config = ConfigDict(extra="forbid")
    id: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    lon: Annotated[FiniteFloat, Field(ge=-180, le=180)] | None = None
    lat: Annotated[FiniteFloat, Field(ge=-90, le=90)] | None = None
    tolerance_deg: Annotated[FiniteFloat, Field(ge=0, le=5)] = 0.0

    @model_validator(mode="after")
    def _one_way(self) -> ExemplarBody:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat, or neither")
        if self.id is None and self.lon is None:
            raise ValueError("give an id or a point (lon, lat)")
        return self

    def ref(self) -> Ref:
        return Ref(self.id, self.lon, self.lat)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bbox: Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]
    positives: Annotated[list[ExemplarBody], Field(min_length=1, max_length=MAX_EXEMPLARS)]
    negatives: Annotated[list[ExemplarBody], Field(max_length=MAX_EXEMPLARS)] = []
    combine: Literal["mean", "and", "or", "xor", "majority"] = "mean"
    invert: bool = False
    k: int = Field(50, ge=1, le=10_000)
    threshold: FiniteFloat | None = None
    width: int = Field(512, ge=16, le=2048)
    height: int = Field(512, ge=16, le=2048)
    bins: int = Field(40, ge=2, le=256)

    @model_validator(mode="after")
    def _bbox(self) -> SearchBody:
        w, s, e, n = self.bbox
        if not (-180 <= w <= 180 and -180 <= e <= 180):
            raise ValueError(f"bbox west/east must lie in [-180, 180], got {w}, {e}")
        if not (-90 <= s <= 90 and -90 <= n <= 90):
            raise ValueError(f"bbox south/north must lie in [-90, 90], got {s}, {n}")
        if s > n:
            raise ValueError(f"bbox south {s} > north {n}")
        if w == e or s == n:
            raise ValueError("bbox has zero width or height")
        return self

    def params(self) -> SearchParams:
        return SearchParams(tuple(self.bbox), [p.ref() for p in self.positives],
                            [p.ref() for p in self.negatives], self.combine, self.invert,
                            self.k, self.threshold, self.width, self.height, self.bins)  # fmt: skip


class ExportBody(SearchBody):
    format: Literal["geoparquet", "geotiff"]
    resolution: Annotated[FiniteFloat, Field(gt=0, le=10)] | None = None


# ---------------------------------------------------------------------- app


def _check_basemap_url(url: str | None) -> str | None:
    if url is None:
        return None
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise InputError(f"--basemap-url: expected an http(s) XYZ template, got {url!r}")
    if not all(t in url for t in ("{z}", "{x}", "{y}")):
        raise InputError(f"--basemap-url: the template needs {{z}}, {{x}} and {{y}}, got {url!r}")
    return url


def create_app(corpus_path: str | Path, *, basemap_url: str | None = None,
               cache_dir: str | Path | None = None, max_view_rows: int = 2_000_000,
               max_memory_bytes: int = 8 << 30, allowed_hosts: list[str] | None = None,
               preload: bool = False) -> FastAPI:  # fmt: skip
    """Build the explorer app for one corpus (fits/loads the basemap PCA before returning).

    Parameters
    ----------
    corpus_path:
        Corpus root (``manifest.parquet``).
    basemap_url:
        Optional XYZ tile template shown under the corpus basemap (``https://…/{z}/{x}/{y}.png``).
    cache_dir:
        Parent of the basemap cache (default ``<corpus>/_explore``, else the user cache).
    max_view_rows:
        Viewport queries touching more rows (after manifest pruning) get 422 ``bbox_too_large``.
    allowed_hosts:
        ``Host`` headers accepted (default: loopback names; guards against DNS rebinding).
    """
    check_vendor()
    basemap_url = _check_basemap_url(basemap_url)
    index = CorpusIndex(corpus_path, max_bytes=max_memory_bytes)
    basemap = Basemap(index, cache_root=cache_dir)
    if preload:
        index.preload()
    heat_png(np.full((2, 2), np.nan), 0.0, 1.0)  # warm the colour map
    warmup()  # compile (or load) the jitted kernels before the first click
    draw(np.zeros((1, 4)), np.zeros(1), (0.0, 0.0, 1.0, 1.0), 4, 4)
    app = FastAPI(title="geoemb explore", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)
    app.state.index, app.state.basemap = index, basemap
    _errors(app)
    img_src = "'self' data:"
    if basemap_url:
        u = urlparse(basemap_url)
        img_src += f" {u.scheme}://{u.netloc}"
    csp = (f"default-src 'self'; img-src {img_src}; style-src 'self' 'unsafe-inline'; "
           "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
           "frame-ancestors 'none'")  # fmt: skip

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = csp
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/")
    def page() -> Response:
        return static_response("index.html")

    @app.get("/static/{path:path}")
    def static(path: str) -> Response:
        return static_response(path)

    @app.get("/info")
    def info() -> dict:
        index.check_fresh()
        return {"corpus": str(index.root.name), "n_rows": index.n_rows,
                "n_shards": len(index.paths), "dim": index.dim, "code_bytes": index.code_bytes,
                "extent": list(index.extent), "manifest_sha256": index.manifest_sha256,
                "quantization": index.store.quantization, "model": index.store.model,
                "combine": ["mean", "and", "or", "xor", "majority"],
                "max_view_rows": max_view_rows, "max_k": 10_000, "basemap_url": basemap_url,
                "basemap_pca_rows": basemap.model.n_fit}  # fmt: skip

    @app.get("/tiles/{z}/{x}/{y}.png")
    def tile(z: int, x: int, y: int) -> Response:
        if not (0 <= z <= 22 and 0 <= x < 2**z and 0 <= y < 2**z):
            raise ApiError(404, "not_found", f"no tile {z}/{x}/{y} (0 <= z <= 22, 0 <= x,y < 2^z)")
        index.check_fresh()
        return Response(basemap.tile(z, x, y), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600",
                                 "ETag": f'"{index.manifest_sha256[:16]}-{z}-{x}-{y}"'})  # fmt: skip

    @app.post("/exemplar")
    def exemplar(body: ExemplarBody) -> dict:
        index.check_fresh()
        return resolve(index, body.ref(), body.tolerance_deg).to_json()

    @app.post("/search")
    def do_search(body: SearchBody) -> dict:
        index.check_fresh()
        return search(index, body.params(), max_view_rows=max_view_rows)

    @app.post("/export")
    def export(body: ExportBody) -> Response:
        index.check_fresh()
        p = body.params()
        _check_view(index, p, max_view_rows)  # from the manifest, before the library query
        with tempfile.TemporaryDirectory(prefix="geoemb-explore-") as tmp:
            if body.format == "geoparquet":
                path = export_results(index, p, Path(tmp) / "results.parquet")
                name, media = "geoemb-results.parquet", "application/vnd.apache.parquet"
            else:
                path = export_raster(index, p, Path(tmp) / "scores.tif", body.resolution)
                name, media = "geoemb-scores.tif", "image/tiff"
            data = path.read_bytes()
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    return app


def _check_view(index: CorpusIndex, p: SearchParams, max_rows: int) -> None:
    sel = index.prune(p.bbox)
    pruned = int(index.shard_rows[sel].sum())
    if pruned > max_rows:
        raise ViewTooLargeError(
            f"bbox {list(p.bbox)} touches {pruned} corpus rows in {len(sel)} shards, more than "
            f"the explorer's limit of {max_rows} rows per view (--max-view-rows); zoom in"
        )


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.code, e.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()
        if any(err.get("type") == "json_invalid" for err in errs):
            return _error(400, "malformed_json", "request body is not valid JSON")
        parts = []
        for err in errs[:5]:
            loc = ".".join(str(v) for v in err.get("loc", ()) if v != "body") or "body"
            parts.append(f"{loc}: {err.get('msg')}")
        return _error(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(ViewTooLargeError)
    async def _large(_: Request, e: ViewTooLargeError) -> JSONResponse:
        return _error(422, "bbox_too_large", str(e))

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, e: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(e))

    @app.exception_handler(CorpusReadError)
    async def _corpus(_: Request, e: CorpusReadError) -> JSONResponse:
        return _error(500, "corpus_error", str(e))

    @app.exception_handler(InputError)
    async def _input(_: Request, e: InputError) -> JSONResponse:
        return _error(422, "invalid_input", str(e))

    @app.exception_handler(CorpusChangedError)
    async def _changed(_: Request, e: CorpusChangedError) -> JSONResponse:
        return _error(409, "corpus_changed", str(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))


__all__ = ["create_app"]
