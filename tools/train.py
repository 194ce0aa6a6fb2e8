"""Thin Hydra entry point: `python tools/train.py --help` lists the options."""

import hydra
from omegaconf import DictConfig

from detect.tasks.train import objective, train
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # A search (hparams_search=...) maximizes the returned value.
    return run_cli(lambda c: objective(train(c), c.get("optimized_metric")), cfg)


if __name__ == "__main__":
    main()
