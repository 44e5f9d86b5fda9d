"""`python infer.py [overrides]`: thin Hydra entry point for :func:`geoemb.tasks.infer`."""

import hydra
from omegaconf import DictConfig

from geoemb import tasks
from geoemb.run import resolvers  # noqa: F401  (registers ${geoemb.run_id:} before @hydra.main)


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> float | None:
    return tasks.sweep_value(cfg, tasks.infer(cfg))


if __name__ == "__main__":
    main()
