"""Thin Hydra entry point: `python tools/check_data.py data=coco data.train_ann=... data.train_images=...`."""

import sys

import hydra
from omegaconf import DictConfig

from detect.tasks.check_data import check_data
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="check_data")
def main(cfg: DictConfig) -> None:
    sys.exit(run_cli(check_data, cfg))


if __name__ == "__main__":
    main()
