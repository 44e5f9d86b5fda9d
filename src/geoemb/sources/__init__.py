"""Embedding products as data sources, one registry.

:data:`SOURCES` (alias :data:`RASTERS`) names the embedding-raster products geoemb reads — ``aef``
(AlphaEarth Foundations / Google Satellite Embedding V1 annual, int8 COGs + AEF's tile index)
and ``tessera`` (GeoTessera tiles: int8 + per-pixel scales, or float32 GeoTIFF exports). Each
entry builds an :class:`~geoemb.sources.rasters.EmbeddingRasters` source for its
:class:`~geoemb.sources.rasters.RasterProduct` (``meta["product"]``).
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
from geoemb.utils.registry import Registry

__all__ = [
    "AEF",
    "RASTERS",
    "SOURCES",
    "TESSERA",
    "Chips",
    "EmbeddingRasters",
    "RasterProduct",
    "raster_source",
    "read_chips",
]

#: Embedding sources: name -> builder of an :class:`EmbeddingRasters` source.
SOURCES = Registry("embedding source")
#: The raster products (today every source is a raster product).
RASTERS = SOURCES


def _register(product: RasterProduct) -> None:
    SOURCES.add(
        product.name,
        functools.partial(EmbeddingRasters, product),
        description=product.title,
        product=product,
        kind="raster",
    )


_register(AEF)
_register(TESSERA)


def raster_source(product: str = "aef", **kwargs: Any) -> EmbeddingRasters:
    """The :class:`EmbeddingRasters` source of ``product`` (a :data:`RASTERS` name) built with
    ``kwargs`` (``root``, ``tile_index``, ``tiles``, ``synthetic``…); unknown names raise
    :class:`~geoemb.utils.registry.UnknownNameError` listing the valid ones."""
    return RASTERS.build(product, **kwargs)
