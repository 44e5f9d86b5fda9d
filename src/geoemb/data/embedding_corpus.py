"""An ``(N, D)`` embedding corpus (``conf/data/embedding_corpus.yaml``, ``clay.yaml``,
``majortom.yaml``): real file or stand-in.

With ``table`` set (``clay``, ``majortom``, ``geoparquet``: a :data:`geoemb.sources.TABLES` name)
``data.path`` is that product's table (file, folder or Hive-partitioned tree) read by
:class:`geoemb.sources.tables.EmbeddingTable`, and the stand-in is the product's published layout
(:mod:`geoemb.synthetic.clay`, :mod:`geoemb.synthetic.majortom`).

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
from geoemb.retrieval.inputs import check_embeddings, read_embeddings
from geoemb.synthetic import clay, majortom
from geoemb.synthetic.retrieval_corpus import generate

__all__ = ["EmbeddingCorpusSource", "PathDataSource"]

#: Arguments of the stand-in generator that ``data.synthetic_kwargs`` may set.
SYNTHETIC_KWARGS = ("n", "dim", "seed", "parts")

#: Stand-in generator per table product (``data.synthetic_kwargs.version: v0`` for Clay v0).
TABLE_GENERATORS = {
    "clay": clay.generate,
    "clay_v0": clay.generate_v0,
    "majortom": majortom.generate,
    "geoparquet": clay.generate,
}


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
    column : str, optional
        Embedding column of Parquet inputs (default ``embedding``; for tables the product's).
    synthetic : bool
        Use the synthetic stand-in (generated once under ``synthetic_root``).
    synthetic_root : str, optional
        Parent folder of generated stand-ins (default ``data/synthetic/embedding_corpus``).
    synthetic_kwargs : dict
        Stand-in size: ``n`` rows, ``dim``, ``seed`` (and ``parts`` files); for tables the
        product generator's arguments (``version: v0`` selects Clay v0).
    table : str, optional
        An embedding-table product (:data:`geoemb.sources.TABLES`): ``clay``, ``majortom``,
        ``geoparquet``.
    columns : dict, optional
        Column overrides for tables: ``id_column``, ``lon_column``, ``lat_column``,
        ``geometry_column`` (null values are ignored).
    """

    name = "embedding corpus"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        column: str | None = "embedding",
        synthetic: bool = False,
        synthetic_root: str | os.PathLike | None = None,
        synthetic_kwargs: Mapping[str, Any] | None = None,
        table: str | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.column = None if column is None else str(column)
        self.synthetic = bool(synthetic)
        self.table = table
        self.columns = {k: v for k, v in dict(columns or {}).items() if v is not None}
        gen = generate
        if table is None:
            kw = {"n": 20000, "dim": 256, "seed": 0}
            kw.update(check_synthetic_kwargs(synthetic_kwargs, SYNTHETIC_KWARGS))
        else:
            from geoemb.sources import TABLES

            product = TABLES.get(table).meta["product"]  # unknown names list the valid ones
            kw = dict(synthetic_kwargs or {})
            gen = TABLE_GENERATORS[f"{table}_{kw.pop('version')}" if "version" in kw else table]
            self.download_hint = product.download_hint
        self.synthetic_kwargs = kw
        self._source = PathDataSource(
            name=self.name,
            root=self.path or Path("data") / "embedding_corpus",
            synthetic=self.synthetic,
            synthetic_root=synthetic_root or Path("data") / "synthetic" / "embedding_corpus",
            synthetic_kwargs=self.synthetic_kwargs,
            generator=gen,
            check=lambda p: None if p.exists() else f"no file or folder {p}",
            download_hint=getattr(self, "download_hint", None)
            or (
                "Give an (N, D) float .npy file or a Parquet file/folder with an embedding column "
                "(or data=clay / data=majortom for those products' tables)."
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
        if self.table is not None:
            return check_embeddings(self.table_rows(root).embeddings, self.describe())
        return read_embeddings(root, self.column or "embedding", source=self.describe())

    def table_rows(self, root: str | os.PathLike | None = None):
        """Every row of the ``table`` product at ``root`` (default: the resolved data folder):
        :class:`~geoemb.sources.tables.TableRows` (ids, lon, lat, bbox, embeddings)."""
        from geoemb.sources import table_source

        if self.table is None:
            raise InputError("table_rows needs data.table (clay, majortom, geoparquet)")
        root = self._source.resolve() if root is None else root
        return table_source(self.table, path=root, embedding_column=self.column,
                            **self.columns).read()  # fmt: skip
