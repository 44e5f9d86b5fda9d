"""Embedding products as data sources, one registry per kind.

:data:`RASTERS` names the embedding-raster products geoemb reads (today ``aef``; issue 12 adds
Tessera and the published AEF COG layout): each entry builds an
:class:`~geoemb.sources.rasters.EmbeddingRasters` source for its :class:`RasterProduct`
(``meta["product"]``). ``conf/data/<product>.yaml`` instantiates :func:`raster_source`, so
``evaluate.py experiment=zonal_stats data=<product>`` switches products and
``data.synthetic=true`` switches to the product's stand-in. Plain Python: no Hydra, no Lightning.
"""

from __future__ import annotations

import functools
from typing import Any

from geoemb.sources.rasters import AEF, EmbeddingRasters, RasterProduct
from geoemb.utils.registry import Registry

__all__ = ["AEF", "RASTERS", "EmbeddingRasters", "RasterProduct", "raster_source"]

#: Embedding-raster products: name -> builder of an :class:`EmbeddingRasters` source.
RASTERS = Registry("embedding raster source")


def _register(product: RasterProduct) -> None:
    RASTERS.add(
        product.name,
        functools.partial(EmbeddingRasters, product),
        description=product.title,
        product=product,
    )


_register(AEF)


def raster_source(product: str = "aef", **kwargs: Any) -> EmbeddingRasters:
    """The :class:`EmbeddingRasters` source of ``product`` (a :data:`RASTERS` name) built with
    ``kwargs`` (``root``, ``tile_index``, ``tiles``, ``synthetic``…); unknown names raise
    :class:`~geoemb.utils.registry.UnknownNameError` listing the valid ones."""
    return RASTERS.build(product, **kwargs)
