"""Thin Hydra entry point: `python tools/predict.py --help` lists the options."""

import hydra
from omegaconf import DictConfig

from detect.tasks import predict
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_cli(predict, cfg)


if __name__ == "__main__":
    main()
