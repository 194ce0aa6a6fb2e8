"""Thin Hydra entry point: `python tools/export.py ckpt_path=C format=onnx`; `--help` lists the options."""

import hydra
from omegaconf import DictConfig

from detect.tasks.export import export
from detect.utils import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_cli(export, cfg)


if __name__ == "__main__":
    main()
