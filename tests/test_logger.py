"""RunLogger: one metrics row per epoch, rows of re-run epochs dropped on resume, TensorBoard events written."""
from __future__ import annotations

import json
import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine.logger import RunLogger


def read_rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_rows_scalars_and_histograms(tmp_path):
    logger = RunLogger(tmp_path)
    logger.epoch_row({"epoch": 0, "train/loss": 1.5, "test/acc": torch.tensor(40.0), "val/acc": None})
    logger.epoch_row({"epoch": 1, "train/loss": math.nan, "test/acc": 55.0})
    logger.histogram("select/score_clean", torch.rand(50), 1)
    logger.summary({"best_test_acc": 55.0})
    logger.close()
    rows = read_rows(tmp_path)
    assert rows == [{"epoch": 0, "train/loss": 1.5, "test/acc": 40.0, "val/acc": None},
                    {"epoch": 1, "train/loss": None, "test/acc": 55.0}]  # NaN stored as null
    assert json.loads((tmp_path / "summary.json").read_text()) == {"best_test_acc": 55.0}
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.value for e in events.Scalars("test/acc")] == [40.0, 55.0]
    assert [e.step for e in events.Scalars("train/loss")] == [0]  # the NaN was not logged
    assert "select/score_clean" in events.Tags()["histograms"]


def test_resume_drops_rows_of_epochs_to_run_again_and_a_torn_last_line(tmp_path):
    logger = RunLogger(tmp_path)
    for epoch in range(3):
        logger.epoch_row({"epoch": epoch, "train/loss": 1.0 / (epoch + 1)})
    logger.close()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "train/lo')  # a run killed while writing epoch 3's row
    resumed = RunLogger(tmp_path, resume_epoch=2)  # the checkpoint holds epoch 1: epochs 2, 3 run again
    assert [r["epoch"] for r in read_rows(tmp_path)] == [0, 1]
    resumed.epoch_row({"epoch": 2, "train/loss": 0.3})
    resumed.close()
    assert [r["epoch"] for r in read_rows(tmp_path)] == [0, 1, 2]
