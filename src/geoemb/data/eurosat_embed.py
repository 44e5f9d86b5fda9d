"""EuroSAT-Embed: per-pixel foundation-model embeddings of EuroSAT (GeoPool benchmark data).

On-disk layout (``reference/geopool.md`` §3-4)::

    <root>/eurosat-train.txt  eurosat-val.txt  eurosat-test.txt          (".jpg" names, random split)
    <root>/eurosat-spatial-{train,val,test}.txt                          (longitude split)
    <root>/eurosat-<encoder>/<Class>/<Class>_<n>.tif                     band-interleaved embeddings

Encoders and their stored formats:

========================  ======  =========  ======================================================
encoder                   bands   dtype      values
========================  ======  =========  ======================================================
``aef``                   64      uint8      AlphaEarth codes 0..254, ``127`` ~ 0 (sqrt-quantised)
``olmoearth-nano``        128     float32    raw embeddings
``olmoearth-tiny``        192     float32    raw embeddings (dims per the blog; unverified)
``olmoearth-base``        768     float32    raw embeddings (dims per the blog; unverified)
``tessera``               128     uint8      GeoTessera int8 + 128 (scales not applied)
``tessera`` (ICLR)        512     float32    torchgeo Tessera encoder output
========================  ======  =========  ======================================================

Every file is read as the reference loader does: ``rasterio`` ``read(out_dtype="float32",
out_shape=(64, 64))`` (nearest resampling), so a file that is not 64x64 is resampled.

``values="raw"`` pools the stored values (reproduces the published numbers: offset codes for AEF
and Tessera-128). ``values="dequantized"`` applies the inverse quantisation: AEF
``q = code - 127; x = sign(q) * (|q| / 127.5)**2``; Tessera-128 ``x = code - 128`` (the int8
value; GeoTessera's per-pixel scales are not in the files); float32 encoders are unchanged.

Pixels whose bands all equal the file's declared nodata value, or with any non-finite band (NaN,
±inf), are invalid: ``mask`` is False there and the image value is set to 0, so they never reach a
pooling method or head (the reference has no nodata handling; the real files declare none and hold
no NaN, so this changes nothing for them). A chip with **no** valid pixel is an
:class:`~geoemb.errors.InputError` naming the file — it is not turned into a zero feature row (what
the reference's ``sanitize_features`` would silently do). An unreadable (truncated, corrupt) file is
an :class:`EmbeddingFileError` naming it. Pooled features that overflow to non-finite values (e.g.
covariance of values near the float32 limit) are kept as computed and reported with a warning by
:func:`pool_dataset`; the probes then zero them as the reference does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geoemb.data.base import SplitDataModule
from geoemb.errors import InputError

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
"""EuroSAT class names; label = index (alphabetical, torchgeo/GeoPool order)."""

SPLIT_TYPES: tuple[str, ...] = ("standard", "spatial")
"""``standard`` = random split of Neumann et al.; ``spatial`` = torchgeo longitude split."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
VALUES: tuple[str, ...] = ("raw", "dequantized")
IMAGE_SIZE = 64

DOWNLOAD_HINT = (
    "Download the pixel embeddings from https://hf.co/datasets/isaaccorley/eurosat-embed "
    "(eurosat-<encoder>.tar.gz) and the split files eurosat[-spatial]-{train,val,test}.txt from "
    "https://hf.co/datasets/torchgeo/eurosat into the data root, or run on the synthetic stand-in "
    "with `data.synthetic=true`."
)


class EmbeddingFileError(InputError, OSError):
    """An EuroSAT-Embed GeoTIFF cannot be read (truncated, corrupt, not a GeoTIFF)."""


@dataclass(frozen=True)
class EncoderFormat:
    """One admissible on-disk format of an encoder's embedding GeoTIFFs."""

    bands: int
    dtype: str
    offset: float | None = None  # integer code of 0 (uint8 formats)
    kind: str = "float"  # "aef" (sqrt quantised), "int8" (offset int8), "float"


