"""EuroSAT-style chips at labelled points of any embedding raster, as a GeoPool data source.

``conf/data/aef_points.yaml``: ``evaluate.py experiment=geopool data=aef_points`` cuts a chip
around every labelled point from an embedding-raster source (AEF, Tessera, any GeoTIFF set, read
windowed by :func:`geoemb.sources.read_chips`) and writes them once, content-keyed, in the
EuroSAT-Embed layout (:func:`geoemb.sources.points.write_point_chips`); the GeoPool benchmark
then pools them by every method and probes them exactly as it does EuroSAT-Embed.

The chip folder is a cache of (tile index or tiles, points file, options): its key hashes their
contents, so changed inputs give a new folder and a killed run leaves only a temporary folder
(removed by the next run). The run is tagged ``data_source=synthetic`` when the rasters are the
product's stand-in (``data.raster.synthetic=true``; the labelled points are then drawn in the
stand-in's census blocks: urban -> Residential, rural -> AnnualCrop).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from geoemb.data.eurosat_embed import EuroSATEmbedDataModule
from geoemb.data.eurosat_files import CLASSES
from geoemb.data.source import DataSource
from geoemb.errors import DataNotFoundError
from geoemb.sources.points import labelled_points_stand_in, write_point_chips

__all__ = ["PointChipsDataModule", "PointChipsSource"]

VERSION = 1
DONE = ".geoemb_point_chips.json"


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _identity(path: str, sha: bool = False) -> list:
    """What identifies an input file in the chip folder's key: path, size, mtime (or its SHA-256);
    a URL by itself."""
    if not os.path.exists(path):
        return [path]
    if sha:
        return [path, _sha(Path(path))]
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


@dataclasses.dataclass
class PointChipsSource(DataSource):
    """A :class:`DataSource` whose folder is derived: chips of ``rasters`` at ``points``."""

    rasters: Any = None
    points: str | None = None
    options: dict = dataclasses.field(default_factory=dict)

    def resolve(self) -> Path:
        inputs = self.rasters.resolve()  # real rasters checked, or the stand-in generated
        ti = inputs.tile_index
        if ti is None:
            tiles = {"tiles": [_identity(str(t)) for t in inputs.tiles]}
        elif isinstance(ti, str | os.PathLike):
            tiles = {"index": _identity(str(ti), sha=True)}
        else:  # a catalogue (index filtered / hrefs rewritten): the tiles it names
            tiles = {"catalogue": [_identity(str(t)) for t in sorted(map(str, ti["path"]))]}
        if self.points is None:
            if not self.rasters.synthetic:
                raise DataNotFoundError(
                    "data.points is not set: give a point file (GeoPackage/GeoParquet/GeoJSON) with "
                    f"a {self.options['label_column']!r} column of EuroSAT class names, or run on the "
                    "stand-in: data.raster.synthetic=true"
                )
            poly = Path(self.rasters.stand_in_polygons())
            pts_id = {"stand_in": str(poly), "sha256": _sha(poly)}
        else:
            if not Path(self.points).is_file():
                raise DataNotFoundError(f"labelled points not found: data.points={self.points}")
            pts_id = {"points": str(self.points), "sha256": _sha(Path(self.points))}
        ident = {"version": VERSION, "tiles": tiles, "points": pts_id, "options": self.options,
                 "decode": self.rasters.decode}  # fmt: skip
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
        folder = Path(self.synthetic_root) / key
        if (folder / DONE).is_file():
            return folder
        points = self.points or labelled_points_stand_in(
            pts_id["stand_in"], seed=self.options["seed"]
        )
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{key}.{secrets.token_hex(4)}.tmp"
        try:
            write_point_chips(self.rasters, points, tmp, classes=CLASSES, **self.options)
            (tmp / DONE).write_text(json.dumps(ident, indent=1) + "\n")
            try:
                os.rename(tmp, folder)
            except OSError:  # another run finished the same folder first
                if not (folder / DONE).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder


class PointChipsDataModule(EuroSATEmbedDataModule):
    """EuroSAT-Embed DataModule over chips cut at labelled points from ``raster``.

    Parameters
    ----------
    raster : EmbeddingRasters
        The embedding-raster source (``conf/data/aef.yaml``-like node, raw decode).
    points : str, optional
        Labelled points (any vector format, any CRS); ``None`` with a stand-in raster: points in
        the stand-in's census blocks.
    label_column : str
        Column of EuroSAT class names.
    chip_size : int
        Chip side in pixels (also the loader's ``size``).
    encoder : str
        ``aef`` or ``tessera`` (the EuroSAT-Embed format the chips are stored in).
    cache_dir : str
        Parent folder of the content-keyed chip folders.
    seed : int
        Random split (and stand-in points) seed.
    encoders : list of str
        What ``experiment=geopool`` evaluates (``[encoder]``).
    synthetic : bool
        The config's switch; the raster node follows it (``raster.synthetic`` decides).
    """

    def __init__(self, raster: Any, points: str | None = None, label_column: str = "label",
                 chip_size: int = 64, encoder: str = "aef", split: str = "standard",
                 values: str = "raw", batch_size: int = 64, num_workers: int | str | None = 0,
                 pin_memory: bool = False, cache_dir: str = "data/point_chips", seed: int = 0,
                 encoders: list[str] | None = None, synthetic: bool = False) -> None:  # fmt: skip
        super().__init__(root=cache_dir, encoder=encoder, split=split, values=values,
                         batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         synthetic=False, synthetic_root=cache_dir, size=chip_size)  # fmt: skip
        self.source = PointChipsSource(
            name=f"chips at labelled points ({encoder})", root=Path(cache_dir),
            synthetic=bool(raster.synthetic), synthetic_root=Path(cache_dir), rasters=raster,
            points=points, options={"size": int(chip_size), "label_column": label_column,
                                    "encoder": encoder, "seed": int(seed)},
        )  # fmt: skip

    @property
    def data_root(self) -> Path:
        return self.source.resolve()
