"""The ONE module that talks to torchgeo's geo-indexing API (pinned: torchgeo 0.8.1).

torchgeo changed its indexing API between releases (0.8: ``(slice, slice, slice)`` queries and a
GeoDataFrame index; older: ``BoundingBox`` + rtree; 0.9+: ``GeoSlice`` tuples, Tensor bounds, a new
``IntersectionDataset`` signature; reference/earth_surface_water.md §4). Everything that depends on
those details -- RasterDataset subclasses, intersection, samplers, index/bounds handling, collation --
lives here so an upgrade touches one file.

Public helpers
--------------
- :func:`raster_dataset` -- a ``*.tif`` RasterDataset over an explicit file list, warped to ``crs``/``res``.
- :func:`intersect` -- image & mask intersection dataset (tutorial: ``images & masks``).
- :func:`index_entries` -- ``[(filepath, (xmin, ymin, xmax, ymax))]`` of a dataset's index.
- :func:`random_sampler` / :func:`grid_sampler` -- RandomGeoSampler seeded per ``(seed, epoch)`` /
  GridGeoSampler, pixel units.
- :func:`sampler_queries` -- materialise a sampler's queries (list of GeoSlice).
- :func:`query_bounds` / :func:`warped_size_px` -- bounds of a query / pixel size of warped bounds.
- :func:`collate_image_mask` -- ``stack_samples`` keeping only ``image`` (B,C,H,W) float32 and
  ``mask`` (B,H,W) long.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from rasterio.crs import CRS
from torch import Tensor
from torch.utils.data import Sampler
from torchgeo.datasets import IntersectionDataset, RasterDataset, stack_samples
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler, Units
from torchgeo.samplers.utils import get_random_bounding_box

__all__ = [
    "TORCHGEO_VERSION",
    "GeoTiffRaster",
    "as_crs",
    "collate_image_mask",
    "dataset_res",
    "grid_sampler",
    "index_entries",
    "intersect",
    "query_bounds",
    "random_sampler",
    "raster_dataset",
    "sampler_queries",
    "warped_size_px",
]

TORCHGEO_VERSION = "0.8.1"

GeoQuery = Any  # torchgeo 0.8: tuple[slice, slice, slice] (x, y, t)


def as_crs(crs: str | int | CRS | Any) -> CRS:
    """Return a rasterio CRS from ``"EPSG:3395"``, ``3395``, WKT, pyproj or rasterio CRS."""
    if isinstance(crs, CRS):
        return crs
    if isinstance(crs, int):
        return CRS.from_epsg(crs)
    if hasattr(crs, "to_wkt"):
        return CRS.from_wkt(crs.to_wkt())
    return CRS.from_user_input(crs)


class GeoTiffRaster(RasterDataset):
    """RasterDataset that only indexes ``*.tif`` files whose basename matches ``filename_regex``.

    The base class uses ``filename_glob="*"`` and would index any readable sidecar
    (reference/earth_surface_water.md §4). ``filename_regex`` may carry a ``date`` group
    (``%Y%m%d``) so scenes and truths of different acquisitions never intersect in time.
    """

    filename_glob = "*.tif"
    filename_regex = r".*\.tif$"
    date_format = "%Y%m%d"


def raster_dataset(
    files: Sequence[str | os.PathLike],
    *,
    crs: str | int | CRS,
    res: float,
    is_image: bool,
    filename_regex: str | None = None,
    cache: bool = True,
) -> RasterDataset:
    """Build a warped RasterDataset over exactly ``files``.

    Parameters
    ----------
    files : list of paths
        GeoTIFFs to index (an explicit list, so pairing decided by the caller is what gets read).
    crs, res : target CRS and resolution (CRS units); every file is warped to it on read.
    is_image : bool
        True -> float32, bilinear, sample key ``image`` (C,H,W); False -> long, nearest, key
        ``mask`` (H,W) (single band).
    filename_regex : str, optional
        Regex with an optional ``date`` group matched against basenames.

    Returns
    -------
    RasterDataset whose ``index`` has one row per file.
    """
    attrs: dict[str, Any] = {"is_image": bool(is_image)}
    if filename_regex is not None:
        attrs["filename_regex"] = filename_regex
    cls = type("ImageRaster" if is_image else "MaskRaster", (GeoTiffRaster,), attrs)
    return cls(paths=[str(f) for f in files], crs=as_crs(crs), res=float(res), cache=cache)


def intersect(images: RasterDataset, masks: RasterDataset) -> IntersectionDataset:
    """Spatio-temporal intersection ``images & masks`` (samples carry ``image`` and ``mask``)."""
    return IntersectionDataset(images, masks)


def dataset_res(dataset: Any) -> tuple[float, float]:
    """(xres, yres) of a GeoDataset in CRS units."""
    xres, yres = dataset.res
    return float(xres), float(yres)


def index_entries(dataset: Any) -> list[tuple[str, tuple[float, float, float, float]]]:
    """One ``(filepath, (xmin, ymin, xmax, ymax))`` per index row (warped, axis-aligned bounds).

    For an intersection dataset the filepath is the first dataset's (``filepath_1``).
    """
    index = dataset.index
    col = "filepath" if "filepath" in index.columns else "filepath_1"
    return [
        (str(fp), tuple(float(v) for v in geom.bounds))
        for fp, geom in zip(index[col].tolist(), index.geometry.tolist())
    ]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed derived from ``(seed, epoch)`` (numpy ``SeedSequence``)."""
    import numpy as np

    state = np.random.SeedSequence([int(seed) % 2**64, int(epoch)]).generate_state(1, np.uint64)
    return int(state[0] % 2**63)


