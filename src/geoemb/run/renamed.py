"""Config keys that were renamed — the one table, checked once for every entry point.

An old spelling stays in its yaml as a ``null`` tombstone (so that Hydra accepts the override at
all); :func:`check_renamed`, called by :func:`geoemb.run.task.task_wrapper` before any work (train,
evaluate and infer alike), raises one :class:`~geoemb.errors.InputError` naming the new key when a
tombstone is set, and drops the ``null`` tombstones so that no constructor ever sees them.

The table is keyed by *scope*: ``"*"`` holds keys renamed in every config; an evaluator's
``_target_`` holds the keys of its ``evaluation`` node (the same short name can be live in one
evaluator and a tombstone in another: ``evaluation.pooling`` is zonal's pooling spec but
compression's old ``data.pooling``; ``evaluation.device`` is live for retrieval and compression).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from geoemb.errors import InputError

__all__ = ["RENAMED", "check_renamed", "renamed_for"]

_RUN_SEED = "seed (the run's seed)"
_TRUST = "trust_checkpoint (top level)"
_DEVICE = "device (the run's device)"


def _evaluation(**keys: str) -> dict[str, str]:
    return {f"evaluation.{k}": v for k, v in keys.items()}


#: scope (``"*"`` or an evaluator ``_target_``) -> {old dotted key: what to write instead}
RENAMED: dict[str, dict[str, str]] = {
    "*": {},
    "geoemb.evaluation.geopool.GeoPoolEvaluator": _evaluation(
        synthetic="data.synthetic=true", root="data.root", synthetic_root="data.synthetic_root",
        synthetic_kwargs="data.synthetic_kwargs", values="data.values",
        batch_size="data.batch_size", num_workers="data.num_workers",
        knn_k="evaluation.probe.knn_k", linear="evaluation.probe.linear",
        linear_C="evaluation.probe.C", Cs="evaluation.probe.Cs", cv="evaluation.probe.cv",
        cache_dir="evaluation.cache.dir", trust_cache="evaluation.cache.trust_unkeyed",
        device=_DEVICE, seed=_RUN_SEED, trust_checkpoint=_TRUST,
    ),
    "geoemb.evaluation.compression.CompressionEvaluator": _evaluation(
        synthetic="data.synthetic=true", features_dir="data.path=<GeoPool cache root>",
        data_dir="paths.data_dir (the stand-in goes under data.synthetic_root)",
        synthetic_kwargs="data.synthetic_kwargs", encoders="data.encoders",
        pooling="data.pooling", split="data.split", class_names="data.class_names",
        knn_k="evaluation.probe.knn_k", linear="evaluation.probe.linear",
        linear_C="evaluation.probe.C", linear_Cs="evaluation.probe.Cs",
        linear_cv="evaluation.probe.cv", linear_max_iter="evaluation.probe.max_iter",
        spectra_components="evaluation.spectra.components",
        id_max_rows="evaluation.spectra.id_max_rows",
        id_neighbors="evaluation.spectra.id_neighbors",
        local_pca_neighbors="evaluation.spectra.local_pca_neighbors",
        seed=_RUN_SEED,
    ),
    "geoemb.evaluation.retrieval.RetrievalEvaluator": _evaluation(
        embeddings_path="data.path=<.npy or Parquet> (and data.synthetic=false)",
        n_corpus="data.synthetic_kwargs.n", dim="data.synthetic_kwargs.dim",
        seed="seed (the run's seed; the stand-in's is data.synthetic_kwargs.seed)",
    ),
    "geoemb.evaluation.zonal.ZonalStatsEvaluator": _evaluation(
        synthetic="data.synthetic=true", data_dir="data.root / data.synthetic_root",
        tiles="data.tiles", tile_index="data.tile_index", index_filter="data.index_filter",
        path_column="data.path_column", decode="data.decode", nodata="data.nodata",
        synthetic_kwargs="data.synthetic_kwargs",
        method="evaluation.pooling.method", all_touched="evaluation.pooling.all_touched",
        num_workers="evaluation.pooling.num_workers",
        chunk_size="evaluation.pooling.chunk_size", progress="evaluation.pooling.progress",
        land_column="evaluation.filters.land_column",
        drop_zero_land="evaluation.filters.drop_zero_land",
        max_land_km2="evaluation.filters.max_land_km2", bbox="evaluation.filters.bbox",
        pca_k="evaluation.analysis.pca_k", n_pcs="evaluation.analysis.n_pcs",
        n_splits="evaluation.analysis.n_splits",
        census_columns="evaluation.analysis.census_columns",
        rgb_resolution="evaluation.analysis.rgb_resolution",
        rgb_crs="evaluation.analysis.rgb_crs", seed=_RUN_SEED,
    ),
    "geoemb.evaluation.rsc_analysis.RSCAnalysis": _evaluation(
        erf_images="evaluation.erf.images", erf_per_class="evaluation.erf.per_class",
        erf_block="evaluation.erf.block", erf_border="evaluation.erf.border",
        erf_percentiles="evaluation.erf.percentiles",
        overlap_percentile="evaluation.erf.overlap_percentile",
        overlap_multiple="evaluation.erf.overlap_multiple",
        trf_input_size="evaluation.trf.input_size",
        trf_max_input_size="evaluation.trf.max_input_size",
        device=_DEVICE, seed=_RUN_SEED, trust_checkpoint=_TRUST,
    ),
}  # fmt: skip


def renamed_for(cfg: DictConfig) -> dict[str, str]:
    """The renamed keys that apply to ``cfg``: the ``"*"`` scope plus its evaluator's."""
    out = dict(RENAMED["*"])
    evaluation = cfg.get("evaluation") if isinstance(cfg, DictConfig) else None
    if isinstance(evaluation, DictConfig):
        out.update(RENAMED.get(str(evaluation.get("_target_")), {}))
    return out


def check_renamed(cfg: DictConfig) -> None:
    """Raise :class:`InputError` for every renamed key the config sets (non-null), then drop the
    ``null`` tombstones so that nothing passes them on to a constructor.

    Raises
    ------
    InputError
        ``"evaluation.synthetic was renamed: use data.synthetic=true"`` (all hits, ``; ``-joined).
    """
    table = renamed_for(cfg)
    hits = [
        f"{old} was renamed: use {new}"
        for old, new in table.items()
        if OmegaConf.select(cfg, old, default=None, throw_on_missing=False) is not None
    ]
    if hits:
        raise InputError("; ".join(hits))
    for old in table:
        parent_key, _, leaf = old.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if isinstance(parent, DictConfig) and leaf in parent:
            with open_dict(parent):
                del parent[leaf]
