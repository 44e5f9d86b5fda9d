"""GeoPool benchmark evaluator: pool EuroSAT-Embed, probe (kNN + linear), write paper tables.

``evaluate.py experiment=geopool`` runs, for each encoder x split type (standard = random,
spatial = longitude) x method:

1. pool train and test with :func:`geoemb.pooling.pool_many` (batched, on ``device``), streaming the
   split once for all training-free methods; ``pca_64`` is fit on the train mean vectors and
   ``bovw_128`` on the train pixels of the **same split type** (the val split is never used, as in
   the reference);
2. cache the features as ``<cache_dir>/<encoder>/<method>/{standard,spatial}.npz`` with the
   reference keys ``x_train, y_train, x_test, y_test`` (float32 / int32) plus a JSON sidecar
   describing where they came from (a cache is reused only if the sidecar matches);
3. probe with :func:`geoemb.probes.knn_classify` (cosine, k in ``knn_k``) and
   :func:`geoemb.probes.linear_probe` (StandardScaler + multinomial LR, C by 3-fold CV or fixed);
   non-finite features become 0 first (reference ``sanitize_features``);
4. write ``<results_dir>/jobs/<encoder>__<method>.csv`` (one file per encoder x method, so Hydra
   multirun jobs never write the same file) and aggregate everything found in ``results_dir``
   (plus learnable-head results) into the paper tables and the random-vs-spatial plot via
   :func:`geoemb.reporting.geopool.aggregate`.

Learnable heads trained with ``train.py experiment=pool_*`` enter the same tables either as
checkpoints (``heads=[...]``: evaluated here on their own encoder/split test set) or as the
``geopool_head_results.csv`` files their test step writes (``extra_results=[...]``, globs ok).
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoemb.evaluation.base import Evaluator
from geoemb.probes import ProbeConfig, run_probes
from geoemb.utils.io import atomic_path, atomic_write_text
from geoemb.utils.run_logger import RunLogger

log = logging.getLogger(__name__)

PROBE_METRICS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro")


# ---------------------------------------------------------------------------------- cache
def cache_path(cache_dir: str | os.PathLike, encoder: str, method: str, split_type: str) -> Path:
    """``<cache_dir>/<encoder>/<method>/<split_type>.npz`` (reference ``embeddings/`` layout)."""
    return Path(cache_dir) / encoder / method / f"{split_type}.npz"


def save_pooled(
    path: str | os.PathLike,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    meta: dict | None = None,
) -> Path:
    """Write a pooled-feature cache file (``np.savez_compressed``, reference keys and dtypes).

    ``meta`` goes to a ``.json`` sidecar beside the ``.npz`` (the npz keeps exactly the reference
    keys so reference scripts read it unchanged).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                x_train=np.asarray(x_train, dtype=np.float32),
                y_train=np.asarray(y_train, dtype=np.int32),
                x_test=np.asarray(x_test, dtype=np.float32),
                y_test=np.asarray(y_test, dtype=np.int32),
            )
    if meta is not None:
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, sort_keys=True, indent=1))
    return path


