"""Thin Hydra entry point: `python tools/serve.py model=last.ckpt` (`--help` lists the options)."""

import hydra
from omegaconf import DictConfig

from detect.utils import run_cli


def serve(cfg: DictConfig) -> None:
    import uvicorn

    from detect.inference import load
    from detect.serve import Limits, create_app

    path = cfg.model or cfg.ckpt_path
    if not path:
        raise ValueError(
            "give the model to serve: model=path/to/last.ckpt (or an exported .onnx / .torchscript / .xml)"
        )
    options = {} if cfg.threads is None else {"threads": int(cfg.threads)}
    predictor = load(
        path, device=cfg.device, score_thresh=cfg.score_thresh, image_size=cfg.image_size, **options
    )
    print(f"serving {predictor} on http://{cfg.host}:{cfg.port}")
    app = create_app(predictor, Limits(**cfg.limits))
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level=cfg.log_level)


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    run_cli(serve, cfg)


if __name__ == "__main__":
    main()
