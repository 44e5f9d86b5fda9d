"""Pooled-feature tables ``(N, D)`` per encoder (``conf/data/embedding_table.yaml``).

Layout (the GeoPool pooled-feature cache, ``reference/geopool.md``)::

    <path>/<encoder>/<pooling>/<split>.npz     x_train (N, D), y_train (N,), x_test (M, D), y_test (M,)

written by ``python evaluate.py experiment=geopool evaluation.cache_dir=<path>`` (default
``<results_dir>/embeddings`` of a GeoPool run). The synthetic stand-in (``data.synthetic=true``) is
generated once, content-keyed under ``synthetic_root``, in the same layout by
:func:`geoemb.synthetic.embedding_table.generate` and read back through :func:`load_features`.
Plain Python (no Lightning): the compression evaluator and notebooks use it directly.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoemb.data.embedding_corpus import PathDataSource, check_synthetic_kwargs
from geoemb.errors import DataNotFoundError, InputError
from geoemb.retrieval.inputs import check_embeddings
from geoemb.synthetic.embedding_table import DEFAULT_ENCODERS, GENERATOR_VERSION, generate

__all__ = [
    "EUROSAT_CLASSES",
    "FEATURE_KEYS",
    "EmbeddingTableSource",
    "FeatureFileError",
    "as_list",
    "load_features",
]

#: EuroSAT class names (label = index), used for 10-class real tables.
EUROSAT_CLASSES = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
    "PermanentCrop", "Residential", "River", "SeaLake",
)  # fmt: skip
FEATURE_KEYS = ("x_train", "y_train", "x_test", "y_test")
SYNTHETIC_KWARGS = ("encoders", "n_train", "n_test", "num_classes", "seed")
_HOW_TO_GET = (
    "Create it with the GeoPool benchmark (`python evaluate.py experiment=geopool "
    "evaluation.cache_dir=<dir>`, which caches <dir>/<encoder>/<method>/{standard,spatial}.npz; "
    "default <results_dir>/embeddings) and point data.path at that folder."
)


class FeatureFileError(InputError, KeyError):
    """A pooled-feature ``.npz`` lacks required arrays (a ``KeyError`` as before, and an
    :class:`~geoemb.errors.InputError`)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def as_list(v: str | Sequence[str] | None) -> list[str]:
    """A list of names from a list or a comma-separated string (Hydra sweeps pass strings)."""
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [str(s) for s in v]


def _check_x(path: Path, k: str, a: np.ndarray) -> np.ndarray:
    return check_embeddings(a, source=f"{path}: {k}", allow_integer=True)