ENCODER_FORMATS: dict[str, tuple[EncoderFormat, ...]] = {
    "aef": (EncoderFormat(64, "uint8", 127.0, "aef"),),
    "olmoearth-nano": (EncoderFormat(128, "float32"),),
    "olmoearth-tiny": (EncoderFormat(192, "float32"),),
    "olmoearth-base": (EncoderFormat(768, "float32"),),
    "tessera": (EncoderFormat(128, "uint8", 128.0, "int8"), EncoderFormat(512, "float32")),
}
"""encoder name -> admissible (bands, dtype) formats; the file must match one of them."""


def encoder_dir(root: str | os.PathLike, encoder: str) -> Path:
    """Directory ``<root>/eurosat-<encoder>`` holding that encoder's class folders."""
    return Path(root) / f"eurosat-{encoder}"


def split_file(root: str | os.PathLike, split: str, split_type: str = "standard") -> Path:
    """Path of the split file, e.g. ``<root>/eurosat-spatial-test.txt``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    if split_type not in SPLIT_TYPES:
        raise ValueError(f"split_type={split_type!r}: expected one of {SPLIT_TYPES}")
    prefix = "eurosat-spatial" if split_type == "spatial" else "eurosat"
    return Path(root) / f"{prefix}-{split}.txt"


def parse_split_file(path: str | os.PathLike) -> list[str]:
    """Read a split file and return the file stems (``"AnnualCrop_1"``), in file order.

    Lines may carry ``.jpg`` (real files) or ``.tif`` names; blank lines are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EuroSAT split file not found: {path}. {DOWNLOAD_HINT}")
    stems = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        stem = Path(name).stem
        cls = stem.rsplit("_", 1)[0]
        if cls not in CLASSES:
            raise InputError(
                f"{path}:{lineno}: {name!r} is not '<Class>_<n>.jpg' with a EuroSAT class "
                f"(expected one of {CLASSES})"
            )
        stems.append(stem)
    if not stems:
        raise InputError(f"EuroSAT split file {path} lists no images")
    return stems


def label_of(stem: str) -> int:
    """Label of a file stem ``<Class>_<n>`` (index in :data:`CLASSES`)."""
    return CLASSES.index(stem.rsplit("_", 1)[0])


def check_format(path: Path, encoder: str, count: int, dtype: str) -> EncoderFormat:
    """Return the :class:`EncoderFormat` matching a file or raise naming the file."""
    if encoder not in ENCODER_FORMATS:
        raise InputError(f"encoder={encoder!r}: expected one of {sorted(ENCODER_FORMATS)}")
    for fmt in ENCODER_FORMATS[encoder]:
        if fmt.bands == count and fmt.dtype == dtype:
            return fmt
    expected = " or ".join(f"{f.bands} bands {f.dtype}" for f in ENCODER_FORMATS[encoder])
    raise InputError(
        f"{path}: {count} bands of {dtype} contradicts encoder {encoder!r} (expected {expected})"
    )


def dequantize(x: np.ndarray, fmt: EncoderFormat) -> np.ndarray:
    """Invert the stored quantisation of ``x`` (float32 codes, any shape) for format ``fmt``.

    AEF: ``q = code - 127; sign(q) * (|q| / 127.5)**2``. Tessera-128: ``code - 128``.
    Float formats: unchanged.
    """
    if fmt.kind == "aef":
        q = x.astype(np.float64) - fmt.offset
        return (np.sign(q) * (np.abs(q) / 127.5) ** 2).astype(np.float32)
    if fmt.kind == "int8":
        return (x - np.float32(fmt.offset)).astype(np.float32)
    return x


def _gdal_reason(e: BaseException) -> str:
    """``e``'s message plus the GDAL errors chained to it (rasterio's own says only "Read failed")."""
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        msg = str(e).strip()
        if msg and msg not in parts and not msg.startswith("Read failed"):
            parts.append(msg)
        e = e.__cause__ or e.__context__
    return "; ".join(parts) or "read failed"


