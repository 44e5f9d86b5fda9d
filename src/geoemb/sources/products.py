"""The embedding-raster products geoemb reads: AEF and Tessera (:class:`RasterProduct` values).

Where each product's facts come from is recorded in :mod:`geoemb.sources.aef` and
:mod:`geoemb.sources.tessera`; the decodes in :mod:`geoemb.zonal.decodes` and
:mod:`geoemb.sources.tessera_vrt`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from geoemb.errors import InputError
from geoemb.sources.aef import AEF_BANDS, HREF_REWRITE
from geoemb.sources.rasters import EmbeddingRasters, RasterProduct
from geoemb.sources.stand_ins import aef_stand_in, tessera_stand_in
from geoemb.sources.tessera import EMBEDDINGS_DIR, TESSERA_BANDS, discover, versions
from geoemb.sources.tessera_vrt import DECODES as TESSERA_DECODES
from geoemb.sources.tessera_vrt import build_mosaics
from geoemb.zonal.params import RasterInputs

__all__ = ["AEF", "TESSERA", "tessera_layout"]

#: AlphaEarth Foundations / Google Satellite Embedding V1 annual (64 bands, 10 m, UTM COGs).
AEF = RasterProduct(
    name="aef",
    title="AlphaEarth Foundations (AEF) embeddings",
    decode="aef_power",
    decodes=("aef_power", "linear_127", "aef", "aef_uint8", "raw"),
    bands=len(AEF_BANDS),
    index_names=("aef_index.parquet", "aef_index.gpkg"),
    download_hint=(
        "Get AEF's tile index and the COGs it names: the Source Cooperative mirror "
        "https://data.source.coop/tge-labs/aef/v1/annual/aef_index.parquet (public; hrefs "
        "s3://us-west-2.opendata.source.coop/… are read over https://data.source.coop/…) or "
        "gs://alphaearth_foundations/satellite_embedding/v1/annual/ (requester pays); put the index "
        "in data.root or set data.tile_index=<index path or URL> (or data.tiles=[...])."
    ),
    generator=aef_stand_in,
    stand_in_polygons="blocks.gpkg",
    version=3,  # published layout: int8 COGs + aef_index.parquet
    href_rewrite=HREF_REWRITE,
    single_year=True,
)


def tessera_layout(source: EmbeddingRasters, folder: Path) -> RasterInputs:
    """Read a geotessera download folder: one year, one dataset version, per-zone VRT mosaics.

    Raises
    ------
    InputError
        No tiles, several years without ``data.index_filter={year: …}``, mixed dataset
        versions, or a tile that is not the product (each naming the file and the expectation).
    """
    tiles = discover(folder)
    if not tiles:
        raise InputError(
            f"no Tessera tiles under {folder}/{EMBEDDINGS_DIR}/<year>/grid_*/; expected a "
            "`geotessera download --format npy|tiff --output <folder>` result"
        )
    filt = dict(source.index_filter or {})
    unknown = sorted(set(filt) - {"year"})
    if unknown:
        raise InputError(
            f"data.index_filter: Tessera tiles can be filtered by year only, got {unknown}"
        )
    years = sorted({t.year for t in tiles})
    if "year" in filt:
        tiles = [t for t in tiles if t.year == int(filt["year"])]
        if not tiles:
            raise InputError(f"no Tessera tiles of year {filt['year']} in {folder}; found {years}")
    elif len(years) > 1:
        raise InputError(
            f"{folder} holds Tessera tiles of several years {years}: choose one with "
            f"data.index_filter={{year: {years[-1]}}}"
        )
    found = versions(tiles)
    want = source.options.get("version")
    if len(found) > 1 or (want and found and set(found) != {want}):
        detail = "; ".join(f"{v}: {[str(p) for p in ps[:2]]}" for v, ps in found.items())
        raise InputError(
            f"Tessera tiles of different dataset versions ({detail}); expected one version"
            f"{f' ({want})' if want else ''}: never mix versions in one run"
        )
    cache = source.options.get("cache_dir") or (Path(folder).parent / "cache" / "tessera_vrt")
    mosaics = build_mosaics(tiles, cache, decode=source.decode, landmask=bool(source.options["landmask"]),
                            bands=source.expected_bands)  # fmt: skip
    return dataclasses.replace(source.inputs, tiles=[str(m) for m in mosaics], decode="raw",
                               index_filter=None, path_column=None)  # fmt: skip


#: Tessera (GeoTessera): 128 channels, 10 m, 0.1° tiles (int8 + per-pixel scales, or float32).
TESSERA = RasterProduct(
    name="tessera",
    title="Tessera (GeoTessera) embeddings",
    decode="tessera_scaled",
    decodes=tuple(TESSERA_DECODES),
    bands=TESSERA_BANDS,
    marker=EMBEDDINGS_DIR,
    download_hint=(
        "Download tiles with geotessera (pip install geotessera), e.g. `geotessera download "
        "--bbox '-0.2,51.4,0.1,51.6' --year 2024 --format npy --output <data.root>` (or the "
        "default --format tiff), then point data.root at that folder."
    ),
    generator=tessera_stand_in,
    stand_in_polygons="blocks.gpkg",
    version=1,
    single_year=True,
    layout=tessera_layout,
    options={"landmask": False, "cache_dir": None, "version": None},
)
