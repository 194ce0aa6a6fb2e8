"""Thin Hydra entry point: `python tools/app.py` serves the web app over outputs/ and multirun/."""

import hydra
from omegaconf import DictConfig

from detect.utils import run_cli


def app(cfg: DictConfig) -> None:
    import uvicorn

    from detect.serve.app import create_web_app

    roots = [str(root) for root in cfg.runs_dir]
    print(f"runs from {', '.join(roots)}: http://{cfg.host}:{cfg.port}")
    uvicorn.run(create_web_app(roots), host=cfg.host, port=int(cfg.port), log_level=cfg.log_level)


@hydra.main(version_base="1.3", config_path="../conf", config_name="app")
def main(cfg: DictConfig) -> None:
    run_cli(app, cfg)


if __name__ == "__main__":
    main()
