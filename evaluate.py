"""`python evaluate.py [overrides]`: thin Hydra entry point for :func:`geoemb.tasks.evaluate`."""

import hydra
from omegaconf import DictConfig

from geoemb import tasks


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    metrics = tasks.evaluate(cfg)
    metric = cfg.get("optimized_metric")
    if metric and isinstance(metrics, dict) and metric in metrics:
        return float(metrics[metric])  # value for Hydra sweepers (Optuna)
    return None


if __name__ == "__main__":
    main()