def read_embedding(
    path: str | os.PathLike,
    encoder: str,
    values: str = "raw",
    size: int | None = IMAGE_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one EuroSAT-Embed GeoTIFF like the reference loader.

    Parameters
    ----------
    path:
        The ``.tif`` file.
    encoder:
        Encoder name (key of :data:`ENCODER_FORMATS`); the band count/dtype must match it.
    values:
        ``"raw"`` (stored values as float32) or ``"dequantized"`` (see :func:`dequantize`).
    size:
        Output height = width (nearest resampling via ``out_shape``); ``None`` keeps the file size.

    Returns
    -------
    image:
        ``(D, size, size)`` float32; invalid pixels set to 0.
    mask:
        ``(size, size)`` bool, True = valid.

    Raises
    ------
    EmbeddingFileError
        The file cannot be read (truncated/corrupt); names the file.
    InputError
        Band count/dtype contradict ``encoder``, or no pixel is valid; names the file.
    """
    import rasterio
    from rasterio.errors import RasterioError

    if values not in VALUES:
        raise ValueError(f"values={values!r}: expected one of {VALUES}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EuroSAT-Embed file not found: {path}. {DOWNLOAD_HINT}")
    try:
        with rasterio.open(path) as src:
            fmt = check_format(path, encoder, src.count, src.dtypes[0])
            shape = (src.count, size, size) if size else (src.count, src.height, src.width)
            x = src.read(out_dtype="float32", out_shape=shape)
            nodata = src.nodata
    except RasterioError as e:
        raise EmbeddingFileError(
            f"cannot read EuroSAT-Embed GeoTIFF {path} (truncated or corrupt?): {_gdal_reason(e)}"
        ) from e
    invalid = ~np.isfinite(x).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        invalid |= (x == np.float32(nodata)).all(axis=0)
    if invalid.all():
        raise InputError(
            f"{path}: no valid pixel — every pixel is nodata (nodata={nodata}) or has a "
            f"non-finite (NaN/inf) band; expected at least one valid embedding pixel"
        )
    if values == "dequantized":
        x = dequantize(x, fmt)
    if invalid.any():
        x[:, invalid] = 0.0
    return x, ~invalid


class EuroSATEmbedDataset(Dataset):
    """EuroSAT-Embed split of one encoder.

    Parameters
    ----------
    root:
        Data root holding the split files and ``eurosat-<encoder>/``.
    encoder:
        ``aef``, ``olmoearth-nano|tiny|base`` or ``tessera``.
    split:
        ``train``, ``val`` or ``test``.
    split_type:
        ``standard`` (random) or ``spatial`` (longitude).
    values:
        ``raw`` or ``dequantized``.
    size:
        Resampled height = width (64 as in the reference).

    Items are dicts ``image`` (D, size, size) float32, ``mask`` (size, size) bool, ``label`` long.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        encoder: str = "aef",
        split: str = "train",
        split_type: str = "standard",
        values: str = "raw",
        size: int = IMAGE_SIZE,
    ) -> None:
        if encoder not in ENCODER_FORMATS:
            raise ValueError(f"encoder={encoder!r}: expected one of {sorted(ENCODER_FORMATS)}")
        if values not in VALUES:
            raise ValueError(f"values={values!r}: expected one of {VALUES}")
        self.root = Path(root)
        self.encoder = encoder
        self.split = split
        self.split_type = split_type
        self.values = values
        self.size = size
        self.dir = encoder_dir(root, encoder)
        if not self.dir.is_dir():
            raise FileNotFoundError(
                f"EuroSAT-Embed encoder directory not found: {self.dir}. {DOWNLOAD_HINT}"
            )
        self.stems = parse_split_file(split_file(root, split, split_type))
        self.paths = [self.dir / s.rsplit("_", 1)[0] / f"{s}.tif" for s in self.stems]
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} file(s) listed in {split_file(root, split, split_type)} are "
                f"missing under {self.dir}, e.g. {missing[0]}"
            )
        self.labels = np.array([label_of(s) for s in self.stems], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        x, m = read_embedding(self.paths[idx], self.encoder, self.values, self.size)
        return {
            "image": torch.from_numpy(x),
            "mask": torch.from_numpy(m),
            "label": torch.tensor(self.labels[idx], dtype=torch.long),
        }

    @property
    def num_bands(self) -> int:
        """Embedding dimension D (band count of the first file)."""
        import rasterio

        with rasterio.open(self.paths[0]) as src:
            check_format(self.paths[0], self.encoder, src.count, src.dtypes[0])
            return int(src.count)


def is_synthetic(root: str | os.PathLike) -> bool:
    """True if ``root`` was written by :mod:`geoemb.data.synthetic.eurosat_embed`."""
    from geoemb.data.synthetic.eurosat_embed import MARKER

    return (Path(root) / MARKER).is_file()


def data_source(root: str | os.PathLike) -> str:
    """``"synthetic"`` or ``"real"`` for a data root."""
    return "synthetic" if is_synthetic(root) else "real"


class EuroSATEmbedDataModule(SplitDataModule):
    """LightningDataModule over EuroSAT-Embed embedding rasters (for learnable pooling heads).

    Parameters
    ----------
    root:
        Real data root (split files + ``eurosat-<encoder>/``).
    encoder, values:
        See :class:`EuroSATEmbedDataset`.
    split:
        Split type: ``standard`` (random) or ``spatial``.
    batch_size, num_workers:
        DataLoader settings.
    synthetic:
        If true, generate the synthetic stand-in into ``synthetic_root`` once and read it back.
    synthetic_root:
        Where the stand-in lives (default ``<root>/../synthetic/eurosat_embed``).
    synthetic_kwargs:
        Extra arguments of :func:`geoemb.data.synthetic.eurosat_embed.generate` (e.g. ``n_per_class``).
    """

    def __init__(
        self,
        root: str = "data/eurosat_embed",
        encoder: str = "aef",
        split: str = "standard",
        values: str = "raw",
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        synthetic: bool = False,
        synthetic_root: str | None = None,
        synthetic_kwargs: dict | None = None,
        size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if split not in SPLIT_TYPES:
            raise ValueError(f"data.split={split!r}: expected one of {SPLIT_TYPES}")
        if values not in VALUES:
            raise ValueError(f"data.values={values!r}: expected one of {VALUES}")
        if encoder not in ENCODER_FORMATS:
            raise ValueError(f"data.encoder={encoder!r}: expected one of {sorted(ENCODER_FORMATS)}")
        self.encoder = encoder
        self.split = split
        self.values = values
        self.synthetic = synthetic
        if synthetic:
            sroot = synthetic_root or str(Path(root).parent / "synthetic" / "eurosat_embed")
            self.data_root = Path(sroot)
        else:
            self.data_root = Path(root)
        self.datasets: dict[str, EuroSATEmbedDataset] = {}

    @property
    def data_source(self) -> str:
        """``"synthetic"`` or ``"real"``."""
        return "synthetic" if self.synthetic else "real"

    @property
    def num_classes(self) -> int:
        return len(CLASSES)

    def prepare_data(self) -> None:
        if self.synthetic:
            from geoemb.data.synthetic.eurosat_embed import ensure_generated

            kwargs = dict(self.hparams.synthetic_kwargs or {})
            kwargs.setdefault("encoders", (self.encoder,))
            ensure_generated(self.data_root, **kwargs)
        else:
            d = encoder_dir(self.data_root, self.encoder)
            if not d.is_dir():
                raise FileNotFoundError(
                    f"EuroSAT-Embed data for encoder {self.encoder!r} not found at {d}. "
                    f"{DOWNLOAD_HINT}"
                )

    def dataset(self, split: str) -> EuroSATEmbedDataset:
        """The (cached) dataset of ``split`` (train/val/test) for this split type."""
        if split not in self.datasets:
            if self.synthetic and not is_synthetic(self.data_root):
                self.prepare_data()
            self.datasets[split] = EuroSATEmbedDataset(
                self.data_root, self.encoder, split, self.split, self.values, self.hparams.size
            )
        return self.datasets[split]

    @property
    def num_bands(self) -> int:
        """Embedding dimension D of the encoder's files."""
        return self.dataset("train").num_bands

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", ("train", "val", "test")
        )
        for s in splits:
            self.dataset(s)


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def iter_batches(
    dataset: Dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "pool",
):
    """Yield ``(image (B,D,H,W), mask (B,H,W) | None, label (B,))`` on ``device``.

    ``mask`` is ``None`` when every pixel of the batch is valid (the reference path).
    """
    pin = torch.device(device).type == "cuda"
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, pin_memory=pin
    )
    for batch in _progress(loader, len(loader), desc, progress):
        x = batch["image"].to(device, non_blocking=True)
        m = batch["mask"]
        m = None if bool(m.all()) else m.to(device, non_blocking=True)
        yield x, m, batch["label"]


