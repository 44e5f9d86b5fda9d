"""Parameter objects of the zonal workflow: every knob is defined (name, default, check) once here.

The library (:func:`geoemb.zonal.zonal_stats`), the command line (``geoemb zonal …`` /
``python -m geoemb.zonal …``) and the evaluator (``evaluate.py experiment=zonal_stats``) all build
these objects, so a default or a check never differs between them.

- :class:`RasterInputs` — which embedding rasters and how to read them (tiles or a tile index,
  index filter, path column, value decode, nodata override). A raster source
  (:mod:`geoemb.sources`) resolves to one.
- :class:`ZonalFilters` — the census-block polygon filters (all-water, oversized, bbox).
- :class:`PoolingSpec` — the pooling method, rasterisation rule and execution (threads, chunks).
- :class:`CensusAnalysis` — the census-style evaluation and the PCA-RGB map.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import geopandas as gpd

from geoemb.errors import InputError
from geoemb.zonal.sources import DECODES

__all__ = [
    "CensusAnalysis",
    "PoolingSpec",
    "RasterInputs",
    "ZonalFilters",
    "default_workers",
    "split_knobs",
]

PathLike = str | os.PathLike
T = TypeVar("T")


def default_workers() -> int:
    """A sensible thread count for windowed reads (I/O bound): min(8, 2 × CPUs)."""
    return min(8, 2 * (os.cpu_count() or 1))


def _from_config(cls: type[T], cfg: T | Mapping[str, Any] | None, where: str) -> T:
    """``cls`` from ``None`` (defaults), an instance, or a mapping (unknown keys refused)."""
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return cfg
    if not isinstance(cfg, Mapping):
        raise InputError(f"{where}: expected a mapping of {cls.__name__} fields, got {cfg!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(cfg) - set(names))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; valid: {names}")
    return cls(**dict(cfg))


@dataclasses.dataclass(frozen=True, eq=False)
class RasterInputs:
    """Which embedding rasters to pool, and how their stored values are read.

    Attributes
    ----------
    tiles : path, list of paths/folders/globs, or None
        GeoTIFFs (footprints read from their headers).
    tile_index : path, GeoDataFrame or None
        A tile index (footprint polygons -> raster paths, e.g. AEF's ``aef_index.gpkg``); relative
        paths resolve beside the index file. Exactly one of ``tiles``/``tile_index`` is used.
    path_column : str or None
        Index column with the raster paths (``None``: auto, see ``PATH_COLUMNS``).
    index_filter : mapping or None
        Equality filters on index columns, e.g. ``{"year": 2020}``.
    decode : str
        A :data:`~geoemb.zonal.sources.DECODES` name: ``raw`` (stored values as float) or ``aef``
        (dequantise AEF uint8/int8 codes).
    nodata : float or None
        Overrides the tiles' declared nodata value.
    """

    tiles: PathLike | Iterable[PathLike] | None = None
    tile_index: PathLike | gpd.GeoDataFrame | None = None
    path_column: str | None = None
    index_filter: Mapping[str, Any] | None = None
    decode: str = "raw"
    nodata: float | None = None

    def __post_init__(self) -> None:
        DECODES.resolve(self.decode)  # UnknownNameError (an InputError) listing the decodes
        if self.index_filter is not None:
            if not isinstance(self.index_filter, Mapping):
                raise InputError(
                    f"index_filter must map column -> value (e.g. {{year: 2020}}), "
                    f"got {self.index_filter!r}"
                )
            object.__setattr__(self, "index_filter", dict(self.index_filter) or None)
        if self.nodata is not None:
            object.__setattr__(self, "nodata", float(self.nodata))

    def check(self) -> None:
        """Exactly one of ``tiles``/``tile_index`` must be given."""
        if (self.tiles is None) == (self.tile_index is None):
            raise InputError(
                "give exactly one of tiles=[...] (GeoTIFF paths) or tile_index=<gpkg/parquet>"
            )

    @classmethod
    def from_config(
        cls, cfg: RasterInputs | Mapping[str, Any] | None, where: str = "rasters"
    ) -> RasterInputs:
        return _from_config(cls, cfg, where)


@dataclasses.dataclass(frozen=True)
class ZonalFilters:
    """Polygon filters of the census-block workflow (defaults as the blog).

    Attributes
    ----------
    land_column : str or None
        Land-area column in m² (TIGER/Line ``ALAND20``); ``None`` disables the two area filters.
    drop_zero_land : bool
        Drop all-water polygons (land area 0).
    max_land_km2 : float or None
        Drop polygons with more land than this (km²); ``None``: no limit.
    bbox : (W, S, E, N) or None
        Keep only polygons intersecting this EPSG:4326 box.
    """

    land_column: str | None = "ALAND20"
    drop_zero_land: bool = True
    max_land_km2: float | None = 25.0
    bbox: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.land_column, str) and self.land_column.lower() in ("", "none", "null"):
            object.__setattr__(self, "land_column", None)
        if self.max_land_km2 is not None:
            if not float(self.max_land_km2) > 0:
                raise InputError(
                    f"max_land_km2 must be > 0 (or null for no limit), got {self.max_land_km2}"
                )
            object.__setattr__(self, "max_land_km2", float(self.max_land_km2))
        if self.bbox is not None:
            try:
                b = tuple(float(v) for v in self.bbox)
            except (TypeError, ValueError) as e:
                raise InputError(f"bbox must be [W, S, E, N] numbers, got {self.bbox!r}") from e
            if len(b) != 4 or not (b[0] < b[2] and b[1] < b[3]):
                raise InputError(
                    f"bbox must be [W, S, E, N] with W < E and S < N (EPSG:4326), got {self.bbox!r}"
                )
            object.__setattr__(self, "bbox", b)

    @classmethod
    def from_config(
        cls, cfg: ZonalFilters | Mapping[str, Any] | None, where: str = "filters"
    ) -> ZonalFilters:
        return _from_config(cls, cfg, where)


@dataclasses.dataclass(frozen=True)
class PoolingSpec:
    """How pixels are gathered and pooled per polygon.

    Attributes
    ----------
    method : str
        A :mod:`geoemb.pooling` key; ``mean_std`` = the blog's 64 means + 64 stds for AEF.
    all_touched : bool
        Rasterise every pixel a polygon touches instead of pixel centres inside it.
    num_workers : int or None
        Threads for windowed reads (``None``: :func:`default_workers`).
    chunk_size : int
        Polygons per partition (one task; bounds memory).
    progress : bool
        Show a progress bar.
    weighting : str
        ``centre``: every pixel whose centre is inside counts once; ``coverage``: every pixel the
        polygon covers is weighted by the covered fraction of its area (exactextract's coverage
        fraction; methods ``geoemb.zonal.engine.WEIGHTED_METHODS``), so small polygons that hold
        no pixel centre still get a value.
    """

    method: str = "mean_std"
    all_touched: bool = False
    num_workers: int | None = None
    chunk_size: int = 2048
    progress: bool = True
    weighting: str = "centre"

    def __post_init__(self) -> None:
        if self.weighting not in ("centre", "coverage"):
            raise InputError(
                f"weighting must be 'centre' (pixels whose centre is inside) or 'coverage' "
                f"(pixels weighted by the fraction inside, as exactextract), got {self.weighting!r}"
            )
        if self.weighting == "coverage" and self.all_touched:
            raise InputError("weighting='coverage' already weighs every touched pixel by its "
                             "covered fraction; all_touched must be false with it")  # fmt: skip
        if self.num_workers is not None and int(self.num_workers) < 1:
            raise InputError(f"num_workers must be >= 1 (or null: auto), got {self.num_workers}")
        if int(self.chunk_size) < 1:
            raise InputError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @property
    def workers(self) -> int:
        """``num_workers`` or the automatic default."""
        return int(self.num_workers) if self.num_workers is not None else default_workers()

    @classmethod
    def from_config(
        cls, cfg: PoolingSpec | Mapping[str, Any] | None, where: str = "pooling"
    ) -> PoolingSpec:
        return _from_config(cls, cfg, where)


@dataclasses.dataclass(frozen=True)
class CensusAnalysis:
    """The census-style evaluation of the features and the PCA-RGB map.

    Attributes
    ----------
    pca_k : int
        PCA-k baseline features (R² and accuracy on the first k PCs).
    n_pcs : int
        PCs in the PC-target correlation table.
    n_splits : int
        Stratified CV folds of the logistic-regression accuracy.
    census_columns : mapping or None
        Renames for :func:`geoemb.zonal.census_targets` (``pop``, ``housing``, ``aland``,
        ``awater``, ``urban``, ``urban_value``).
    binary_target : str or None
        Target of the classification (``urban``).
    rgb_resolution : float
        PCA-RGB pixel size in units of ``rgb_crs``.
    rgb_crs : str or None
        PCA-RGB grid CRS: ``utm`` (the polygons' UTM zone), any CRS string, or ``None`` (the
        polygons' CRS).
    """

    pca_k: int = 10
    n_pcs: int = 5
    n_splits: int = 5
    census_columns: Mapping[str, str] | None = None
    binary_target: str | None = "urban"
    rgb_resolution: float = 10.0
    rgb_crs: str | None = "utm"

    def __post_init__(self) -> None:
        for name in ("pca_k", "n_pcs"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.n_splits) < 2:
            raise InputError(f"n_splits must be >= 2 (CV folds), got {self.n_splits}")
        if not float(self.rgb_resolution) > 0:
            raise InputError(f"rgb_resolution must be > 0, got {self.rgb_resolution}")
        if self.census_columns is not None:
            object.__setattr__(self, "census_columns", dict(self.census_columns))

    @classmethod
    def from_config(
        cls, cfg: CensusAnalysis | Mapping[str, Any] | None, where: str = "analysis"
    ) -> CensusAnalysis:
        return _from_config(cls, cfg, where)


_KNOB_OWNERS: tuple[type, ...] = (RasterInputs, ZonalFilters, PoolingSpec)


def split_knobs(
    knobs: Mapping[str, Any],
    rasters: RasterInputs | None = None,
    filters: ZonalFilters | None = None,
    pooling: PoolingSpec | None = None,
) -> tuple[RasterInputs, ZonalFilters, PoolingSpec]:
    """Flat keyword knobs (``method=…, bbox=…, decode=…``) applied over the parameter objects.

    Raises
    ------
    TypeError
        A knob that no parameter object has (the message lists the valid ones).
    """
    objs = [rasters or RasterInputs(), filters or ZonalFilters(), pooling or PoolingSpec()]
    fields = [{f.name for f in dataclasses.fields(c)} for c in _KNOB_OWNERS]
    unknown = sorted(set(knobs) - set().union(*fields))
    if unknown:
        raise TypeError(
            f"zonal_stats() got unexpected keyword(s) {unknown}; valid: {sorted(set().union(*fields))}"
        )
    out = []
    for obj, names in zip(objs, fields, strict=True):
        mine = {k: v for k, v in knobs.items() if k in names}
        out.append(dataclasses.replace(obj, **mine) if mine else obj)
    return out[0], out[1], out[2]
