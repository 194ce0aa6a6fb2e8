"""Thin Hydra entry point: `python tools/train.py --help` lists the options."""

import hydra
from omegaconf import DictConfig

from detect.tasks import train
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)


if __name__ == "__main__":
    main()
