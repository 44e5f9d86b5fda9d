"""Chesapeake RSC analysis evaluator: metrics, DWR, distance curves, ERF, TRF, stitching overlap.

``python evaluate.py experiment=rsc_analysis ckpt_path=<run>/checkpoints/<ckpt>`` (optionally
``'+evaluation.compare={baseline: <ckpt>}'``) writes under the run directory:

* ``rsc_metrics.{csv,md,tex}``: per model road R/P (TC as FP), TC R, bg R/P, DWR, kept TC pixels;
* ``distance_curve.csv`` + ``distance_curve.png``: 19-bin recall vs L1 distance, all models;
* ``erf_radii.{csv,md,tex}``, ``erf_curves.csv``, ``erf.png``: ERF of the main model per true class;
* ``trf.csv``: theoretical receptive field (px) of the main model;
and returns ``test/<metric>`` (main model), ``<name>/test/dwr`` (compared models), ``erf/<class>_r50``
etc., ``trf_px`` and ``recommended_overlap_px``.

Every checkpoint is read and verified first (``ctx.load_module``, the safe loader); each model is
evaluated on the data config it was trained on, with the non-null keys of ``data`` merged on top
(``data.synthetic=true``). Figures and tables are written by :mod:`geoemb.reporting.rsc`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from geoemb.analysis.erf import erf_analysis, recommended_overlap
from geoemb.analysis.trf import theoretical_receptive_field
from geoemb.errors import CheckpointError, InputError
from geoemb.evaluation.base import Evaluator
from geoemb.metrics.rsc import DistanceBinnedRecall, DistanceWeightedRecall, RSCConfusionMatrix
from geoemb.reporting.rsc import write_distance_curves, write_erf
from geoemb.reporting.tables import write_table
from geoemb.run.context import RunContext
from geoemb.utils.io import atomic_write_text

__all__ = ["ERFOptions", "RSCAnalysis", "TRFOptions"]


@dataclasses.dataclass(frozen=True)
class ERFOptions:
    """``evaluation.erf``: ERF sampling (:func:`geoemb.analysis.erf.erf_analysis`; blog: 200 test
    images) and the stitching overlap derived from it (:func:`~geoemb.analysis.erf.recommended_overlap`)."""

    images: int = 200
    per_class: int = 4
    block: int = 1
    border: int = 0
    percentiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    overlap_percentile: float = 0.99
    overlap_multiple: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))


@dataclasses.dataclass(frozen=True)
class TRFOptions:
    """``evaluation.trf``: theoretical receptive field (gradient method; slow on CPU for big nets)."""

    enabled: bool = True
    input_size: int = 128
    max_input_size: int = 1024


def _options(cls: type, node: Any, where: str) -> Any:
    if isinstance(node, cls):
        return node
    if isinstance(node, bool) and "enabled" in {f.name for f in dataclasses.fields(cls)}:
        return cls(enabled=node)
    try:
        return cls(**dict(node or {}))
    except TypeError as e:
        raise InputError(f"{where}: {e}; valid keys: "
                         f"{[f.name for f in dataclasses.fields(cls)]}") from e  # fmt: skip


class RSCAnalysis(Evaluator):
    """Evaluate one or more RSC checkpoints on a split and analyse the main model's receptive field.

    Parameters
    ----------
    ckpt_path : main checkpoint (written by ``train.py experiment=rsc_*``).
    data : data-config keys merged onto every checkpoint's own (``null`` values are ignored).
    compare : optional ``{name: ckpt_path}`` of further models (e.g. the baseline for distloss).
    name : display name of the main model.
    split : ``test`` (reference) or ``val``.
    max_batches : limit evaluation batches (``None`` = all).
    erf : ``evaluation.erf`` (:class:`ERFOptions`).
    trf : ``evaluation.trf`` (:class:`TRFOptions`; ``false`` skips it).
    """

    def __init__(
        self,
        ckpt_path: str | None = None,
        data: Mapping[str, Any] | None = None,
        compare: Mapping[str, str] | None = None,
        name: str = "model",
        split: str = "test",
        max_batches: int | None = None,
        erf: ERFOptions | Mapping[str, Any] | None = None,
        trf: TRFOptions | Mapping[str, Any] | bool | None = None,
    ) -> None:
        if not ckpt_path:
            raise InputError("rsc_analysis needs ckpt_path=<checkpoint of a train.py "
                             "experiment=rsc_* run>")  # fmt: skip
        if split not in ("test", "val"):
            raise InputError(f"evaluation.split must be 'test' or 'val', got {split!r}")
        if data is not None and not isinstance(data, Mapping):
            raise InputError("evaluation.data: expected data-config keys to merge onto the "
                             f"checkpoints' data configs, got {type(data).__name__}")  # fmt: skip
        self.ckpt_path, self.name, self.split = str(ckpt_path), name, split
        self.data = {k: v for k, v in dict(data or {}).items() if v is not None}
        self.compare = dict(compare or {})
        self.max_batches = max_batches
        self.erf = _options(ERFOptions, erf, "evaluation.erf")
        self.trf = _options(TRFOptions, trf, "evaluation.trf")

    def _datamodule(self, model: Any, path: str) -> Any:
        """The model's training data config with ``self.data`` merged on top, instantiated."""
        if getattr(model, "data_config", None) is None or not hasattr(model, "rsc_metrics"):
            raise CheckpointError(f"{path}: not an RSC checkpoint of train.py experiment=rsc_* "
                                  f"({type(model).__name__})")  # fmt: skip
        cfg = OmegaConf.merge(OmegaConf.create(model.data_config), OmegaConf.create(self.data))
        dm = hydra.utils.instantiate(cfg)
        dm.prepare_data()
        return dm

    @torch.no_grad()
    def _evaluate(self, model: Any, loader: Any, device: torch.device) -> tuple[dict, dict]:
        cnf, dwr, curve = RSCConfusionMatrix(), DistanceWeightedRecall(), DistanceBinnedRecall()
        for m in (cnf, dwr, curve):
            m.to(device)
        for i, batch in enumerate(loader):
            if self.max_batches is not None and i >= self.max_batches:
                break
            preds = model(batch["image"].to(device)).argmax(1) >= 1
            t3 = batch["mask_3class"].to(device)
            for m in (cnf, dwr, curve):
                m.update(preds, t3)
        row = {k: float(v) for k, v in cnf.compute().items()}
        row.update(dwr=float(dwr.compute()), tc_pixels_kept=int(dwr.n_pixels),
                   tc_pixels_dropped=int(dwr.n_dropped))  # fmt: skip
        row.update({f"tc_dist_{k}": v for k, v in curve.distance_percentiles().items()})
        return row, curve.compute()

    def run(self, ctx: RunContext) -> dict[str, float]:
        out, device = ctx.output_dir, ctx.device
        paths = {self.name: self.ckpt_path, **self.compare}
        models = {n: ctx.load_module(p) for n, p in paths.items()}  # all verified before any work
        dms = {n: self._datamodule(m, paths[n]) for n, m in models.items()}
        synthetic = any(getattr(dm, "data_source", "") == "synthetic" for dm in dms.values())
        rows, curves, metrics = [], {}, {}
        for name, model in models.items():
            model = model.to(device).eval()
            dm = dms[name]
            loader = dm.test_dataloader() if self.split == "test" else dm.val_dataloader()
            row, curves[name] = self._evaluate(model, loader, device)
            rows.append({"model": name, **row})
            prefix = f"{self.split}/" if name == self.name else f"{name}/{self.split}/"
            metrics.update({f"{prefix}{k}": float(v) for k, v in row.items()})
        table = pd.DataFrame(rows)
        write_table(table, out / "rsc_metrics", floatfmt=".4f")
        ctx.logger.log_table("rsc_metrics", table)
        _, png, frame = write_distance_curves(curves, out / "distance_curve",
                                              title=f"{self.split} split", synthetic=synthetic)  # fmt: skip
        ctx.logger.log_table("distance_curve", frame)
        ctx.logger.log_image("distance_curve", png)
        metrics.update(self._receptive_fields(models[self.name], dms[self.name], ctx, synthetic))
        ctx.logger.log_metrics(metrics)
        return metrics

    def _receptive_fields(self, model: Any, dm: Any, ctx: RunContext, synthetic: bool) -> dict:
        """ERF (+ recommended overlap) and TRF of the main model."""
        ds, o = dm.dataset(self.split), self.erf
        n = min(o.images, len(ds))
        items = [ds[i] for i in range(n)]
        images = [it["image"].to(ctx.device) for it in items]
        erf = erf_analysis(model, images, [it["mask_3class"] for it in items],
                           n_per_class=o.per_class, block=o.block, percentiles=o.percentiles,
                           border=o.border, seed=ctx.seed)  # fmt: skip
        paths = write_erf(erf, ctx.output_dir, f"{self.name}, {n} images", synthetic)
        ctx.logger.log_table("erf_radii", erf.table())
        ctx.logger.log_image("erf", paths["png"])
        metrics = {f"erf/{c}_r{int(round(p * 100))}": float(r)
                   for c, rad in erf.radius.items() for p, r in rad.items()}  # fmt: skip
        cls = "road" if "road" in erf.radius else "all"
        if cls in erf.radius and np.isfinite(erf.radius[cls].get(o.overlap_percentile, np.nan)):
            metrics["recommended_overlap_px"] = float(recommended_overlap(
                erf, o.overlap_percentile, cls=cls, multiple=o.overlap_multiple))  # fmt: skip
        if self.trf.enabled:
            res = theoretical_receptive_field(model.net, in_channels=images[0].shape[0],
                                              input_size=self.trf.input_size,
                                              max_input_size=self.trf.max_input_size,
                                              device=ctx.device)  # fmt: skip
            metrics.update(trf_px=float(res.trf), trf_clipped=float(res.clipped))
            atomic_write_text(ctx.output_dir / "trf.csv",
                              pd.DataFrame([{"model": self.name, **res.__dict__}]).to_csv(index=False))  # fmt: skip
        return metrics
