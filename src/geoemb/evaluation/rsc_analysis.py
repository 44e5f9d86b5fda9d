"""Chesapeake RSC analysis evaluator: metrics, DWR, distance curves, ERF, TRF, stitching overlap.

``python evaluate.py experiment=rsc_analysis ckpt_path=<run>/checkpoints/<ckpt>`` (optionally
``'evaluation.compare={baseline: <ckpt>}'``) writes under the run directory:

* ``rsc_metrics.{csv,md,tex}``: per model road R/P (TC as FP), TC R, bg R/P, DWR, kept TC pixels;
* ``distance_curve.csv`` + ``distance_curve.png``: 19-bin recall vs L1 distance, all models;
* ``erf_radii.{csv,md,tex}``, ``erf_curves.csv``, ``erf.png``: ERF of the main model per true class;
* ``trf.csv``: theoretical receptive field (px) of the main model;
and returns ``test/<metric>`` (main model), ``<name>/test/dwr`` (compared models), ``erf/<class>_r50``
etc., ``trf_px`` and ``recommended_overlap_px``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from geoemb.evaluation.base import Evaluator
from geoemb.utils.run_logger import RunLogger

__all__ = ["RSCAnalysis"]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class RSCAnalysis(Evaluator):
    """Evaluate one or more RSC checkpoints on a split and analyse the main model's receptive field.

    Parameters
    ----------
    ckpt_path : main checkpoint (written by ``train.py experiment=rsc_*``).
    compare : optional ``{name: ckpt_path}`` of further models (e.g. the baseline for distloss).
    name : display name of the main model.
    data : overrides merged onto the checkpoint's data config (e.g. ``{synthetic: true}``).
    split : ``test`` (reference) or ``val``.
    max_batches : limit evaluation batches (``None`` = all).
    erf_images, erf_per_class, erf_block, erf_border, erf_percentiles : ERF sampling
        (:func:`geoemb.analysis.erf.erf_analysis`; blog: 200 test images).
    trf : compute the TRF (gradient method; slow on CPU for big nets at large inputs).
    trf_input_size, trf_max_input_size : TRF input sizes.
    overlap_percentile, overlap_multiple : :func:`geoemb.analysis.erf.recommended_overlap` settings.
    device : ``auto`` | ``cpu`` | ``cuda``.
    seed : sampling seed.
    trust_checkpoint : skip the ``_target_`` allowlist for these checkpoints (set from the top-level
        ``trust_checkpoint`` by evaluate.py; loading stays ``weights_only=True``).
    """

    def __init__(
        self,
        ckpt_path: str | None = None,
        compare: dict[str, str] | None = None,
        name: str = "model",
        data: dict | None = None,
        split: str = "test",
        max_batches: int | None = None,
        erf_images: int = 200,
        erf_per_class: int = 4,
        erf_block: int = 1,
        erf_border: int = 0,
        erf_percentiles: tuple[float, ...] | list[float] = (0.5, 0.9, 0.99),
        trf: bool = True,
        trf_input_size: int = 128,
        trf_max_input_size: int = 1024,
        overlap_percentile: float = 0.99,
        overlap_multiple: int = 32,
        device: str = "auto",
        seed: int = 0,
        trust_checkpoint: bool = False,
    ) -> None:
        if not ckpt_path:
            raise ValueError(
                "rsc_analysis needs ckpt_path=<checkpoint of a train.py experiment=rsc_* run>"
            )
        self.ckpt_path = str(ckpt_path)
        self.compare = dict(compare or {})
        self.name = name
        self.data = dict(data or {})
        self.split = split
        self.max_batches = max_batches
        self.erf_images = erf_images
        self.erf_per_class = erf_per_class
        self.erf_block = erf_block
        self.erf_border = erf_border
        self.erf_percentiles = tuple(float(p) for p in erf_percentiles)
        self.trf = trf
        self.trf_input_size = trf_input_size
        self.trf_max_input_size = trf_max_input_size
        self.overlap_percentile = float(overlap_percentile)
        self.overlap_multiple = overlap_multiple
        self.device = _device(device)
        self.seed = seed
        self.trust_checkpoint = bool(trust_checkpoint)

    # ------------------------------------------------------------------ helpers
    def _datamodule(self, meta: dict):
        """The checkpoint's data config (``meta["data"]``) with ``self.data`` merged on top."""
        import hydra
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(meta["data"])
        if self.data:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(self.data))
        return hydra.utils.instantiate(cfg)

    @torch.no_grad()
    def _evaluate(self, model, loader) -> tuple[dict, dict]:
        from geoemb.metrics.rsc import (
            DistanceBinnedRecall,
            DistanceWeightedRecall,
            RSCConfusionMatrix,
        )

        cnf, dwr, curve = RSCConfusionMatrix(), DistanceWeightedRecall(), DistanceBinnedRecall()
        for m in (cnf, dwr, curve):
            m.to(self.device)
        for i, batch in enumerate(loader):
            if self.max_batches is not None and i >= self.max_batches:
                break
            logits = model(batch["image"].to(self.device))
            preds = logits.argmax(1) >= 1
            t3 = batch["mask_3class"].to(self.device)
            for m in (cnf, dwr, curve):
                m.update(preds, t3)
        row = {k: float(v) for k, v in cnf.compute().items()}
        row["dwr"] = float(dwr.compute())
        row["tc_pixels_kept"] = int(dwr.n_pixels)
        row["tc_pixels_dropped"] = int(dwr.n_dropped)
        row.update({f"tc_dist_{k}": v for k, v in curve.distance_percentiles().items()})
        return row, curve.compute()

    # ------------------------------------------------------------------ run
    def run(self, output_dir: Path, logger: RunLogger) -> dict[str, float]:
        from geoemb.analysis.erf import erf_analysis, recommended_overlap
        from geoemb.analysis.trf import theoretical_receptive_field
        from geoemb.metrics.rsc import distance_curve_frame, plot_distance_curves
        from geoemb.reporting.tables import write_table
        from geoemb.run.checkpoints import load_checkpoint
        from geoemb.utils.io import atomic_write_text

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        models = {self.name: self.ckpt_path, **self.compare}
        rows, curves, metrics = [], {}, {}
        main_model = main_ds = None
        # every checkpoint read once and checked before any evaluation work
        loaded = {
            name: load_checkpoint(ckpt, trust_checkpoint=self.trust_checkpoint)
            for name, ckpt in models.items()
        }
        for name, ckpt in loaded.items():
            model = ckpt.module.to(self.device).eval()
            dm = self._datamodule(ckpt.meta)
            dm.prepare_data()
            ds = dm.dataset(self.split)
            loader = dm.test_dataloader() if self.split == "test" else dm.val_dataloader()
            row, curve = self._evaluate(model, loader)
            rows.append({"model": name, **row})
            curves[name] = curve
            prefix = f"{self.split}/" if name == self.name else f"{name}/{self.split}/"
            metrics.update({f"{prefix}{k}": float(v) for k, v in row.items()})
            if name == self.name:
                main_model, main_ds = model, ds
        table = pd.DataFrame(rows)
        write_table(table, output_dir / "rsc_metrics", floatfmt=".4f")
        logger.log_table("rsc_metrics", table)
        curve_df = pd.concat(
            [distance_curve_frame(c, n) for n, c in curves.items()], ignore_index=True
        )
        atomic_write_text(output_dir / "distance_curve.csv", curve_df.to_csv(index=False))
        png = plot_distance_curves(
            curves, output_dir / "distance_curve.png", title=f"{self.split} split"
        )
        logger.log_table("distance_curve", curve_df)
        logger.log_image("distance_curve", png)

        # ERF of the main model
        n = min(self.erf_images, len(main_ds))
        images, masks = [], []
        for i in range(n):
            item = main_ds[i]
            images.append(item["image"].to(self.device))
            masks.append(item["mask_3class"])
        erf = erf_analysis(
            main_model,
            images,
            masks,
            n_per_class=self.erf_per_class,
            block=self.erf_block,
            percentiles=self.erf_percentiles,
            border=self.erf_border,
            seed=self.seed,
        )
        erf_table = erf.table()
        write_table(erf_table, output_dir / "erf_radii", floatfmt=".2f")
        atomic_write_text(output_dir / "erf_curves.csv", erf.curves_frame().to_csv(index=False))
        erf.plot(output_dir / "erf.png", title=f"ERF ({self.name}, {n} images)")
        logger.log_table("erf_radii", erf_table)
        logger.log_image("erf", output_dir / "erf.png")
        for cls, rad in erf.radius.items():
            for p, r in rad.items():
                metrics[f"erf/{cls}_r{int(round(p * 100))}"] = float(r)
        cls = "road" if "road" in erf.radius else "all"
        if cls in erf.radius and np.isfinite(erf.radius[cls].get(self.overlap_percentile, np.nan)):
            metrics["recommended_overlap_px"] = float(
                recommended_overlap(
                    erf, self.overlap_percentile, cls=cls, multiple=self.overlap_multiple
                )
            )

        if self.trf:
            res = theoretical_receptive_field(
                main_model.net,
                in_channels=images[0].shape[0],
                input_size=self.trf_input_size,
                max_input_size=self.trf_max_input_size,
                device=self.device,
            )
            metrics["trf_px"] = float(res.trf)
            metrics["trf_clipped"] = float(res.clipped)
            atomic_write_text(
                output_dir / "trf.csv",
                pd.DataFrame([{"model": self.name, **res.__dict__}]).to_csv(index=False),
            )
        logger.log_metrics(metrics)
        return metrics
