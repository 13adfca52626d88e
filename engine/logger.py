"""One logger per run: TensorBoard scalars and histograms, a JSON-lines row per epoch, a final summary.json."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from fine.atomic import atomic_write


def jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


class RunLogger:
    """Writes ``events.out.tfevents.*`` (TensorBoard), ``metrics.jsonl`` and ``summary.json`` into ``run_dir``.

    Rows of ``metrics.jsonl`` are keyed by epoch; on resume the rows of epochs that will be run again are dropped, so
    a resumed run's file equals an uninterrupted run's.
    """

    def __init__(self, run_dir: str | Path, *, resume_epoch: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.metrics_path.exists():
            rows = [_parse(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r is not None and r.get("epoch", -1) < resume_epoch]
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=resume_epoch if resume_epoch else None)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log ``{tag: value}`` to TensorBoard at ``step`` (non-finite and None values are skipped)."""
        for tag, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        """Log a histogram of ``values`` (any shape) if it is not empty."""
        if values.numel() > 0:
            self.writer.add_histogram(tag, values.detach().float().cpu(), step)

    def epoch_row(self, row: dict[str, Any]) -> None:
        """Append one row (must hold ``epoch``) to ``metrics.jsonl`` and log its numeric fields to TensorBoard."""
        row = jsonable(row)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        numeric = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float)) and v is not None}
        self.scalars(numeric, row["epoch"])
        self.writer.flush()

    def summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` (atomically)."""
        write_json(self.run_dir / "summary.json", summary)

    def close(self) -> None:
        self.writer.close()


def _parse(line: str) -> dict | None:
    """One metrics row, or None for a line a killed run left half-written."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` (tensors and numpy scalars converted, non-finite floats as null) as indented JSON, atomically."""
    text = json.dumps(jsonable(obj), indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
