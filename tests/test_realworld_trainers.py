"""1-epoch CPU smoke runs of both trainers on tiny Clothing1M and mini-WebVision fixtures in the real layout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import dividemix.train as dm
from dynamic_selection import train as ds
from fine.errors import UserError
from tests.test_clothing1m import write_clothing1m
from tests.test_webvision import write_webvision

pytestmark = pytest.mark.slow

# Tiny and fast: a small CNN on the real transforms' 224/299-pixel crops, no pretrained weights.
SMALL = ["--arch", "small_cnn", "--pretrained", "none", "--batch_size", "4", "--device", "cpu"]


def _run(trainer, tmp_path: Path, data_path: Path, *flags: str) -> dict:
    argv = ["--data_path", str(data_path), "--output", str(tmp_path / "runs"), *SMALL, *flags]
    return trainer.main(trainer.get_args_parser().parse_args(argv))


def _rows(summary: dict) -> list[dict]:
    return [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def clothing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clothing1m")
    write_clothing1m(root)
    return root


@pytest.fixture(scope="module")
def webvision(tmp_path_factory) -> Path:
    """The WebVision fixture with 3 ILSVRC12 test images instead of 102: every forward pass is 299 pixels wide."""
    root = tmp_path_factory.mktemp("webvision")
    write_webvision(root)
    for image in sorted((root / "imagenet" / "val").rglob("*.JPEG"))[3:]:
        image.unlink()
    return root


def test_fine_on_clothing1m_selects_by_class_and_reports_no_precision(tmp_path, clothing):
    summary = _run(ds, tmp_path, clothing, "--dataset", "clothing1m", "--method", "fine", "--epochs", "2",
                   "--num_batches", "2")
    assert summary["noise_kind"] == "real" and summary["finished"]
    assert summary["selection"] is None  # no clean labels: precision/recall are unavailable, never faked
    rows = _rows(summary)
    assert rows[0]["train/samples"] == 8  # warm-up: num_batches x batch_size, class-balanced
    # the round scores such a draw and the epoch trains on what it selected there
    assert 0 < rows[1]["select/selected"] == rows[1]["train/samples"] <= 8 and "select/precision" not in rows[1]
    assert rows[1]["val/acc"] is not None  # the clean validation list picks the best epoch
    assert "/clothing1m_real/" in summary["run_dir"]


def test_dividemix_on_clothing1m(tmp_path, clothing):
    summary = _run(dm, tmp_path, clothing, "--dataset", "clothing1m", "--selector", "fine", "--epochs", "2",
                   "--num_batches", "2")
    assert summary["finished"] and summary["selection"] is None
    assert _rows(summary)[1]["select/net1/selected"] > 0


@pytest.mark.parametrize("trainer,flags", [(ds, ["--method", "fine"]), (dm, ["--selector", "loss-gmm"])])
def test_both_trainers_on_webvision_with_imagenet_test(tmp_path, webvision, trainer, flags):
    summary = _run(trainer, tmp_path, webvision / "webvision", "--dataset", "webvision", "--epochs", "2",
                   "--imagenet_path", str(webvision / "imagenet"), *flags)
    last = _rows(summary)[-1]
    for key in ("test/acc", "test/acc_top5", "test_imagenet/acc", "test_imagenet/acc_top5"):
        assert 0.0 <= last[key] <= 100.0
    assert last["test/acc_top5"] >= last["test/acc"]


def test_synthetic_noise_on_a_real_noise_dataset_is_refused(tmp_path, clothing):
    with pytest.raises(UserError, match="comes with real label noise; pass --noise_kind real"):
        _run(ds, tmp_path, clothing, "--dataset", "clothing1m", "--noise_kind", "sym", "--method", "standard")
