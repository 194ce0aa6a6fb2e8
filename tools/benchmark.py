"""Thin Hydra entry point: `python tools/benchmark.py --help` lists the options."""

import hydra
from omegaconf import DictConfig

from detect.tasks.benchmark import benchmark
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    run_cli(benchmark, cfg)


if __name__ == "__main__":
    main()
