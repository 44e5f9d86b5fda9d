"""``RunContext``: what a run hands to the code below it, built once from Hydra.

Evaluators receive a context instead of probing Hydra's global state: the run directory, the
directory shared by all jobs of a multirun, the logger, the seed, the resolved device and the
checkpoint loader bound to the run's trust setting. ``RunContext.local`` builds one outside Hydra
(notebooks, tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geoemb.run.device import resolve_device
from geoemb.utils.run_logger import RunLogger

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """Run-level facts for evaluators and other wiring code.

    Attributes
    ----------
    output_dir : Path
        This job's run directory (exists).
    shared_dir : Path
        The directory all jobs of a multirun share (Hydra's sweep dir); ``output_dir`` otherwise.
        Workflows that aggregate across jobs (GeoPool, compression) write their per-job rows here.
    logger : RunLogger
        Metrics/tables/images, forwarded to W&B when a run is active.
    seed : int
        The run's seed (already applied to every RNG).
    device : torch.device
        The resolved compute device.
    trust_checkpoint : bool
        Skip the checkpoint ``_target_`` allowlist (the user's own files only).
    is_multirun : bool
        Whether this job is one of a Hydra multirun.
    job_num : int or None
        The job's number within the multirun.
    data_source : str
        ``"real"`` or ``"synthetic"`` (the data config's switch), for tags.
    """

    output_dir: Path
    shared_dir: Path | None = None
    logger: RunLogger = field(default_factory=RunLogger)
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    trust_checkpoint: bool = False
    is_multirun: bool = False
    job_num: int | None = None
    data_source: str = "real"

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.shared_dir = Path(self.shared_dir) if self.shared_dir else self.output_dir
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(self.device)

    @classmethod
    def local(
        cls,
        output_dir: str | os.PathLike,
        seed: int = 0,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> RunContext:
        """A context for use outside Hydra (notebooks, tests): local logging only."""
        return cls(output_dir=Path(output_dir), seed=seed, device=device, **kwargs)

    @classmethod
    def from_config(cls, cfg: Any, output_dir: Path, logger: RunLogger) -> RunContext:
        """Build the context of a Hydra run (the only place that reads Hydra's runtime state)."""
        from hydra.core.hydra_config import HydraConfig

        shared, multirun, job = None, False, None
        if HydraConfig.initialized():
            hc = HydraConfig.get()
            multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
            if multirun:
                shared, job = Path(hc.sweep.dir), hc.job.get("num")
        data = cfg.get("data")
        synthetic = data is not None and bool(data.get("synthetic", False))
        return cls(
            output_dir=output_dir,
            shared_dir=shared,
            logger=logger,
            seed=int(cfg.seed),
            device=str(cfg.get("device") or "auto"),
            trust_checkpoint=bool(cfg.get("trust_checkpoint", False)),
            is_multirun=multirun,
            job_num=None if job is None else int(job),
            data_source="synthetic" if synthetic else "real",
        )

    @property
    def synthetic(self) -> bool:
        return self.data_source == "synthetic"

    def load_module(self, ckpt_path: str | os.PathLike, map_location: str | None = None) -> Any:
        """Rebuild the LightningModule of a geoemb checkpoint through the one safe loader."""
        from geoemb.run.checkpoints import load_module

        return load_module(
            ckpt_path, trust_checkpoint=self.trust_checkpoint, map_location=map_location or "cpu"
        )
