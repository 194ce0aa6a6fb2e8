"""Real COCO photos: ids with gaps, scaling and coordinates survive a train -> evaluate round trip."""

import pytest

from detect.tasks import train


@pytest.mark.slow
def test_overfit_coco8_seg_photos(shared_realdata, train_cfg) -> None:
    """Overfit 4 real photos (7 categories, official ids up to 90) and score them with pycocotools."""
    folder = shared_realdata / "coco8-seg"
    ann = folder / "annotations" / "instances_train.json"
    images = folder / "images" / "train"
    cfg = train_cfg(
        [
            "experiment=overfit",
            f"data.train_ann={ann}",
            f"data.train_images={images}",
            f"data.val_ann={ann}",
            f"data.val_images={images}",
            "data.image_size=320",
        ]
    )
    metrics = train(cfg)
    assert metrics["bbox/AP"] >= 0.5, metrics
