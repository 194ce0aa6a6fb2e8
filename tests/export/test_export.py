"""Export: files that alone are enough to predict, equal to eager, and the CLI around them."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detect
from detect.export import export_model
from detect.export.matrix import parity_matrix
from detect.export.parity import match_detections
from detect.inference import ModelFileError
from tests.conftest import SHARED, compose_config

REPO = Path(__file__).resolve().parents[2]
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
LIGHT_FORMATS = ["onnx", "torchscript"] + (["openvino"] if HAS_OPENVINO else [])


def _build(backbone: str, head: str, categories, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    from hydra.utils import instantiate

    cfg = compose_config([f"backbone={backbone}", f"head={head}", *overrides])
    return instantiate(cfg.model)(num_classes=len(categories), keypoints=categories.keypoints)


def _heads(tiny_shapes: Path, heads: list[str], count: int = 2) -> dict:
    from detect.data.coco import CategoryMap

    coco = json.loads((tiny_shapes / "annotations" / "instances_val.json").read_text())
    categories = CategoryMap.from_coco(coco["categories"])
    if SHARED.is_dir():
        photos = sorted((SHARED / "coco128" / "images" / "val2017").glob("*.jpg"))[:count]
    else:
        photos = sorted((tiny_shapes / "images" / "val").glob("*"))[:count]
    return {head: (categories, photos) for head in heads}


@pytest.mark.parametrize("head", ["detect", "segment", "pose"])
def test_light_parity_matrix(tiny_shapes: Path, head: str) -> None:
    """One backbone per head, every format: raw outputs within 1e-4, the same detections."""
    formats = LIGHT_FORMATS if head == "detect" else ["onnx"]
    cells = parity_matrix(
        _build,
        ["cspdarknet_n"],
        _heads(tiny_shapes, [head]),
        formats,
        image_size=160 if head == "detect" else 128,
    )
    for cell in cells:
        assert cell.passed, cell
        assert cell.detections > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "vit_t", "convnext_tiny"]
)
def test_parity_matrix_per_backbone_family(tiny_shapes: Path, backbone: str) -> None:
    # detect and pose: the pose refiner reads the backbone's own stride-4 level, the segment head
    # only the neck's, so segment adds nothing backbone-specific to the graph (it is in the light
    # matrix above, and every backbone x head cell is in docs/export.md via tools/export_matrix.py).
    # Each ONNX export takes 10-17 s here: a third head per family cost two minutes of CI.
    cells = parity_matrix(
        _build, [backbone], _heads(tiny_shapes, ["detect", "pose"]), LIGHT_FORMATS, image_size=160
    )
    failing = [cell for cell in cells if not cell.passed]
    assert not failing, failing


@pytest.mark.parametrize(
    "head",
    ["detect", pytest.param("segment", marks=pytest.mark.slow), pytest.param("pose", marks=pytest.mark.slow)],
)
def test_distance_distribution_heads_export_equal_to_eager(tiny_shapes: Path, head: str) -> None:
    """Every head's default regresses distances directly; with ``head.reg_max=16`` (the DFL's
    softmax over bins, a conv class branch) each one exports too."""
    build = partial(_build, overrides=("head.reg_max=16", "head.cls_branch=conv"))
    cells = parity_matrix(build, ["cspdarknet_n"], _heads(tiny_shapes, [head]), ["onnx"], image_size=128)
    assert cells and all(cell.passed and cell.detections > 0 for cell in cells), cells


def test_pose_refiner_options_export_equal_to_eager(tiny_shapes: Path) -> None:
    """The refiner's optional inputs and tower (an upsampled coarser level, depthwise convolutions)
    trace to ONNX and keep parity with eager."""
    build = partial(_build, overrides=("head.refine_context=[p3]", "head.refine_tower=separable"))
    cells = parity_matrix(build, ["cspdarknet_n"], _heads(tiny_shapes, ["pose"]), ["onnx"], image_size=128)
    assert cells and all(cell.passed and cell.detections > 0 for cell in cells), cells


def test_exported_file_alone_predicts_like_the_checkpoint(
    make_checkpoint, tiny_shapes: Path, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint("detect")
    images = sorted((tiny_shapes / "images" / "val").glob("*"))[:3]
    reference = detect.load(checkpoint, score_thresh=0.05).predict(images)
    for nms in (False, True):
        path = export_model(checkpoint, "onnx", tmp_path / f"m{nms}.onnx", nms=nms)
        model = detect.load(path, score_thresh=0.05)
        assert model.info.nms is nms and model.info.image_size == 128
        assert model.names == detect.load(checkpoint).names
        for ours, theirs in zip(model.predict(images), reference):
            assert len(theirs) > 0
            # Same labels, scores within 1e-4, boxes at IoU 0.99, in any order among tied scores.
            assert match_detections(theirs.detections, ours.detections, cutoff=0.05)
        batch = np.stack([model.letterbox(np.zeros((128, 128, 3), np.uint8))[0]] * 3)
        assert len(model.infer(batch)) == 3  # the batch dimension is dynamic
    with pytest.raises(ModelFileError, match="exported at 128 px"):
        detect.load(tmp_path / "mFalse.onnx", image_size=160)


def test_exported_decode_multiplies_by_matrices_not_vectors(make_checkpoint, tmp_path: Path) -> None:
    """ONNX Runtime runs a MatMul by a vector on a slow general path: the DFL's expected distance
    took 1.0 of a 14 ms forward at 320 px that way, 0.1 ms as a product with a column. (The default
    heads have no DFL: ``head.reg_max=16`` brings it back.)"""
    import onnx
    from onnx import numpy_helper

    path = export_model(make_checkpoint("detect", "head.reg_max=16"), "onnx", tmp_path / "m.onnx")
    graph = onnx.shape_inference.infer_shapes(onnx.load(path)).graph
    ranks = {
        value.name: len(value.type.tensor_type.shape.dim)
        for value in (*graph.value_info, *graph.input, *graph.output)
    }
    ranks.update({tensor.name: len(tensor.dims) for tensor in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            ranks[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).ndim
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    assert matmuls
    assert all(ranks[name] >= 2 for node in matmuls for name in node.input), [
        (node.name, [ranks[name] for name in node.input]) for node in matmuls
    ]


def test_corrupt_and_foreign_onnx_files_are_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelFileError, match="cannot read"):
        detect.load(corrupt)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ModelFileError, match="no detect metadata"):
        detect.load(tmp_path / "foreign.onnx")


def _tool(name: str, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / f"{name}.py"), *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


# Four tool processes (about 50 s): in the slow part; the fast part keeps the same path through the
# API (test_exported_file_alone_predicts_like_the_checkpoint) and the CLI's one-line errors.
@pytest.mark.slow
def test_cli_export_predict_video_and_eval_on_onnx(
    make_checkpoint, tiny_shapes: Path, tmp_path: Path
) -> None:
    import cv2

    checkpoint = make_checkpoint("detect")
    onnx_path = tmp_path / "model.onnx"
    done = _tool("export", f"ckpt_path={checkpoint}", f"output={onnx_path}", f"hydra.run.dir={tmp_path}/x")
    assert done.returncode == 0, done.stderr
    # An untrained model's saturated scores tie exactly, so only its raw outputs are held to the check here
    # (the detections are compared in the tests above on images where they do not tie).
    found = re.search(r"max output difference ([0-9.e+-]+)", done.stdout)
    assert found and float(found.group(1)) <= 1e-4, done.stdout
    # A video: drawn frames and one JSON line per frame.
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (128, 128))
    for file in sorted((tiny_shapes / "images" / "val").glob("*"))[:5]:
        writer.write(cv2.imread(str(file)))
    writer.release()
    out = tmp_path / "video"
    done = _tool(
        "predict", f"model={onnx_path}", f"source={clip}", "score_thresh=0.05", f"hydra.run.dir={out}"
    )
    assert done.returncode == 0, done.stderr
    lines = (out / "videos" / "clip.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(5))
    capture = cv2.VideoCapture(str(out / "videos" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    # Evaluation from the exported file matches the checkpoint's through the same predictor.
    metrics = {}
    for name, model in (("onnx", onnx_path), ("ckpt", checkpoint)):
        done = _tool(
            "eval",
            f"model={model}",
            f"data.val_ann={tiny_shapes}/annotations/instances_val.json",
            f"data.val_images={tiny_shapes}/images/val",
            "data.num_workers=0",
            f"hydra.run.dir={tmp_path}/{name}",
        )
        assert done.returncode == 0, done.stderr
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["onnx"]["bbox/AP"] == pytest.approx(metrics["ckpt"]["bbox/AP"], abs=1e-3)


@pytest.mark.parametrize(
    ("tool", "overrides", "message"),
    [
        ("predict", ["model={bad}", "source={bad}"], "cannot read"),
        # The same errors through the API are in the fast tests (tests/inference/test_predictor.py).
        pytest.param("predict", ["model={missing}", "source=x.jpg"], "not found", marks=pytest.mark.slow),
        pytest.param(
            "export", ["ckpt_path={bad}", "format=tflite"], "unknown export format", marks=pytest.mark.slow
        ),
        pytest.param("export", ["ckpt_path={bad}"], "cannot read", marks=pytest.mark.slow),
        pytest.param(
            "eval",
            ["model={bad}", "data.val_ann=a.json", "data.val_images=."],
            "cannot read",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_cli_bad_model_files_fail_in_one_line(
    tmp_path: Path, tool: str, overrides: list[str], message: str
) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    if tool == "export":
        bad = tmp_path / "bad.ckpt"
        bad.write_bytes(b"garbage")
    values = {"bad": bad, "missing": tmp_path / "missing.onnx"}
    done = _tool(tool, *(o.format(**values) for o in overrides), f"hydra.run.dir={tmp_path}/run")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr


def test_int8_export_is_quantized_keeps_its_metadata_and_finds_the_same_objects(
    make_checkpoint, tiny_shapes: Path, tmp_path: Path
) -> None:
    import onnx

    from detect.export.quantize import network_nodes, quantize_onnx
    from detect.tasks.export import recall_of

    checkpoint = make_checkpoint("detect")
    fp32 = export_model(checkpoint, "onnx", tmp_path / "model.onnx")
    reference = detect.load(fp32, score_thresh=0.05)
    images = sorted((tiny_shapes / "images" / "train").glob("*"))[:16]
    calibration = (reference.letterbox(np.asarray(Image.open(f).convert("RGB")))[0] for f in images)
    int8 = quantize_onnx(fp32, tmp_path / "model.int8.onnx", calibration)
    graph = onnx.load(str(int8)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 10 and "DequantizeLinear" in ops
    # Decoding stays fp32: nothing after the last convolutions is quantized.
    source = onnx.load(str(fp32))
    decode = {n.name for n in source.graph.node} - set(network_nodes(source))
    # The box distances' softplus (the DFL's softmax for reg_max > 1) and the scores' sigmoid.
    assert {"Softplus", "Sigmoid"} <= {n.op_type for n in source.graph.node if n.name in decode}
    quantized = detect.load(int8, score_thresh=0.05)
    assert quantized.info == reference.info  # the metadata travelled
    val = sorted((tiny_shapes / "images" / "val").glob("*"))[:4]
    ours = [r.detections for r in quantized.predict(val)]
    theirs = [r.detections for r in reference.predict(val)]
    found, total = recall_of(theirs, ours)
    # A random model's 300 detections per image have near-tied class scores (0.64-0.88), and 8 bits
    # flip the best class of about half its anchors (46 % agree for the default head, 55 % for the
    # DFL one), so this proxy finds 70 % of them again (the DFL head 80 %); keeping the box branch in
    # fp32 moved it to 71 %, the class branch 77 %. A broken quantization finds none. The real figure
    # is a trained model's: INT8 costs 0.007 bbox AP (docs/speed.md).
    assert total > 0 and found >= 0.6 * total


@pytest.mark.slow
def test_int8_needs_calibration_images_and_an_onnx_export(make_checkpoint, tmp_path: Path) -> None:
    checkpoint = make_checkpoint("detect")
    empty = tmp_path / "empty"
    empty.mkdir()
    for overrides, message in (
        (["format=torchscript", "int8=true"], "quantizes an ONNX export"),
        ([f"output={tmp_path}/m.onnx", "int8=true", f"calib_images={empty}"], "calibration needs images"),
    ):
        done = _tool("export", f"ckpt_path={checkpoint}", *overrides, f"hydra.run.dir={tmp_path}/run")
        assert done.returncode == 1 and "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], done.stderr
