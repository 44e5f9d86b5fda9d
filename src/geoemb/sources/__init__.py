"""Embedding products as data sources, one registry.

:data:`SOURCES` (alias :data:`RASTERS`) names the embedding-raster products geoemb reads — ``aef``
(AlphaEarth Foundations / Google Satellite Embedding V1 annual, int8 COGs + AEF's tile index)
and ``tessera`` (GeoTessera tiles: int8 + per-pixel scales, or float32 GeoTIFF exports); and the
embedding tables ``clay`` (v0 / v1.5 GeoParquet), ``majortom`` (Major TOM embeddings) and
``geoparquet`` (any Parquet/GeoParquet with an embedding column), :data:`TABLES`. Raster entries
build an :class:`~geoemb.sources.rasters.EmbeddingRasters` source for their
:class:`~geoemb.sources.rasters.RasterProduct`, table entries an
:class:`~geoemb.sources.tables.EmbeddingTable` (``meta["product"]``, ``meta["kind"]``).
``conf/data/<product>.yaml`` instantiates :func:`raster_source`, so
``evaluate.py experiment=zonal_stats data=<product>`` switches products and
``data.synthetic=true`` switches to the product's stand-in (its published layout).

Modules: :mod:`~geoemb.sources.aef` and :mod:`~geoemb.sources.tessera` (layouts, writers, where
each fact comes from), :mod:`~geoemb.sources.cog` (sparse COG writer),
:mod:`~geoemb.sources.tessera_vrt` (Tessera as per-zone VRT mosaics),
:mod:`~geoemb.sources.chips` (:func:`read_chips`: windows at points), :mod:`~geoemb.sources.remote`
(URLs, header cache), :mod:`~geoemb.sources.loopback` (a range-serving HTTP server for tests).
Plain Python: no Hydra, no Lightning.
"""

from __future__ import annotations

import functools
from typing import Any

from geoemb.sources.chips import Chips, read_chips
from geoemb.sources.products import AEF, TESSERA
from geoemb.sources.rasters import EmbeddingRasters, RasterProduct
from geoemb.sources.table_products import CLAY, GEOPARQUET, MAJORTOM, TABLE_PRODUCTS
from geoemb.sources.tables import EmbeddingTable, TableProduct, build_table
from geoemb.utils.registry import Registry

__all__ = [
    "AEF",
    "CLAY",
    "GEOPARQUET",
    "MAJORTOM",
    "RASTERS",
    "SOURCES",
    "TABLES",
    "TESSERA",
    "Chips",
    "EmbeddingRasters",
    "EmbeddingTable",
    "RasterProduct",
    "TableProduct",
    "raster_source",
    "read_chips",
    "table_source",
]

#: Embedding sources: name -> builder of an :class:`EmbeddingRasters` (``kind="raster"``) or an
#: :class:`EmbeddingTable` (``kind="table"``).
SOURCES = Registry("embedding source")
#: The raster products.
RASTERS = Registry("embedding raster product")
#: The table products (Clay, Major TOM, any Parquet/GeoParquet).
TABLES = Registry("embedding table product")


def _register(product: RasterProduct) -> None:
    for reg in (SOURCES, RASTERS):
        reg.add(product.name, functools.partial(EmbeddingRasters, product),
                description=product.title, product=product, kind="raster")  # fmt: skip


def _register_table(product: TableProduct) -> None:
    for reg in (SOURCES, TABLES):
        reg.add(product.name, build_table(product), description=product.title, product=product,
                kind="table")  # fmt: skip


_register(AEF)
_register(TESSERA)
for _p in TABLE_PRODUCTS.values():
    _register_table(_p)


def raster_source(product: str = "aef", **kwargs: Any) -> EmbeddingRasters:
    """The :class:`EmbeddingRasters` source of ``product`` (a :data:`RASTERS` name) built with
    ``kwargs`` (``root``, ``tile_index``, ``tiles``, ``synthetic``…); unknown names raise
    :class:`~geoemb.utils.registry.UnknownNameError` listing the valid ones."""
    return RASTERS.build(product, **kwargs)


def table_source(
    product: str = "geoparquet", path: str | None = None, **kwargs: Any
) -> EmbeddingTable:
    """The :class:`EmbeddingTable` of ``product`` (a :data:`TABLES` name: ``clay``, ``majortom``,
    ``geoparquet``) at ``path``; ``kwargs`` override its columns (``embedding_column``,
    ``id_column``, ``lon_column``/``lat_column``, ``geometry_column``)."""
    return TABLES.build(product, path=path, **kwargs)