def load_pooled(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a pooled-feature cache file -> dict with ``x_train, y_train, x_test, y_test``."""
    path = Path(path)
    try:
        with np.load(path) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: pooled-feature cache lacks keys {sorted(missing)}")
            return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, EOFError) as e:
        raise OSError(f"cannot read pooled-feature cache {path}: {e}") from e


def _cache_meta(path: Path) -> dict | None:
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        return None


def sanitize(x: np.ndarray) -> np.ndarray:
    """Non-finite -> 0 (the reference's ``sanitize_features``)."""
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------------------------- probes
def probe_rows(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    knn_k: Sequence[int] = (5,),
    linear: bool = True,
    linear_C: float | None = None,
    Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
    cv: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    probe: ProbeConfig | None = None,
) -> list[dict[str, Any]]:
    """Run the probes (:func:`geoemb.probes.run_probes`); return results rows (reference columns,
    no encoder/pool). ``probe`` (a :class:`~geoemb.probes.ProbeConfig`) replaces the loose knobs
    ``knn_k … seed``, which remain for callers not yet passing one."""
    if probe is None:
        probe = ProbeConfig(knn_k=tuple(knn_k), linear=linear, C=linear_C, Cs=tuple(Cs), cv=cv,
                            seed=seed)  # fmt: skip
    res = run_probes(sanitize(x_train), np.asarray(y_train, dtype=np.int64), sanitize(x_test),
                     np.asarray(y_test, dtype=np.int64), probe, device=device)  # fmt: skip
    n = len(y_train)
    rows = []
    for k in probe.knn_k:
        m = res.metrics[f"knn_{k}"]
        rows.append({"probe": f"knn_{k}", "train_samples": n, "k": int(k), "C": "", **_m(m)})
    if probe.linear:
        m = res.metrics["linear"]
        rows.append({"probe": "linear", "train_samples": n, "k": "", "C": float(res.C), **_m(m)})
    return rows


def _m(m: dict) -> dict[str, float]:
    return {k: float(m[k]) for k in PROBE_METRICS}


# ---------------------------------------------------------------------------------- heads
def evaluate_head_checkpoint(
    ckpt_path: str | os.PathLike, device: str = "cpu", trust_checkpoint: bool = False
) -> dict[str, Any]:
    """Test a ``PoolingClassifier`` checkpoint on the test split it was trained for.

    The data config comes from the checkpoint's ``geoemb`` metadata (written by train.py). The file
    is read once through :func:`geoemb.run.checkpoints.load_checkpoint` (``weights_only=True``,
    ``_target_`` allowlist unless ``trust_checkpoint``). Returns one results row
    (``probe = end2end``).
    """
    import hydra
    from omegaconf import OmegaConf

    from geoemb.errors import CheckpointError
    from geoemb.probes import classification_metrics
    from geoemb.run.checkpoints import load_checkpoint

    loaded = load_checkpoint(ckpt_path, trust_checkpoint=trust_checkpoint)
    meta, model = loaded.meta, loaded.module.eval().to(device)
    if not hasattr(model, "head_name"):
        raise CheckpointError(
            f"{ckpt_path}: not a PoolingClassifier checkpoint ({meta['module_class']})"
        )
    dm = hydra.utils.instantiate(OmegaConf.create(meta["data"]))
    dm.prepare_data()
    dm.setup("test")
    preds, ys = [], []
    with torch.no_grad():
        for b in dm.test_dataloader():
            mask = b["mask"].to(device)
            logits = model(b["image"].to(device), None if bool(mask.all()) else mask)
            preds.append(logits.argmax(1).cpu())
            ys.append(b["label"])
    m = classification_metrics(torch.cat(ys), torch.cat(preds), num_classes=model.num_classes)
    return {
        "encoder": dm.encoder,
        "pool": model.head_name,
        "split_type": dm.split,
        "probe": "end2end",
        "train_samples": len(dm.dataset("train")),
        **_m(m),
        "k": "",
        "C": "",
        "data_source": dm.data_source,
        "values": dm.values,
    }


# ---------------------------------------------------------------------------------- evaluator
def _auto_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _sweep_dir() -> Path | None:
    """Hydra's sweep dir in a multirun (shared by all jobs), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            hc = HydraConfig.get()
            if hc.mode is not None and hc.mode.name == "MULTIRUN":
                return Path(hc.sweep.dir)
    except Exception:  # pragma: no cover - hydra absent/uninitialised
        return None
    return None


class GeoPoolEvaluator(Evaluator):
    """The GeoPool benchmark (13 pooling methods x encoders x random/spatial splits x probes).

    Parameters
    ----------
    root:
        Real EuroSAT-Embed root (split files + ``eurosat-<encoder>/``).
    synthetic:
        Use (and generate once) the synthetic stand-in at ``synthetic_root``.
    synthetic_root:
        Default ``<root>/../synthetic/eurosat_embed``.
    synthetic_kwargs:
        Arguments of :func:`geoemb.data.synthetic.eurosat_embed.generate`.
    encoders, methods, split_types:
        What to run (methods: pooling registry keys or ``"all"``).
    values:
        ``raw`` (reproduces the paper) or ``dequantized``.
    knn_k:
        kNN k values (the tables show ``table_k``).
    linear_C:
        ``None``: choose C by ``cv``-fold stratified CV over ``Cs`` (reproduction target
        ``ea8575a2``); a float: fixed C (ICLR version: 1.0).
    device:
        ``auto``, ``cpu`` or ``cuda`` (pooling and probes).
    cache_dir:
        Pooled-feature cache (``embeddings/`` layout); default ``<results_dir>/embeddings``.
    trust_cache:
        Also reuse npz files without a geoemb sidecar (e.g. the reference's pre-pooled archives).
    results_dir:
        Where jobs/tables/plots go; default: the multirun sweep dir, else the run dir.
    heads:
        PoolingClassifier checkpoints (paths/globs) to evaluate into the same tables.
    trust_checkpoint:
        Skip the ``_target_`` allowlist for the ``heads`` checkpoints (set from the top-level
        ``trust_checkpoint`` by evaluate.py; loading stays ``weights_only=True``).
    extra_results:
        More results CSVs (paths/globs), e.g. ``logs/train/pool_*/**/geopool_head_results.csv``.
    aggregate:
        Rebuild tables/plot after this job (``python -m geoemb.reporting.geopool <dir>`` also can).
    """

    def __init__(
        self,
        root: str = "data/eurosat_embed",
        synthetic: bool = False,
        synthetic_root: str | None = None,
        synthetic_kwargs: dict | None = None,
        encoders: Sequence[str] = ("aef", "olmoearth-nano", "tessera"),
        methods: Sequence[str] | str = "all",
        split_types: Sequence[str] = ("standard", "spatial"),
        values: str = "raw",
        knn_k: Sequence[int] = (5,),
        table_k: int = 5,
        linear: bool = True,
        linear_C: float | None = None,
        Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
        cv: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        device: str = "auto",
        cache: bool = True,
        cache_dir: str | None = None,
        trust_cache: bool = False,
        results_dir: str | None = None,
        heads: Sequence[str] = (),
        extra_results: Sequence[str] = (),
        aggregate: bool = True,
        seed: int = 0,
        progress: bool = True,
        trust_checkpoint: bool = False,
    ) -> None:
        from geoemb.data.eurosat_embed import ENCODER_FORMATS, SPLIT_TYPES, VALUES
        from geoemb.pooling import ALL_METHODS, PARAMETRIC, TRAINING_FREE

        self.encoders = [encoders] if isinstance(encoders, str) else list(encoders)
        for e in self.encoders:
            if e not in ENCODER_FORMATS:
                raise ValueError(f"evaluation.encoders: {e!r} not one of {sorted(ENCODER_FORMATS)}")
        if isinstance(methods, str):
            methods = list(ALL_METHODS) if methods == "all" else [methods]
        self.methods = list(methods)
        bad = [m for m in self.methods if m not in TRAINING_FREE and m not in PARAMETRIC]
        if bad:
            raise ValueError(
                f"evaluation.methods: unknown pooling method(s) {bad}; valid: {ALL_METHODS}"
            )
        self.split_types = [split_types] if isinstance(split_types, str) else list(split_types)
        for s in self.split_types:
            if s not in SPLIT_TYPES:
                raise ValueError(f"evaluation.split_types: {s!r} not one of {SPLIT_TYPES}")
        if values not in VALUES:
            raise ValueError(f"evaluation.values={values!r}: expected one of {VALUES}")
        self.root = Path(root)
        self.synthetic = bool(synthetic)
        self.synthetic_root = (
            Path(synthetic_root)
            if synthetic_root
            else self.root.parent / "synthetic" / "eurosat_embed"
        )
        self.synthetic_kwargs = dict(synthetic_kwargs or {})
        self.values = values
        self.knn_k = [int(k) for k in knn_k]
        self.table_k = int(table_k)
        self.linear = bool(linear)
        self.linear_C = None if linear_C is None else float(linear_C)
        self.Cs = [float(c) for c in Cs]
        self.cv = int(cv)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.device = _auto_device(device)
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.trust_cache = bool(trust_cache)
        self.results_dir = Path(results_dir) if results_dir else None
        self.heads = list(heads or [])
        self.extra_results = list(extra_results or [])
        self.aggregate = bool(aggregate)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.trust_checkpoint = bool(trust_checkpoint)

    # ------------------------------------------------------------------ data
    @property
    def data_root(self) -> Path:
        return self.synthetic_root if self.synthetic else self.root

    @property
    def data_source(self) -> str:
        return "synthetic" if self.synthetic else "real"

    def prepare(self) -> None:
        from geoemb.data.eurosat_embed import DOWNLOAD_HINT, encoder_dir

        if self.synthetic:
            from geoemb.data.synthetic.eurosat_embed import ensure_generated

            kw = dict(self.synthetic_kwargs)
            kw.setdefault("encoders", tuple(self.encoders))
            ensure_generated(self.synthetic_root, **kw)
            return
        for e in self.encoders:
            if not encoder_dir(self.root, e).is_dir():
                raise FileNotFoundError(
                    f"EuroSAT-Embed data for encoder {e!r} not found at {encoder_dir(self.root, e)}. "
                    f"{DOWNLOAD_HINT} (here: evaluation.synthetic=true)"
                )

    def _meta(self, encoder: str, method: str, split_type: str, n: tuple[int, int]) -> dict:
        return {
            "root": str(self.data_root.resolve()),
            "encoder": encoder,
            "method": method,
            "split_type": split_type,
            "values": self.values,
            "data_source": self.data_source,
            "n_train": n[0],
            "n_test": n[1],
            "seed": self.seed,
        }

    def _cached(self, path: Path, expect: dict) -> dict | None:
        if not (self.cache and path.is_file()):
            return None
        meta = _cache_meta(path)
        if meta is None and not self.trust_cache:
            return None
        if meta is not None:
            keys = (
                "root",
                "encoder",
                "method",
                "split_type",
                "values",
                "data_source",
                "n_train",
                "n_test",
                "seed",
            )
            if any(meta.get(k) != expect.get(k) for k in keys):
                return None
        return load_pooled(path)

    def pool_split_type(self, encoder: str, split_type: str, cache_dir: Path) -> dict[str, dict]:
        """Pooled train/test features of every method for one encoder and split type."""
        from geoemb.data.eurosat_embed import EuroSATEmbedDataset, iter_batches
        from geoemb.pooling import PARAMETRIC, fit_parametric, output_dim, pool_many
        from geoemb.pooling.parametric import fit_pca_vectors

        train = EuroSATEmbedDataset(self.data_root, encoder, "train", split_type, self.values)
        test = EuroSATEmbedDataset(self.data_root, encoder, "test", split_type, self.values)
        n = (len(train), len(test))
        D = train.num_bands  # noqa: N806
        out: dict[str, dict] = {}
        todo = []
        for m in self.methods:
            if m.startswith("pca_") and output_dim(m, D) > D:
                log.warning(
                    "%s skipped for %s: %d components > D=%d (as the reference)",
                    m,
                    encoder,
                    output_dim(m, D),
                    D,
                )
                continue
            if m.startswith("pca_") and output_dim(m, D) > len(train):
                log.warning(
                    "%s skipped for %s/%s: only %d train samples",
                    m,
                    encoder,
                    split_type,
                    len(train),
                )
                continue
            hit = self._cached(
                cache_path(cache_dir, encoder, m, split_type), self._meta(encoder, m, split_type, n)
            )
            if hit is not None:
                out[m] = hit
            else:
                todo.append(m)
        if not todo:
            return out
        free = [m for m in todo if m not in PARAMETRIC]
        param = [m for m in todo if m in PARAMETRIC]
        need_mean = any(m.startswith("pca_") for m in param)
        first = list(dict.fromkeys(free + (["mean"] if need_mean else [])))
        kw = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            device=self.device,
            progress=self.progress,
        )

        def stream(ds, methods, states=None, tag=""):
            feats = {m: [] for m in methods}
            ys = []
            with torch.no_grad():
                for x, mk, y in iter_batches(ds, desc=f"{encoder}/{split_type}/{tag}", **kw):
                    res = pool_many(x, methods, mask=mk, states=states)
                    for m in methods:
                        feats[m].append(res[m].float().cpu().numpy())
                    ys.append(y.numpy())
            return {m: np.concatenate(v) for m, v in feats.items()}, np.concatenate(ys)

        tr, ytr = stream(train, first, tag="train") if first else ({}, train.labels)
        states: dict[str, Any] = {}
        for m in param:
            if m.startswith("pca_"):
                states[m] = fit_pca_vectors(
                    torch.from_numpy(tr["mean"]).double(), n_components=output_dim(m, D)
                )
            else:
                batches = (
                    (x, mk)
                    for x, mk, _ in iter_batches(
                        train, desc=f"{encoder}/{split_type}/fit {m}", **kw
                    )
                )
                states[m] = fit_parametric(m, batches, seed=self.seed)
        bovw = [m for m in param if not m.startswith("pca_")]
        if bovw:
            tr_b, _ = stream(train, bovw, states, tag="train bovw")
            tr.update(tr_b)
        for m in param:
            if m.startswith("pca_"):
                st = states[m]
                proj = (
                    torch.from_numpy(tr["mean"]).double() - st.mean.double().cpu()
                ) @ st.components.double().cpu().T
                tr[m] = proj.float().numpy()
        te, yte = stream(test, todo, states, tag="test")
        for m in todo:
            rec = {"x_train": tr[m], "y_train": ytr, "x_test": te[m], "y_test": yte}
            if self.cache:
                save_pooled(
                    cache_path(cache_dir, encoder, m, split_type),
                    **rec,
                    meta=self._meta(encoder, m, split_type, n),
                )
            out[m] = rec
        return out

    # ------------------------------------------------------------------ run
    def resolve_results_dir(self, output_dir: Path) -> Path:
        if self.results_dir is not None:
            return self.results_dir
        return _sweep_dir() or Path(output_dir)

    def run(self, output_dir: Path, logger: RunLogger | None = None) -> dict[str, float]:
        """Pool, probe, write ``jobs/*.csv`` and (optionally) the aggregated tables/plot."""
        import pandas as pd

        from geoemb.reporting.geopool import RESULT_COLUMNS, aggregate

        logger = logger or RunLogger(None)
        self.prepare()
        rd = self.resolve_results_dir(Path(output_dir))
        cache_dir = self.cache_dir or rd / "embeddings"
        metrics: dict[str, float] = {}
        log.info(
            "GeoPool: encoders=%s methods=%s data_source=%s -> %s",
            self.encoders,
            self.methods,
            self.data_source,
            rd,
        )
        for enc in self.encoders:
            per_method: dict[str, list[dict]] = {m: [] for m in self.methods}
            for st in self.split_types:
                feats = self.pool_split_type(enc, st, cache_dir)
                for m, rec in feats.items():
                    rows = probe_rows(
                        rec["x_train"], rec["y_train"], rec["x_test"], rec["y_test"],
                        knn_k=self.knn_k, linear=self.linear, linear_C=self.linear_C,
                        Cs=self.Cs, cv=self.cv, seed=self.seed, device=self.device,
                    )  # fmt: skip
                    for r in rows:
                        r.update(
                            encoder=enc,
                            pool=m,
                            split_type=st,
                            data_source=self.data_source,
                            values=self.values,
                        )
                        name = "linear" if r["probe"] == "linear" else r["probe"]
                        metrics[f"test/{name}_acc/{st}/{enc}/{m}"] = r["accuracy"]
                    per_method[m] += rows
            for m, rows in per_method.items():
                if rows:
                    df = pd.DataFrame(rows)[RESULT_COLUMNS]
                    atomic_write_text(rd / "jobs" / f"{enc}__{m}.csv", df.to_csv(index=False))
        head_rows = []
        for pattern in self.heads:
            paths = sorted(glob.glob(str(pattern), recursive=True)) or [pattern]
            for p in paths:
                row = evaluate_head_checkpoint(
                    p, device=str(self.device), trust_checkpoint=self.trust_checkpoint
                )
                head_rows.append(row)
                metrics[f"test/end2end_acc/{row['split_type']}/{row['encoder']}/{row['pool']}"] = (
                    row["accuracy"]
                )
        if head_rows:
            df = pd.DataFrame(head_rows)[RESULT_COLUMNS]
            atomic_write_text(rd / "jobs" / "heads.csv", df.to_csv(index=False))
        logger.log_metrics(metrics)
        if self.aggregate:
            out = aggregate(rd, extra=self.extra_results, k=self.table_k, logger=logger)
            lin = out["linear_table"]
            for _, r in lin.iterrows():
                for col in ("sp Avg", "rd Avg", "Gap"):
                    if np.isfinite(r[col]):
                        metrics[f"table/linear/{r['key']}/{col.replace(' ', '_')}"] = float(r[col])
            log.info("GeoPool tables: %s", out["linear_paths"]["md"])
        metrics["data_source_synthetic"] = float(self.synthetic)
        return metrics
