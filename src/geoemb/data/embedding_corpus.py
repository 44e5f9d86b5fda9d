"""An ``(N, D)`` embedding corpus (``conf/data/embedding_corpus.yaml``): real file or stand-in.

Real data: ``data.path`` is a ``.npy`` file (one float array) or a Parquet file / folder of
``*.parquet`` parts with an embedding column (the layout ``python -m geoemb.retrieval
build-corpus`` reads: LGND Clay v1.5 style ``id, lon, lat, bbox, embedding``). The synthetic
stand-in (``data.synthetic=true``) is generated once, content-keyed under ``synthetic_root``, in that
Parquet layout by :func:`geoemb.synthetic.retrieval_corpus.generate` and read back through the
same reader. Plain Python (no Lightning): the retrieval evaluator and notebooks use it directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from geoemb.data.source import DataSource
from geoemb.errors import DataNotFoundError, InputError
from geoemb.retrieval.inputs import read_embeddings
from geoemb.synthetic.retrieval_corpus import generate

__all__ = ["EmbeddingCorpusSource", "PathDataSource"]

#: Arguments of the stand-in generator that ``data.synthetic_kwargs`` may set.
SYNTHETIC_KWARGS = ("n", "dim", "seed", "parts")


class PathDataSource(DataSource):
    """A :class:`~geoemb.data.source.DataSource` whose real location is the ``data.path`` key."""

    def not_found(self, missing: str) -> DataNotFoundError:
        hint = f" {self.download_hint.strip()}" if self.download_hint else ""
        return DataNotFoundError(
            f"{self.name} not found: {missing} (data.path={self.root}).{hint} Or run on the "
            "synthetic stand-in: data.synthetic=true."
        )


def check_synthetic_kwargs(kwargs: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> dict:
    """``data.synthetic_kwargs`` as a dict, refusing keys the generator does not take."""
    kw = dict(kwargs or {})
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise InputError(f"data.synthetic_kwargs: unknown key(s) {unknown}; valid: {list(allowed)}")
    return kw


class EmbeddingCorpusSource:
    """Where the ``(N, D)`` embedding matrix of the retrieval study comes from.

    Parameters
    ----------
    path : str, optional
        ``.npy`` file, Parquet file or folder of Parquet parts (real data).
    column : str
        Embedding column of Parquet inputs.
    synthetic : bool
        Use the synthetic stand-in (generated once under ``synthetic_root``).
    synthetic_root : str, optional
        Parent folder of generated stand-ins (default ``data/synthetic/embedding_corpus``).
    synthetic_kwargs : dict
        Stand-in size: ``n`` rows, ``dim``, ``seed`` (and ``parts`` files).
    """

    name = "embedding corpus"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        column: str = "embedding",
        synthetic: bool = False,
        synthetic_root: str | os.PathLike | None = None,
        synthetic_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.column = str(column)
        self.synthetic = bool(synthetic)
        kw = {"n": 20000, "dim": 256, "seed": 0}
        kw.update(check_synthetic_kwargs(synthetic_kwargs, SYNTHETIC_KWARGS))
        self.synthetic_kwargs = kw
        self._source = PathDataSource(
            name=self.name,
            root=self.path or Path("data") / "embedding_corpus",
            synthetic=self.synthetic,
            synthetic_root=synthetic_root or Path("data") / "synthetic" / "embedding_corpus",
            synthetic_kwargs=self.synthetic_kwargs,
            generator=generate,
            check=lambda p: None if p.exists() else f"no file or folder {p}",
            download_hint=(
                "Give an (N, D) float .npy file or a Parquet file/folder with an embedding column "
                "(e.g. Clay v1.5 GeoParquet parts, or `python -m geoemb.retrieval synth --out DIR`)."
            ),
        )

    @property
    def data_source(self) -> str:
        """``"real"`` or ``"synthetic"``."""
        return self._source.data_source

    def describe(self) -> str:
        """How messages name this input (``data.path=…`` or the stand-in)."""
        if self.synthetic:
            return f"synthetic embedding corpus {self.synthetic_kwargs}"
        return f"data.path={self.path}"

    def load(self) -> np.ndarray:
        """The corpus ``(N, D)`` float32, validated (finite, 2-D, float).

        Raises
        ------
        DataNotFoundError
            Real data missing (the message says what to give and how to use the stand-in).
        InputError
            Unreadable or invalid data (naming the file and the first bad row).
        """
        if not self.synthetic and self.path is None:
            raise DataNotFoundError(
                "data.path is not set: point it at an (N, D) float .npy file or a Parquet "
                "file/folder with an 'embedding' column, or run on the synthetic stand-in: "
                "data.synthetic=true"
            )
        root = self._source.resolve()
        return read_embeddings(root, self.column, source=self.describe())
