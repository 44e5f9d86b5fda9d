"""Embedding rasters as a data source: tiles or a tile index, real or synthetic.

An :class:`EmbeddingRasters` object is what ``conf/data/aef.yaml`` builds (through
:func:`geoemb.sources.raster_source`): the product (:class:`RasterProduct`: its value decode, tile
index names, where to download it, its synthetic stand-in), where the user's copy is (``root``,
``tile_index`` or ``tiles``), how to read it (``index_filter``, ``path_column``, ``decode``,
``nodata``) and the one real-vs-synthetic switch (``synthetic``), owned by a
:class:`~geoemb.data.source.DataSource`. :meth:`EmbeddingRasters.resolve` turns it into the
:class:`~geoemb.zonal.params.RasterInputs` the zonal pipeline reads — after checking that the real
data is there (one error saying what is missing, where to get it and ``data.synthetic=true``) or
generating the stand-in once (content-keyed, atomic).

A new product is a new :class:`RasterProduct` registered in :data:`geoemb.sources.RASTERS`.
Plain Python: no Hydra, no Lightning.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from geoemb.data.source import DataSource
from geoemb.data.synthetic.zonal import generate as generate_aef_stand_in
from geoemb.errors import DataNotFoundError, InputError
from geoemb.zonal.params import RasterInputs
from geoemb.zonal.sources import is_remote

__all__ = ["AEF", "EmbeddingRasters", "RasterProduct"]

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class RasterProduct:
    """What geoemb knows about one published embedding-raster product.

    Attributes
    ----------
    name : str
        Registry key (``aef``).
    title : str
        Human name used in messages.
    decode : str
        The product's value decode (:data:`geoemb.zonal.sources.DECODES`).
    index_names : tuple of str
        Tile-index file names looked for in ``root`` when no ``tile_index`` is given.
    download_hint : str
        Where to get the real product, quoted in the not-found error.
    generator : callable or None
        ``generator(folder, **kwargs)`` writes the synthetic stand-in (tiles + ``index_names[0]``).
    stand_in_polygons : str or None
        Polygon file the stand-in also writes (census-like blocks), relative to its folder.
    version : int
        Bump when the stand-in's output changes (content key of the cached stand-in).
    """

    name: str
    title: str
    decode: str = "raw"
    index_names: tuple[str, ...] = ()
    download_hint: str = ""
    generator: Callable[..., Any] | None = None
    stand_in_polygons: str | None = None
    version: int = 1


#: AlphaEarth Foundations / Google Satellite Embedding V1 annual (64 bands, 10 m, UTM tiles).
AEF = RasterProduct(
    name="aef",
    title="AlphaEarth Foundations (AEF) embeddings",
    decode="aef",
    index_names=("aef_index.gpkg", "aef_index.parquet"),
    download_hint=(
        "Get the AEF tile index https://data.source.coop/tge-labs/aef/v1/annual/aef_index.gpkg "
        "and the tiles it names (relative paths resolve beside the index) into data.root, or "
        "point data.tile_index=<index> (or data.tiles=[...]) at your copy."
    ),
    generator=generate_aef_stand_in,
    stand_in_polygons="blocks.gpkg",
    version=2,  # tiles tagged data_source=synthetic
)


def _is_pattern(p: str) -> bool:
    return any(c in p for c in "*?[")


class EmbeddingRasters:
    """Embedding-raster tiles of one product, real or synthetic.

    Parameters
    ----------
    product : RasterProduct
        The product (decode, index names, download hint, stand-in generator).
    root : path, optional
        Folder of the real product (default ``data/<product>``); its tile index
        (``product.index_names``) is used when neither ``tile_index`` nor ``tiles`` is given.
    tile_index : path, optional
        Tile index (footprints -> raster paths); relative raster paths resolve beside it.
    tiles : path or list, optional
        GeoTIFF paths, folders or globs instead of a tile index.
    index_filter : mapping, optional
        Equality filters on index columns, e.g. ``{year: 2020}``.
    path_column : str, optional
        Index column with the raster paths (default: auto-detected).
    decode : str, optional
        Value decode (default: the product's).
    nodata : float, optional
        Overrides the tiles' nodata value.
    synthetic : bool
        Use the synthetic stand-in (generated once, content-keyed, under ``synthetic_root``).
    synthetic_root : path, optional
        Parent folder of generated stand-ins (default ``<root>/../synthetic/<root name>``).
    synthetic_kwargs : mapping, optional
        Arguments of the product's generator (tile size, bands, seed…).
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
    ) -> None:
        self.product = product
        self.tile_index = None if tile_index is None else Path(tile_index)
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
        # checked now (decode name, filter shape), before any data is read
        self._read = RasterInputs(path_column=path_column, index_filter=index_filter,
                                  decode=decode or product.decode, nodata=nodata)  # fmt: skip
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
        return self._read.decode

    def __repr__(self) -> str:
        where = self.tiles or self.tile_index or self.root
        return f"EmbeddingRasters({self.product.name}, {self.data_source}, {where})"

    def index_path(self) -> Path:
        """The real tile index: ``tile_index``, else the first of ``product.index_names`` that
        exists in ``root`` (else the first name, for messages)."""
        if self.tile_index is not None:
            return self.tile_index
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
        idx = self.index_path()
        if is_remote(idx) or idx.exists():
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
        """
        if self.synthetic:
            folder = self._source.ensure_synthetic()
            return dataclasses.replace(self._read, tile_index=folder / self.product.index_names[0])
        own = self._missing_real()
        problems = [m for m in [own, *also_missing] if m]
        if problems:
            hints = " ".join(h for h in (self.product.download_hint if own else "", hint) if h)
            name = self.product.title if own else f"{self.product.title} workflow"
            src = dataclasses.replace(self._source, name=name, download_hint=hints)
            raise src.not_found("; ".join(problems))
        if self.tiles is not None:
            return dataclasses.replace(self._read, tiles=list(self.tiles))
        return dataclasses.replace(self._read, tile_index=self.index_path())

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
