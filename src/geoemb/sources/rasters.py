"""Embedding rasters as a data source: a product's tiles or tile index, real or synthetic.

An :class:`EmbeddingRasters` object is what ``conf/data/<product>.yaml`` builds (through
:func:`geoemb.sources.raster_source`): the product (:class:`RasterProduct`: its decodes, tile
index names, band count, where to download it, its synthetic stand-in), where the user's copy
is (``root``, ``tile_index`` or ``tiles``), how to read it (``index_filter``, ``path_column``,
``decode``, ``nodata``, ``href_rewrite``, product ``options``) and the one real-vs-synthetic
switch (``synthetic``), owned by a :class:`~geoemb.data.source.DataSource`.
:meth:`EmbeddingRasters.resolve` turns it into the :class:`~geoemb.zonal.params.RasterInputs`
that zonal statistics and :func:`geoemb.sources.chips.read_chips` read — after checking, before
any pixel work, that the real data is there (one error saying what is missing, where to get it
and ``data.synthetic=true``), that an index holding several years is filtered to one, and that
the first tile has the product's band count and a dtype the decode reads.

A new product is a :class:`RasterProduct` registered in :data:`geoemb.sources.RASTERS`.
Plain Python: no Hydra, no Lightning.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd

from geoemb.data.source import DataSource
from geoemb.errors import DataNotFoundError, InputError
from geoemb.sources.remote import rewrite_href
from geoemb.zonal.decodes import DECODES, check_decode
from geoemb.zonal.params import RasterInputs
from geoemb.zonal.sources import (
    TileNotFoundError,
    catalog_from_index,
    is_remote,
    read_tile_meta,
)

__all__ = ["EmbeddingRasters", "RasterProduct"]

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class RasterProduct:
    """What geoemb knows about one published embedding-raster product.

    Attributes
    ----------
    name, title : str
        Registry key (``aef``) and the name used in messages.
    decode : str
        The product's own value decode.
    decodes : tuple of str or None
        Decodes this product accepts (``None``: any :data:`~geoemb.zonal.decodes.DECODES` name).
    bands : int or None
        Band count of the real product (checked on the first tile).
    index_names : tuple of str
        Tile-index file names looked for in ``root`` when no ``tile_index`` is given.
    marker : str or None
        For products without a tile index: a folder that must exist in ``root``.
    download_hint : str
        Where to get the real product, quoted in the not-found error.
    generator : callable or None
        ``generator(folder, **kwargs)`` writes the synthetic stand-in.
    stand_in_polygons : str or None
        Polygon file the stand-in also writes (census-like blocks), relative to its folder.
    version : int
        Bump when the stand-in's output changes (content key of the cached stand-in).
    href_rewrite : mapping
        Default ``prefix -> replacement`` rules for index hrefs (e.g. a bucket -> its HTTPS URL).
    single_year : bool
        An index or folder holding several years must be filtered to one (tiles of two years
        overlap: their pixels would be pooled twice).
    layout : callable or None
        ``layout(source, folder) -> RasterInputs`` for products read from a folder layout
        instead of a tile index (Tessera).
    options : mapping
        Product options and their defaults (``data.options``; unknown keys are refused).
    """

    name: str
    title: str
    decode: str = "raw"
    decodes: tuple[str, ...] | None = None
    bands: int | None = None
    index_names: tuple[str, ...] = ()
    marker: str | None = None
    download_hint: str = ""
    generator: Callable[..., Any] | None = None
    stand_in_polygons: str | None = None
    version: int = 1
    href_rewrite: Mapping[str, str] = dataclasses.field(default_factory=dict)
    single_year: bool = False
    layout: Callable[..., RasterInputs] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _is_pattern(p: str) -> bool:
    return any(c in p for c in "*?[")


class EmbeddingRasters:
    """Embedding-raster tiles of one product, real or synthetic.

    Parameters
    ----------
    product : RasterProduct
        The product (decodes, index names, band count, download hint, stand-in generator).
    root : path, optional
        Folder of the real product (default ``data/<product>``): its tile index
        (``product.index_names``) or its folder layout (``product.layout``).
    tile_index : path or URL, optional
        Tile index (AEF's own GeoParquet/GeoPackage, or stac-geoparquet items); relative raster
        paths resolve beside it.
    tiles : path or list, optional
        GeoTIFF paths, folders, globs or URLs instead of a tile index.
    index_filter : mapping, optional
        Equality filters on index columns, e.g. ``{year: 2024}``.
    path_column : str, optional
        Index column with the raster paths (default: auto; STAC: ``assets.data``).
    decode : str, optional
        Value decode (default: the product's).
    nodata : float, optional
        Overrides the tiles' nodata value.
    synthetic : bool
        Use the synthetic stand-in (generated once, content-keyed, under ``synthetic_root``).
    synthetic_root : path, optional
        Parent folder of generated stand-ins (default ``<root>/../synthetic/<root name>``).
    synthetic_kwargs : mapping, optional
        Arguments of the product's generator (sizes, bands, seed…).
    href_rewrite : mapping, optional
        Extra ``prefix -> replacement`` rules for index hrefs, applied before the product's
        (``{"s3://…/annual/": "/data/aef/"}`` reads a local copy of the bucket).
    options : mapping, optional
        Product options (Tessera: ``landmask``, ``cache_dir``, ``version``).
    """

    def __init__(
        self,
        product: RasterProduct,
        root: PathLike | None = None,
        tile_index: PathLike | None = None,
        tiles: PathLike | Sequence[PathLike] | None = None,
        index_filter: Mapping[str, Any] | None = None,
        path_column: str | None = None,
        decode: str | None = None,
        nodata: float | None = None,
        synthetic: bool = False,
        synthetic_root: PathLike | None = None,
        synthetic_kwargs: Mapping[str, Any] | None = None,
        href_rewrite: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.product = product
        self.tile_index = None if tile_index is None else str(tile_index)
        self.tiles = [tiles] if isinstance(tiles, str | os.PathLike) else tiles
        if self.tiles is not None:
            self.tiles = [str(t) for t in self.tiles]
        if self.tiles is not None and self.tile_index is not None:
            raise InputError("data.tiles and data.tile_index are both set; give one of them")
        if synthetic and (self.tiles is not None or self.tile_index is not None):
            raise InputError(
                "data.synthetic=true generates its own tiles and tile index; unset data.tiles / "
                "data.tile_index (or set data.synthetic=false to read them)"
            )
        self.decode_name = decode or product.decode
        if product.decodes is not None and self.decode_name not in product.decodes:
            raise InputError(
                f"data.decode={self.decode_name!r} is not a decode of {product.title}; valid: "
                f"{', '.join(product.decodes)}"
            )
        unknown = sorted(set(options or {}) - set(product.options))
        if unknown:
            raise InputError(
                f"data.options: unknown key(s) {unknown} for {product.name}; valid: "
                f"{sorted(product.options) or 'none'}"
            )
        self.options = {**product.options, **dict(options or {})}
        self.href_rewrite = {**dict(href_rewrite or {}), **dict(product.href_rewrite)}
        # checked now (decode name, filter shape), before any data is read
        value_decode = self.decode_name if self.decode_name in DECODES else "raw"
        self._read = RasterInputs(path_column=path_column, index_filter=index_filter,
                                  decode=value_decode, nodata=nodata)  # fmt: skip
        self._source = DataSource(
            name=product.title,
            root=Path(root) if root is not None else Path("data") / product.name,
            synthetic=synthetic,
            synthetic_root=synthetic_root,
            synthetic_kwargs=dict(synthetic_kwargs or {}),
            generator=product.generator,
            check=lambda _root: self._missing_real(),
            download_hint=product.download_hint,
            version=product.version,
        )

    # ------------------------------------------------------------------ facts
    @property
    def synthetic(self) -> bool:
        return self._source.synthetic

    @property
    def data_source(self) -> str:
        """``"synthetic"`` or ``"real"``: runs, figures and rasters are tagged with it."""
        return self._source.data_source

    @property
    def root(self) -> Path:
        return Path(self._source.root)

    @property
    def decode(self) -> str:
        """The decode name as configured (a product decode such as ``tessera_scaled``)."""
        return self.decode_name

    @property
    def index_filter(self) -> dict | None:
        return self._read.index_filter

    @property
    def inputs(self) -> RasterInputs:
        """The reading knobs (path column, filter, value decode, nodata) without any rasters."""
        return self._read

    @property
    def expected_bands(self) -> int | None:
        """The band count the tiles must have (the stand-in's ``n_bands`` when synthetic)."""
        if self.synthetic:
            return (
                int(self._source.synthetic_kwargs.get("n_bands", self.product.bands or 0)) or None
            )
        return self.product.bands

    def __repr__(self) -> str:
        where = self.tiles or self.tile_index or self.root
        return f"EmbeddingRasters({self.product.name}, {self.data_source}, {where})"

    def index_path(self) -> Path | str:
        """The real tile index: ``tile_index``, else the first of ``product.index_names`` that
        exists in ``root`` (else the first name, for messages)."""
        if self.tile_index is not None:
            return self.tile_index if is_remote(self.tile_index) else Path(self.tile_index)
        names = self.product.index_names or ("index.gpkg",)
        found = [self.root / n for n in names if (self.root / n).exists()]
        return found[0] if found else self.root / names[0]

    # ------------------------------------------------------------------ real data checks
    def _missing_real(self) -> str | None:
        if self.tiles is not None:
            if not self.tiles:
                return "data.tiles is an empty list"
            plain = [t for t in self.tiles if not is_remote(t) and not _is_pattern(t)]
            gone = [t for t in plain if not Path(t).exists()]
            return f"tiles {gone[:3]}{' …' if len(gone) > 3 else ''} do not exist" if gone else None
        if self.product.marker is not None and self.tile_index is None:
            need = self.root / self.product.marker
            return None if need.is_dir() else f"no folder {need}"
        idx = self.index_path()
        if is_remote(idx) or Path(idx).exists():
            return None
        if self.tile_index is not None:
            return f"tile index {idx} does not exist"
        names = ", ".join(self.product.index_names) or "a tile index"
        return f"no tile index in {self.root} (looked for {names})"

    def resolve(self, also_missing: Iterable[str] = (), hint: str = "") -> RasterInputs:
        """The rasters to read: the real ones (checked) or the stand-in (generated once).

        Parameters
        ----------
        also_missing:
            Other missing real inputs of the caller (e.g. the polygons), reported in the same
            error as the rasters' own.
        hint:
            Where to get those other inputs.

        Raises
        ------
        DataNotFoundError
            Real mode and something is missing: one message naming everything missing, where to
            get it, and ``data.synthetic=true``.
        InputError
            The product's checks failed (several years unfiltered, wrong band count or dtype…).
        """
        if self.synthetic:
            folder = self._source.ensure_synthetic()
            if self.product.layout is not None:
                return self.product.layout(self, folder)
            return self._from_index(folder / self.product.index_names[0])
        own = self._missing_real()
        problems = [m for m in [own, *also_missing] if m]
        if problems:
            hints = " ".join(h for h in (self.product.download_hint if own else "", hint) if h)
            name = self.product.title if own else f"{self.product.title} workflow"
            src = dataclasses.replace(self._source, name=name, download_hint=hints)
            raise src.not_found("; ".join(problems))
        if self.tiles is not None:
            self.check_first(self.tiles[0], f"data.tiles[0] ({self.tiles[0]})")
            return dataclasses.replace(self._read, tiles=list(self.tiles))
        if self.product.layout is not None and self.tile_index is None:
            return self.product.layout(self, self.root)
        return self._from_index(self.index_path())

    def catalog(self, index: PathLike) -> tuple[gpd.GeoDataFrame, bool]:
        """The filtered tile catalogue of ``index`` with hrefs rewritten and the product's
        one-year rule checked (``attrs["source"]`` names the index), and whether a rewrite
        changed any href."""
        cat = catalog_from_index(index, path_column=self._read.path_column,
                                 filters=self._read.index_filter)  # fmt: skip
        root = None if is_remote(index) else str(Path(index).parent)
        new = [rewrite_href(p, self.href_rewrite, root) for p in cat.path]
        changed = new != list(cat.path)
        cat["path"] = new
        if self.product.single_year and "year" in cat.columns:
            years = sorted({int(y) for y in cat["year"]})
            if len(years) > 1:
                raise InputError(
                    f"tile index {index} holds {self.product.title} tiles of several years "
                    f"{years[:12]}{' …' if len(years) > 12 else ''}; tiles of two years overlap "
                    f"and would be pooled together: choose one with data.index_filter="
                    f"{{year: {years[-1]}}}"
                )
        cat.attrs["source"] = f"tile index {index}"
        return cat, changed

    def check_first(self, path: str, what: str) -> None:
        """The first tile has the product's band count and a dtype the decode reads (one
        header; a missing file is left to the readers, which only fail if it is needed)."""
        try:
            meta = read_tile_meta(path)
        except TileNotFoundError:
            return
        want = self.expected_bands
        if want is not None and meta.count != want:
            raise InputError(
                f"{what}: {meta.count} bands; expected {want} ({self.product.title}"
                f"{' stand-in' if self.synthetic else ''})"
            )
        check_decode(self._read.decode, meta)

    def _from_index(self, index: PathLike) -> RasterInputs:
        cat, changed = self.catalog(index)
        self.check_first(str(cat.path.iloc[0]), f"tile {cat.path.iloc[0]} (first of {index})")
        if not changed:  # the index as is: zonal reads it (and names it in its messages)
            return dataclasses.replace(self._read, tile_index=index)
        return dataclasses.replace(self._read, tile_index=cat, index_filter=None, path_column=None)

    def stand_in_polygons(self) -> Path:
        """The polygons written with the synthetic stand-in (census-like blocks).

        Raises
        ------
        DataNotFoundError
            Real mode (the product ships no polygons) or a product whose stand-in has none.
        """
        if not self.synthetic or self.product.stand_in_polygons is None:
            raise DataNotFoundError(
                f"{self.product.title}: no stand-in polygons "
                f"({'real data' if not self.synthetic else 'this stand-in writes none'})"
            )
        return self._source.ensure_synthetic() / self.product.stand_in_polygons
