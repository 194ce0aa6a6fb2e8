"""Thin Hydra entry point: `python tools/eval.py --help` lists the options."""

import hydra
from omegaconf import DictConfig

from detect.tasks import evaluate
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    main()