def _check_y(path: Path, k: str, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise InputError(f"{path}: {k} must hold integer class labels, got {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            raise InputError(f"{path}: {k}[{bad[0]}] = {y[bad[0]]} is not an integer class label")
    if len(y) and y.min() < 0:
        raise InputError(f"{path}: {k} has negative labels (min {y.min()}); expected 0..K-1")
    return y.astype(np.int64)


def load_features(
    features_dir: str | os.PathLike, encoder: str, pooling: str = "mean", split: str = "standard"
) -> dict[str, np.ndarray]:
    """Read ``<features_dir>/<encoder>/<pooling>/<split>.npz`` (GeoPool cache layout).

    Returns float32 ``x_train (N, D)``, ``x_test (M, D)`` and int64 ``y_train``, ``y_test``.

    Raises
    ------
    DataNotFoundError
        No such file (the message says how to create it and how to use the stand-in).
    InputError
        Unreadable (truncated) file, missing arrays, wrong shapes or dtypes, non-finite features,
        non-integer or negative labels — the message names the file, the array and the first bad
        row.
    """
    path = Path(features_dir) / encoder / pooling / f"{split}.npz"
    if not path.exists():
        raise DataNotFoundError(
            f"pooled-feature cache {path} not found. {_HOW_TO_GET} Or run on the synthetic "
            "stand-in: data.synthetic=true."
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in FEATURE_KEYS if k not in z.files]
            if missing:
                raise FeatureFileError(
                    f"{path}: missing arrays {missing}; expected {list(FEATURE_KEYS)}"
                )
            out = {k: z[k] for k in FEATURE_KEYS}
    except FeatureFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(
            f"cannot read pooled-feature cache {path} ({type(e).__name__}: {e}); expected an "
            f".npz with arrays {list(FEATURE_KEYS)} (a truncated file must be re-created)"
        ) from e
    for k in ("x_train", "x_test"):
        out[k] = _check_x(path, k, out[k])
    for k in ("y_train", "y_test"):
        out[k] = _check_y(path, k, out[k])
    if out["x_train"].shape[1] != out["x_test"].shape[1]:
        raise InputError(
            f"{path}: x_train and x_test widths differ ({out['x_train'].shape[1]} vs "
            f"{out['x_test'].shape[1]})"
        )
    if len(out["y_train"]) != len(out["x_train"]) or len(out["y_test"]) != len(out["x_test"]):
        raise InputError(f"{path}: label counts do not match feature rows")
    return out


def _generate(folder: Path, **kw: Any) -> Path:
    return generate(folder, **kw)


class EmbeddingTableSource:
    """Pooled-feature tables of several encoders, real (GeoPool cache) or synthetic.

    Parameters
    ----------
    path : str, optional
        GeoPool cache root holding ``<encoder>/<pooling>/<split>.npz`` (real data).
    encoders : list or comma-separated str
        Encoders (cache folder names); a Hydra multirun can sweep them (``data.encoders=aef,dinov3``).
    pooling, split : str
        Pooling method folder and split file (``standard`` random or ``spatial``).
    synthetic : bool
        Use the synthetic stand-in (generated once under ``synthetic_root``).
    synthetic_root : str, optional
        Parent folder of generated stand-ins.
    synthetic_kwargs : dict
        ``n_train``, ``n_test``, ``seed``, ``num_classes`` and optionally ``encoders``
        (``{name: [D, intrinsic_dim]}``; default: the stand-ins of
        :data:`~geoemb.synthetic.embedding_table.DEFAULT_ENCODERS`).
    class_names : list, optional
        Names of the labels; default EuroSAT's for 10-class real tables, else ``class<i>``.
    """

    name = "pooled-feature tables (GeoPool cache)"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        encoders: str | Sequence[str] = ("aef", "olmoearth-nano", "tessera"),
        pooling: str = "mean",
        split: str = "standard",
        synthetic: bool = False,
        synthetic_root: str | os.PathLike | None = None,
        synthetic_kwargs: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.encoders = as_list(encoders)
        if not self.encoders:
            raise InputError("data.encoders is empty")
        self.pooling, self.split = str(pooling), str(split)
        self.synthetic = bool(synthetic)
        self.class_names_ = list(class_names) if class_names else None
        kw = check_synthetic_kwargs(synthetic_kwargs, SYNTHETIC_KWARGS)
        self._source = PathDataSource(
            name=self.name,
            root=self.path or Path("data") / "geopool_embeddings",
            synthetic=self.synthetic,
            synthetic_root=synthetic_root or Path("data") / "synthetic" / "embedding_table",
            synthetic_kwargs=self._generator_kwargs(kw) if self.synthetic else {},
            generator=_generate,
            check=self._missing,
            download_hint=_HOW_TO_GET,
            version=GENERATOR_VERSION,
        )

    def _generator_kwargs(self, kw: dict[str, Any]) -> dict[str, Any]:
        encs = kw.pop("encoders", None) or {
            e: DEFAULT_ENCODERS[e] for e in self.encoders if e in DEFAULT_ENCODERS
        }
        unknown = [e for e in self.encoders if e not in encs]
        if unknown:
            raise InputError(
                f"synthetic encoders {unknown} unknown; choose from {list(DEFAULT_ENCODERS)} or "
                "give data.synthetic_kwargs.encoders={name: [D, intrinsic_dim]}"
            )
        encs = {k: [int(v) for v in encs[k]] for k in self.encoders}
        return {"encoders": encs, "methods": [self.pooling], **kw}

    def _missing(self, root: Path) -> str | None:
        if not root.is_dir():
            return f"no folder {root}"
        missing = [
            str(root / e / self.pooling / f"{self.split}.npz")
            for e in self.encoders
            if not (root / e / self.pooling / f"{self.split}.npz").is_file()
        ]
        return f"no table {', '.join(missing)}" if missing else None

    @property
    def data_source(self) -> str:
        """``"real"`` or ``"synthetic"``."""
        return self._source.data_source

    def root(self) -> Path:
        """The folder holding ``<encoder>/<pooling>/<split>.npz`` (stand-in generated once)."""
        if not self.synthetic and self.path is None:
            raise DataNotFoundError(
                f"data.path is not set: point it at a GeoPool pooled-feature cache "
                f"(<dir>/<encoder>/<pooling>/<split>.npz). {_HOW_TO_GET} Or run on the synthetic "
                "stand-in: data.synthetic=true."
            )
        folder = self._source.resolve()
        return folder / "embeddings" if self.synthetic else folder

    def load(self) -> dict[str, dict[str, np.ndarray]]:
        """Every encoder's table, read and validated before any of them is used.

        Returns ``{encoder: {"x_train", "y_train", "x_test", "y_test"}}`` (see
        :func:`load_features`).
        """
        root = self.root()
        return {e: load_features(root, e, self.pooling, self.split) for e in self.encoders}

    def class_names(self, num_classes: int) -> list[str]:
        """Names of labels ``0..num_classes-1`` (see the class doc)."""
        if self.class_names_:
            if len(self.class_names_) < num_classes:
                raise InputError(
                    f"data.class_names has {len(self.class_names_)} names for {num_classes} classes"
                )
            return self.class_names_[:num_classes]
        if num_classes == len(EUROSAT_CLASSES) and not self.synthetic:
            return list(EUROSAT_CLASSES)
        return [f"class{i}" for i in range(num_classes)]
