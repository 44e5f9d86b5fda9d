"""Corpus build on Dask: one task per input file writes its parts, one task per cell compacts.

The same :class:`~geoemb.retrieval.build.CorpusBuilder` state machine runs in every task (the
driver holds the build lock; tasks write parts with ``lock=False``), so a task retried after its
worker was killed rewrites the same part files under the same names, and the final corpus — part
numbering, compaction, manifest — equals the single-process build's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoemb.errors import GeoembError, InputError
from geoemb.retrieval.inputs import check_schemas, iter_parquet_parts

__all__ = ["DaskCorpusError", "build_on_dask", "part_offsets"]


class DaskCorpusError(GeoembError, RuntimeError):
    """A corpus task failed on Dask (its workers died too often); no manifest was written."""


def part_offsets(inputs: Sequence[dict], batch_rows: int) -> list[int]:
    """First part number of each input file (files in path order, ``ceil(rows / batch_rows)``
    parts each, as :func:`iter_parquet_parts` numbers them)."""
    out, n = [], 0
    for d in inputs:
        out.append(n)
        n += math.ceil(d["rows"] / batch_rows)
    return out


def _write_file(root: str, builder_kw: dict, encoder: Callable | None, path: str, first: int,
                n_parts: int, batch_rows: int) -> tuple[list[int], int]:  # fmt: skip
    from geoemb.retrieval.build import CorpusBuilder

    b = CorpusBuilder(root, encoder=encoder, lock=False, **builder_kw)
    parts, rows = [], 0
    try:
        for local, batch, inp in iter_parquet_parts(
            [path], batch_rows=batch_rows, with_input=True, validate=False
        ):  # the builder validates
            if local >= n_parts:
                raise InputError(f"{path}: yields more than {n_parts} parts of {batch_rows} rows")
            b.write_part(first + local, batch, inp)
            parts.append(first + local)
            rows += len(np.asarray(batch["id"]))
    finally:
        b.close()
    return parts, rows


def build_on_dask(builder: Any, inputs: Sequence[dict], batch_rows: int, client: Any,
                  expected_rows: int | None = None) -> Path:  # fmt: skip
    """Write every part of ``inputs`` (:func:`~geoemb.retrieval.inputs.input_identity` records)
    through ``client`` (one task per file), then compact on the cluster and write the manifest.

    ``builder`` is the driver's locked :class:`~geoemb.retrieval.build.CorpusBuilder`.
    """
    from distributed import progress
    from distributed.scheduler import KilledWorker

    try:  # mixed schemas across partitions: one error naming the file, before any task
        check_schemas([d["path"] for d in inputs], builder.config.source.get(
            "embedding_column", "embedding"))  # fmt: skip
    except BaseException:
        builder.close()
        raise
    cfg = builder.config
    kw = {"dim": cfg.dim, "geohash_precision": cfg.geohash_precision,
          "max_rows_per_shard": cfg.max_rows_per_shard, "quantization": cfg.quantization,
          "model": cfg.model, "source": cfg.source, "compact_rows": cfg.compact_rows}  # fmt: skip
    encoder = builder.encoder if builder._custom_encoder else None
    offsets = part_offsets(inputs, batch_rows)
    futs, names = [], {}
    for d, first in zip(inputs, offsets):
        n_parts = math.ceil(d["rows"] / batch_rows)
        futs.append(client.submit(_write_file, str(builder.root), kw, encoder, d["path"], first,
                                  n_parts, batch_rows, pure=False,
                                  key=f"geoemb-corpus-part-{first}-{builder.root.name}"))  # fmt: skip
        names[futs[-1].key] = f"input file {d['path']} (parts {first}..{first + n_parts - 1})"
    try:
        if getattr(builder, "progress", True):
            progress(futs)
        results = []
        for f in futs:
            try:
                results.append(f.result())
            except KilledWorker as e:
                raise DaskCorpusError(
                    f"{builder.root}: the Dask workers writing {names[f.key]} died too often "
                    f"({e}); no manifest was written. Check the workers' memory and rerun: the "
                    "completed parts are kept"
                ) from e
    except BaseException:
        builder.close()
        for f in futs:
            f.cancel()
        raise
    parts = {p for ps, _ in results for p in ps}
    rows = sum(r for _, r in results)
    return builder.finalize(rows if expected_rows is None else expected_rows, parts, client=client)
