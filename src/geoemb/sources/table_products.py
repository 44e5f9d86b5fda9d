"""The embedding-table products geoemb reads: Clay (v0, v1.5), Major TOM, any GeoParquet.

Facts and where they come from (checked offline against the sources named; see the README
section "Embedding products" for what could not be confirmed):

- **Clay v1.5** (LGND, Source Cooperative ``clay/lgnd-clay-v1-5-sentinel-2-l2a``): GeoParquet 1.1,
  Hive-partitioned ``geohash_l2=<gh>/year=<yyyy>/month=<mm>/`` (TerraBit notes: 511 level-2
  geohash cells, 1,021 files, 49,785,116 rows); columns ``chips_id, cell_id, rasters_id,
  stac_item_id, collection, datetime, embedding (list<float32>[1024]), bbox struct, geometry
  (WKB polygon)``. The embedding column is ``embedding`` (TerraBit's reader default
  ``embedding_col="embedding"`` and its shard query ``SELECT chips_id, bbox, embedding``).
- **Clay v0** (Clay docs ``model_embeddings.md`` "Format of the embeddings file"): GeoParquet 1.0
  ``{MGRS}_{MINDATE}_{MAXDATE}_v{VER}.gpq`` with ``source_url`` (string), ``date`` (date32),
  ``embeddings`` (FixedShapeTensorArray, 768 floats) and ``geometry`` (WKB polygon, OGC:CRS84).
- **Major TOM embeddings** (dataset cards ``Major-TOM/Core-S2RGB-SigLIP`` etc., torchgeo 0.9
  ``MajorTOMEmbeddings``): ``embeddings/*.parquet`` with ``unique_id`` (64-hex string),
  ``embedding`` (list of floats: 1152 SigLIP, 1024 DINOv2, 2048 SSL4EO), ``timestamp``
  (``YYYYMMDDTHHMMSS``), ``product_id``, ``grid_cell``, ``grid_row_u``, ``grid_col_r`` (int16),
  ``geometry`` (WKB footprint), ``centre_lat``/``centre_lon`` (float32), ``utm_footprint``,
  ``utm_crs``, ``pixel_bbox`` (4 ints). torchgeo's loader locates a row by
  ``centre_lon``/``centre_lat``; so does geoemb.
- torchgeo 0.9 ``ClayEmbeddings`` reads either column name (``embedding`` or ``embeddings``) and
  locates a row by its footprint centroid; geoemb does the same.
"""

from __future__ import annotations

from geoemb.sources.tables import TableProduct

__all__ = ["CLAY", "GEOPARQUET", "MAJORTOM", "TABLE_PRODUCTS"]

CLAY = TableProduct(
    name="clay",
    title="Clay embeddings (v0 / v1.5 GeoParquet)",
    embedding_columns=("embedding", "embeddings"),
    id_columns=("chips_id",),
    lonlat_columns=None,
    download_hint=(
        "Clay v1.5 (LGND, public, no credentials): aws s3 sync --no-sign-request "
        "s3://us-west-2.opendata.source.coop/clay/lgnd-clay-v1-5-sentinel-2-l2a/ <data.path>; "
        "Clay v0: https://source.coop/clay/clay-model-v0-embeddings. Point data.path at one "
        "product folder of the download (Hive partitions are found recursively)."
    ),
)

MAJORTOM = TableProduct(
    name="majortom",
    title="Major TOM embeddings (Parquet)",
    embedding_columns=("embedding",),
    id_columns=("unique_id",),
    lonlat_columns=("centre_lon", "centre_lat"),
    download_hint=(
        "huggingface-cli download Major-TOM/Core-S2RGB-SigLIP --repo-type dataset "
        "--include 'embeddings/*' --local-dir <data.path> (or Core-S2RGB-DINOv2, "
        "Core-S2L1C-SSL4EO, Core-S1RTC-SSL4EO)."
    ),
)

GEOPARQUET = TableProduct(
    name="geoparquet",
    title="embedding table (Parquet/GeoParquet)",
    embedding_columns=("embedding",),
    id_columns=("id",),
    lonlat_columns=("lon", "lat"),
    download_hint=(
        "Give a Parquet/GeoParquet file or folder with one embedding (list of floats) per row "
        "and a point/polygon geometry (GeoParquet) or lon/lat columns."
    ),
)

TABLE_PRODUCTS = {p.name: p for p in (CLAY, MAJORTOM, GEOPARQUET)}