def pool_dataset(
    dataset: Dataset,
    methods: str | Sequence[str],
    states: dict[str, Any] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    pool_fn: Callable | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Stream a whole split through :func:`geoemb.pooling.pool` (one read for all methods).

    Parameters
    ----------
    dataset:
        A :class:`EuroSATEmbedDataset` (or any dataset of such dicts).
    methods:
        Pooling registry keys; parametric ones need their fitted state in ``states``.
    states:
        ``method -> state`` from :func:`geoemb.pooling.fit_parametric`.
    device:
        Where pooling runs (``"cuda"`` for GPU batching).
    pool_fn:
        Replacement for :func:`geoemb.pooling.pool` (``pool_fn(x, method, mask=, state=)``);
        default: :func:`geoemb.pooling.pool_many` (statistics shared across methods).

    Returns
    -------
    features:
        ``method -> (N, F)`` float32 numpy arrays. Non-finite values (overflow in pooling; input
        NaN/inf pixels are masked before pooling) are kept as computed and reported with one
        warning per method naming how many rows hold them; the probes sanitise them.
    labels:
        ``(N,)`` int64.
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    states = states or {}
    if pool_fn is None:
        from geoemb.pooling import pool_many

        def many(x, mask):  # one pass shares statistics (mean, sort, ...) across methods
            return pool_many(x, methods, mask=mask, states=states)
    else:

        def many(x, mask):
            return {m: pool_fn(x, m, mask=mask, state=states.get(m)) for m in methods}

    feats: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    labels = []
    desc = getattr(dataset, "encoder", "pool")
    with torch.no_grad():
        for x, mk, y in iter_batches(dataset, batch_size, num_workers, device, progress, desc):
            res = many(x, mk)
            for meth in methods:
                feats[meth].append(res[meth].float().cpu().numpy())
            labels.append(y.numpy())
    out = {k: np.concatenate(v, 0).astype(np.float32, copy=False) for k, v in feats.items()}
    for meth, f in out.items():
        bad = ~np.isfinite(f).all(axis=1) if f.ndim == 2 else ~np.isfinite(f)
        if bad.any():
            log.warning(
                "pooling %r of %s: %d of %d feature rows are non-finite (overflow in pooling of "
                "finite inputs; first at row %d); the probes replace them by 0 as the reference does",
                meth,
                getattr(dataset, "dir", desc),
                int(bad.sum()),
                len(f),
                int(np.flatnonzero(bad)[0]),
            )
    return out, np.concatenate(labels).astype(np.int64)


def dataset_summary(ds: EuroSATEmbedDataset) -> str:
    """JSON string describing where a dataset came from (for cache sidecars and logs)."""
    return json.dumps(
        {
            "root": str(ds.root.resolve()),
            "encoder": ds.encoder,
            "split": ds.split,
            "split_type": ds.split_type,
            "values": ds.values,
            "size": ds.size,
            "n": len(ds),
            "data_source": data_source(ds.root),
        },
        sort_keys=True,
    )
