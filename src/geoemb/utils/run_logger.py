"""Logger-agnostic run logging used by evaluators (metrics, tables, images).

Training uses Lightning loggers; evaluators (pooling benchmark, compression, retrieval, zonal
statistics) run outside a Trainer and log through :class:`RunLogger`, which forwards to W&B when a
run is active and otherwise only records locally. W&B defaults to offline mode; ``WANDB_MODE`` in the
environment always wins (tests use ``WANDB_MODE=disabled``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class RunLogger:
    """Forward metrics/tables/images to an optional W&B run; keep a local record.

    Parameters
    ----------
    wandb_run:
        An active ``wandb`` run or ``None`` (local only).
    """

    def __init__(self, wandb_run: Any | None = None) -> None:
        self.wandb_run = wandb_run
        self.metrics: dict[str, float] = {}
        self.tables: dict[str, Any] = {}
        self.images: dict[str, Path] = {}

    @classmethod
    def create(
        cls,
        enabled: bool,
        project: str = "geoemb",
        name: str | None = None,
        group: str | None = None,
        save_dir: str | os.PathLike | None = None,
        config: dict | None = None,
        tags: list[str] | None = None,
    ) -> RunLogger:
        """Start a W&B run (offline unless ``WANDB_MODE`` says otherwise) or a local-only logger."""
        mode = os.environ.get("WANDB_MODE", "offline")
        if not enabled or mode == "disabled":
            return cls(None)
        import wandb

        run = wandb.init(
            project=project,
            name=name,
            group=group,
            dir=str(save_dir) if save_dir else None,
            config=config,
            tags=tags,
            mode=mode,
            reinit="finish_previous",
            settings=wandb.Settings(quiet=True),
        )
        return cls(run)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record scalar metrics (names use ``/``, e.g. ``test/knn_acc``)."""
        self.metrics.update({k: float(v) for k, v in metrics.items()})
        if self.wandb_run is not None:
            self.wandb_run.log(dict(metrics), step=step)

    def log_table(self, name: str, df: Any) -> None:
        """Record a pandas DataFrame as a table."""
        self.tables[name] = df
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Table(dataframe=df.reset_index(drop=True))})

    def log_image(self, name: str, path: str | os.PathLike) -> None:
        """Record an image file (PNG) such as a plot."""
        self.images[name] = Path(path)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Image(str(path))})

    def finish(self) -> None:
        """Close the W&B run (required between Hydra multirun jobs)."""
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