class _SeededRandomGeoSampler(RandomGeoSampler):
    """RandomGeoSampler whose chips depend only on ``(seed, epoch)``.

    Each ``__iter__`` draws from a generator seeded with :func:`epoch_seed` ``(seed, epoch)``, so
    epoch ``e`` yields the same chips whether or not the run was interrupted and resumed before it
    (torchgeo 0.8.1 draws the tile from the global RNG and keeps one generator for the whole run,
    so a resumed run replayed epoch 0's chips). Lightning calls :meth:`set_epoch` before every
    training epoch (as for ``DistributedSampler``); without it the epoch advances by one per pass.
    ``seed=None`` keeps torchgeo's behaviour (global RNG, restored from checkpoints by geoemb).
    """

    def __init__(self, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = None if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the chips of ``epoch`` on the next pass."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[GeoQuery]:
        generator = self.generator
        if self.seed is not None:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        for _ in range(len(self)):
            idx = int(torch.multinomial(self.areas, 1, generator=generator))
            bounds = self.bounds[idx]
            interval = self.intervals[idx]
            x, y = get_random_bounding_box(bounds, self.size, self.res, generator)
            yield x, y, slice(interval.left, interval.right)


def random_sampler(
    dataset: Any, size_px: int, length: int | None, seed: int | None = 0
) -> RandomGeoSampler:
    """``RandomGeoSampler(dataset, size=size_px, length=length, units=PIXELS)`` seeded per epoch.

    Epoch ``e`` samples with a generator seeded from ``(seed, e)`` (see
    :class:`_SeededRandomGeoSampler`); index rows smaller than the chip are skipped by torchgeo,
    so callers should check sizes first.
    """
    return _SeededRandomGeoSampler(
        dataset, size=size_px, length=length, units=Units.PIXELS, seed=seed
    )


class _SubsetSampler(Sampler):
    """At most ``length`` queries of a base sampler, evenly spaced over its full sequence."""

    def __init__(self, base: Sampler, length: int) -> None:
        self.base = base
        n = len(base)
        self.keep = sorted({int(i * n / length) for i in range(min(length, n))}) if n else []

    def __iter__(self) -> Iterator[GeoQuery]:
        keep = set(self.keep)
        for i, query in enumerate(self.base):
            if i in keep:
                yield query

    def __len__(self) -> int:
        return len(self.keep)


def grid_sampler(
    dataset: Any, size_px: int, stride_px: int | None = None, length: int | None = None
) -> Sampler:
    """``GridGeoSampler(dataset, size, stride, units=PIXELS)``, optionally thinned to ``length``.

    torchgeo 0.8.1 adds a last row/column flush with the right/bottom edge (ceil in
    ``tile_to_chips``), so the grid covers each index row completely.
    """
    sampler = GridGeoSampler(dataset, size=size_px, stride=stride_px, units=Units.PIXELS)
    if length is not None and length < len(sampler):
        return _SubsetSampler(sampler, int(length))
    return sampler


def sampler_queries(sampler: Sampler) -> list[GeoQuery]:
    """All queries a sampler yields in one pass."""
    return list(iter(sampler))


def query_bounds(query: GeoQuery) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a sampler query."""
    x, y = query[0], query[1]
    return float(x.start), float(y.start), float(x.stop), float(y.stop)


def collate_image_mask(samples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """Stack torchgeo samples into ``{"image": (B,C,H,W) float32, "mask": (B,H,W) long}``.

    Non-tensor keys (``crs``, ``bounds``) are dropped. A mask with a leftover channel axis
    ``(B,1,H,W)`` is reduced with ``[:, 0]`` (never ``squeeze()``, which breaks at batch size 1).
    """
    batch = stack_samples(samples)
    out: dict[str, Tensor] = {"image": batch["image"].float()}
    if "mask" in batch:
        mask = batch["mask"]
        if mask.ndim == 4:
            mask = mask[:, 0]
        out["mask"] = mask.long()
    return out


def warped_size_px(
    bounds: tuple[float, float, float, float], res: tuple[float, float]
) -> tuple[int, int]:
    """(height, width) in pixels of warped bounds at ``res``."""
    xmin, ymin, xmax, ymax = bounds
    return int(round((ymax - ymin) / res[1])), int(round((xmax - xmin) / res[0]))
