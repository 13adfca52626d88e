"""Result tables over seeds from the trainers' run directories, and how one run's sample selection evolved.

    python -m engine.report runs                    # every finished run below runs/ -> runs/report.md, runs/report.csv
    python -m engine.report runs --reference        # with the published numbers (engine/published.csv) beside ours
    python -m engine.report --selection runs/dynamic_selection/cifar10_sym0.5/fine_ce_fine_seed1_ab12cd

Rows are methods (trainer, method, loss, selector; named by the ``label`` each trainer writes into its summaries, in
the papers' order of methods), columns are noise settings, one table per dataset and metric.
A cell is the mean ± sample standard deviation (ddof 1) over seeds. ``engine/published.csv`` holds the published
numbers: ``noise_rate`` is a fraction, or the label set's name for human noise (``worst``) and empty for real-world
noise; ``metric`` is the protocol that produced the number: ``best`` (test accuracy at the best validation epoch),
``max`` (the maximum over epochs of what the published code reports per epoch), ``last`` (the last epoch),
``last10`` (the mean over the last 10 epochs), or ``top5`` (top-5 accuracy, not tabulated); ``verified`` is false
for numbers taken from a secondary source. ``--reference`` puts a published number only beside ours of the same
protocol.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fine.errors import UserError, run_cli
from fine.selection import REGISTRY, selection_metrics

PUBLISHED = Path(__file__).with_name("published.csv")
PUBLISHED_COLUMNS = ["method", "dataset", "noise_kind", "noise_rate", "metric", "value", "source", "verified"]
REQUIRED_KEYS = ("trainer", "dataset", "noise_kind", "noise_rate", "method", "loss", "selector", "label", "seed",
                 "best_test_acc", "max_test_acc", "last_test_acc", "last10_mean_test_acc")
# metric name in report.csv -> how to read it from a summary.json
METRICS = {
    "best_test_acc": lambda s: s["best_test_acc"],
    "max_test_acc": lambda s: s["max_test_acc"],
    "last_test_acc": lambda s: s["last_test_acc"],
    "last10_mean_test_acc": lambda s: s["last10_mean_test_acc"],
    "selection_precision": lambda s: (s.get("selection") or {}).get("precision"),
    "selection_recall": lambda s: (s.get("selection") or {}).get("recall"),
    "selection_f1": lambda s: (s.get("selection") or {}).get("f1"),
}
# --metric -> (summary field, table title); published numbers of the same protocol (``metric`` column) go beside it.
ACC_TABLES = {"best": ("best_test_acc", "Test accuracy at the best validation epoch (%)"),
              "max": ("max_test_acc", "Maximum test accuracy over epochs (%)"),
              "last": ("last_test_acc", "Last-epoch test accuracy (%)"),
              "last10": ("last10_mean_test_acc", "Mean test accuracy of the last 10 epochs (%)")}
PROTOCOLS = (*ACC_TABLES, "top5")
DATASET_ORDER = ("cifar10", "cifar100", "clothing1m", "webvision")
KIND_ORDER = ("none", "sym", "asym", "pairflip", "instance", "human", "real")
# Row order of the tables: method names as the papers print them (a label's base name, before " (" or " + ").
ROW_ORDER = ("Standard", "Co-teaching", "Co-teaching+", "FINE", "F-Coteaching", "DivideMix", "F-DivideMix")
Group = tuple[str, str, str, str | None, str]  # (trainer, method, loss, selector, label)


@dataclass(frozen=True)
class Setting:
    """One column of the tables: a dataset under one kind and amount of label noise."""

    dataset: str
    kind: str
    rate: float | None = None
    label: str | None = None  # a named label set (human noise: worst, aggre, noisy, ...)

    @property
    def name(self) -> str:
        if self.kind == "none":
            return "clean"
        if self.label is not None:
            return f"{self.kind} {self.label}"
        return self.kind if self.rate is None else f"{self.kind} {self.rate:g}"

    def sort_key(self) -> tuple:
        kind = KIND_ORDER.index(self.kind) if self.kind in KIND_ORDER else len(KIND_ORDER)
        return kind, self.kind, -1.0 if self.rate is None else self.rate, self.label or ""


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (None for fewer than two values) of ``n`` values."""

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class Published:
    """One published number from ``engine/published.csv``."""

    method: str
    setting: Setting
    metric: str
    value: str
    source: str
    verified: bool


def summarise(values: Sequence[float | None]) -> Stat:
    """Mean and sample std (ddof 1) of the values that are not None."""
    vals = np.array([v for v in values if v is not None], dtype=np.float64)
    if vals.size == 0:
        return Stat(None, None, 0)
    return Stat(float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else None, int(vals.size))


def setting_of(summary: dict[str, Any]) -> Setting:
    """The table column a run belongs to."""
    kind, label = summary["noise_kind"], summary.get("noise_label")
    rate = summary["noise_rate"]
    rate = None if kind == "none" or label is not None or rate is None else float(rate)
    return Setting(summary["dataset"], kind, rate, label)


def group_of(summary: dict[str, Any]) -> Group:
    """The table row a run belongs to."""
    return summary["trainer"], summary["method"], summary["loss"], summary["selector"], summary["label"]


def method_label(group: Group) -> str:
    """The row's readable name, e.g. ``FINE + GCE`` or ``F-DivideMix``, as the trainer wrote it in the summary."""
    return group[4]


def _group_sort_key(group: Group) -> tuple:
    """Rows in the papers' order of methods (:data:`ROW_ORDER`, by the label's base name), then by label."""
    label = method_label(group)
    base = label.split(" (")[0].split(" + ")[0]
    rank = ROW_ORDER.index(base) if base in ROW_ORDER else len(ROW_ORDER)
    return rank, label, tuple(str(v) for v in group[:4])


def _dataset_sort_key(dataset: str) -> tuple:
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset)


def _cell_sort_key(cell: tuple[Group, Setting]) -> tuple:
    group, setting = cell
    return _dataset_sort_key(setting.dataset), setting.sort_key(), _group_sort_key(group)


def find_runs(root: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Read every run below ``root``.

    A run is a folder holding ``summary.json`` or ``args.json``. Returns ``(summaries, unfinished, unreadable)``:
    the summaries of finished runs, the unfinished runs (no summary, or ``"finished": false``) and the summaries
    that are not valid JSON or lack a required key.
    """
    run_dirs = {p.parent for name in ("summary.json", "args.json") for p in root.rglob(name)}
    summaries, unfinished, unreadable = [], [], []
    for run_dir in sorted(run_dirs):
        path = run_dir / "summary.json"
        if not path.exists():
            unfinished.append(str(run_dir))
            continue
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError:
            unreadable.append(str(path))
            continue
        if not isinstance(summary, dict) or any(k not in summary for k in REQUIRED_KEYS):
            unreadable.append(str(path))
        elif not summary.get("finished", False):
            unfinished.append(str(run_dir))
        else:
            summaries.append(summary)
    return summaries, unfinished, unreadable


def aggregate(summaries: list[dict[str, Any]]) -> dict[tuple[Group, Setting], dict[str, Stat]]:
    """``{(row, column): {metric: Stat over seeds}}`` for every metric of :data:`METRICS`."""
    cells: dict[tuple[Group, Setting], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        cells[(group_of(s), setting_of(s))].append(s)
    return {key: {m: summarise([get(s) for s in runs]) for m, get in METRICS.items()} for key, runs in cells.items()}


def duplicate_seeds(summaries: list[dict[str, Any]]) -> list[str]:
    """Warnings for cells that hold the same seed more than once (runs differing in flags outside the row key)."""
    seeds: dict[tuple[Group, Setting], Counter] = defaultdict(Counter)
    for s in summaries:
        seeds[(group_of(s), setting_of(s))][s["seed"]] += 1
    warnings = []
    for (group, setting), count in sorted(seeds.items(), key=lambda kv: _cell_sort_key(kv[0])):
        dups = sorted(seed for seed, n in count.items() if n > 1)
        if dups:
            warnings.append(f"warning: {method_label(group)} on {setting.dataset} {setting.name} has seed(s) "
                            f"{', '.join(map(str, dups))} more than once (runs that differ in other flags); "
                            f"they are averaged together")
    return warnings


def load_published(path: Path = PUBLISHED) -> list[Published]:
    """Read the published numbers (see the module docstring for the columns)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != PUBLISHED_COLUMNS:
            raise UserError(f"{path} must have the columns {','.join(PUBLISHED_COLUMNS)}; fix its header line")
        rows = list(reader)
    out = []
    for line, row in enumerate(rows, start=2):
        if row["verified"] not in ("true", "false") or row["metric"] not in PROTOCOLS:
            raise UserError(f"{path} line {line}: verified must be true/false and metric one of {', '.join(PROTOCOLS)}")
        rate_text = row["noise_rate"]
        try:
            rate, label = (float(rate_text), None) if rate_text else (None, None)
        except ValueError:
            rate, label = None, rate_text
        out.append(Published(row["method"], Setting(row["dataset"], row["noise_kind"], rate, label), row["metric"],
                             row["value"], row["source"], row["verified"] == "true"))
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with padded columns, readable as plain text too."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _most_seeds(stats: list[Stat]) -> int:
    return max((s.n for s in stats), default=0)


def _n_note(n: int, most: int) -> str:
    return f" (n={n})" if n == 1 or n != most else ""


def format_acc(stat: Stat, most: int) -> str:
    """``80.12 ± 0.34``; a single seed shows the mean and ``(n=1)``; no value gives ``n/a``."""
    if stat.n == 0:
        return "n/a"
    spread = "" if stat.std is None else f" ± {stat.std:.2f}"
    return f"{stat.mean:.2f}{spread}{_n_note(stat.n, most)}"


def format_selection(stats: dict[str, Stat], most: int) -> str:
    """``precision / recall / F1`` (means over seeds) or ``n/a`` when no seed has a measured selection."""
    p, r, f = (stats[f"selection_{k}"] for k in ("precision", "recall", "f1"))
    if p.n == 0:
        return "n/a"
    parts = [f"{s.mean:.3f}" if s.n else "n/a" for s in (p, r, f)]
    return " / ".join(parts) + _n_note(p.n, most)


def _published_cell(entries: list[Published]) -> str:
    return " / ".join(e.value + ("" if e.verified else "*") for e in entries)


def _dataset_tables(dataset: str, cells: dict[tuple[Group, Setting], dict[str, Stat]], metrics: list[str],
                    published: list[Published] | None, shown: list[Published]) -> list[str]:
    """Markdown sections (accuracy tables, then selection quality) for one dataset.

    The published numbers that the tables display are appended to ``shown``.
    """
    keys = [k for k in cells if k[1].dataset == dataset]
    settings = sorted({s for _, s in keys}, key=Setting.sort_key)
    groups = sorted({g for g, _ in keys}, key=_group_sort_key)
    labels = [method_label(g) for g in groups]
    parts = []
    for metric in metrics:
        field, title = ACC_TABLES[metric]
        most = _most_seeds([cells[k][field] for k in keys])
        refs: dict[tuple[str, Setting], list[Published]] = defaultdict(list)
        for p in published or []:
            if p.setting in settings and p.metric == metric:
                refs[(p.method, p.setting)].append(p)
                shown.append(p)
        ref_settings = {s for _, s in refs}
        header = ["Method"]
        for s in settings:
            header += [s.name] + ([f"{s.name} (paper)"] if s in ref_settings else [])
        ref_only = list(dict.fromkeys(m for m, _ in refs if m not in labels))
        rows = []
        for group, label in [*zip(groups, labels), *((None, m) for m in ref_only)]:
            row = [label]
            for s in settings:
                stat = cells.get((group, s), {}).get(field) if group is not None else None
                row.append("-" if stat is None else format_acc(stat, most))
                if s in ref_settings:
                    row.append(_published_cell(refs.get((label, s), [])) or "-")
            rows.append(row)
        parts.append(f"### {title}: {dataset}\n\n{markdown_table(header, rows)}\n")
        notes = [f"Mean ± sample std over {most} seeds; (n=k) marks cells with fewer seeds."
                 if most > 1 else "One seed per cell: means only."]
        if ref_settings:
            notes.append("(paper): published test accuracy of the same protocol; * = secondary source, not checked "
                         "against the original paper.")
        parts.append(" ".join(notes) + "\n")
    most = _most_seeds([cells[k]["selection_precision"] for k in keys])
    rows = [[label] + [format_selection(cells[(g, s)], most) if (g, s) in cells else "-" for s in settings]
            for g, label in zip(groups, labels)]
    parts.append(f"### Selection quality (precision / recall / F1 of the final selection): {dataset}\n\n"
                 f"{markdown_table(['Method'] + [s.name for s in settings], rows)}\n")
    parts.append("Means over seeds; positives are the samples whose noisy label is correct; n/a: no selection was "
                 "measured (the method does not select, or no clean labels are known).\n")
    return parts


def render_markdown(root: str, summaries: list[dict[str, Any]], unfinished: list[str], *, metrics: list[str],
                    published: list[Published] | None) -> str:
    """The whole report as Markdown."""
    cells = aggregate(summaries)
    datasets = sorted({s.dataset for _, s in cells}, key=_dataset_sort_key)
    parts = [f"# Results below {root}\n",
             f"{len(summaries)} finished runs, {len(unfinished)} unfinished skipped. \"Best validation epoch\" is "
             f"the epoch with the best (noisy) validation accuracy, or the best test epoch for runs without a "
             f"validation split; accuracies in %, selection metrics as fractions.\n"]
    parts += duplicate_seeds(summaries)
    shown: list[Published] = []
    for dataset in datasets:
        parts.append(f"## {dataset}\n")
        parts += _dataset_tables(dataset, cells, metrics, published, shown)
    if shown:
        parts.append("## Sources of the published numbers\n")
        parts.append("\n".join(f"- {p.method}, {p.setting.dataset} {p.setting.name}, {p.metric}: {p.value}"
                               f"{'' if p.verified else '*'} ({p.source})" for p in dict.fromkeys(shown)) + "\n")
    return "\n".join(parts)


def write_csv(path: Path, summaries: list[dict[str, Any]]) -> None:
    """Long format: one row per (row, column, metric) with mean, std and n (std empty below two seeds)."""
    cells = aggregate(summaries)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trainer", "method", "loss", "selector", "label", "dataset", "setting", "metric", "mean",
                         "std", "n"])
        for group, setting in sorted(cells, key=_cell_sort_key):
            for metric, stat in cells[(group, setting)].items():
                writer.writerow([*("" if v is None else v for v in group), setting.dataset,
                                 setting.name, metric, "" if stat.mean is None else repr(stat.mean),
                                 "" if stat.std is None else repr(stat.std), stat.n])


def report(runs_dir: str, *, out: str | None = None, reference: bool = False, metric: str = "all") -> str:
    """Read every finished run below ``runs_dir``, write ``report.md`` and ``report.csv`` into ``out``.

    Returns the Markdown text followed by lines naming skipped runs and the files written.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"RUNS_DIR {root} is not a folder; pass the --output folder of a trainer")
    summaries, unfinished, unreadable = find_runs(root)
    if not summaries:
        raise UserError(f"no finished run (summary.json with \"finished\": true) below {root} ({len(unfinished)} "
                        f"unfinished); pass the --output folder of a trainer after its runs have ended")
    metrics = ["best", "max", "last"] if metric == "all" else [metric]
    text = render_markdown(str(root), summaries, unfinished, metrics=metrics,
                           published=load_published() if reference else None)
    out_dir = Path(out) if out is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(text)
    write_csv(out_dir / "report.csv", summaries)
    lines = [text, f"skipped {len(unfinished)} unfinished run(s)" + (":" if unfinished else "")]
    lines += [f"  {d}" for d in unfinished]
    lines += [f"skipped unreadable summary (not JSON or missing keys): {p}" for p in unreadable]
    lines.append(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.csv'}")
    return "\n".join(lines)


ROUND_FILE = re.compile(r"round_(\d+)(?:_(net\d+))?\.npz")


def load_rounds(run_dir: Path) -> dict[str, list[tuple[int, dict[str, np.ndarray]]]]:
    """``{net: [(round, arrays), ...]}`` sorted by round; ``net`` is ``""`` for one-network runs, else ``net1``..."""
    folder = run_dir / "selection"
    rounds: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = defaultdict(list)
    for path in sorted(folder.glob("round_*.npz")):
        match = ROUND_FILE.fullmatch(path.name)
        if match is None:
            continue
        with np.load(path) as npz:
            rounds[match.group(2) or ""].append((int(match.group(1)), {k: npz[k] for k in npz.files}))
    if not rounds:
        raise UserError(f"no selection/round_*.npz in {run_dir}; pass the run directory of a method with selection "
                        f"rounds (fine, f-coteaching, dividemix)")
    return {net: sorted(items, key=lambda item: item[0]) for net, items in sorted(rounds.items())}


def _round_metrics(arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """``selection_metrics`` of one round against the clean labels, or None when they are unknown."""
    if "clean_labels" not in arrays:
        return None
    noisy, clean = arrays["noisy_labels"], arrays["clean_labels"]
    num_classes = int(max(noisy.max(), clean.max())) + 1
    return selection_metrics(arrays["mask"].astype(bool), noisy == clean, labels=noisy.astype(np.int64),
                             num_classes=num_classes)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _per_class_table(arrays: dict[str, np.ndarray], metrics: dict[str, Any] | None) -> str:
    noisy = arrays["noisy_labels"].astype(np.int64)
    num_classes = int(noisy.max()) + 1 if metrics is None else len(metrics["per_class_precision"])
    labelled = np.bincount(noisy, minlength=num_classes)
    selected = np.bincount(noisy[arrays["mask"].astype(bool)], minlength=num_classes)
    per_class = [[None] * num_classes if metrics is None else metrics[f"per_class_{k}"]
                 for k in ("precision", "recall", "f1")]
    wrong = ["n/a"] * num_classes if metrics is None else [str(k) for k in metrics["per_class_noisy"]]
    rows = [[str(c), str(labelled[c]), wrong[c], str(selected[c]), *(_fmt(v[c]) for v in per_class)]
            for c in range(num_classes)]
    return markdown_table(["class (noisy label)", "labelled", "wrongly labelled", "selected", "precision", "recall",
                           "F1"], rows)


def _selector_line(run_dir: Path) -> list[str]:
    """The registered selector that made the rounds and its options, from the run's ``args.json`` (none without
    it, or for a selector no longer registered)."""
    args_path = run_dir / "args.json"
    args = json.loads(args_path.read_text())["args"] if args_path.is_file() else {}
    spec = REGISTRY.get(args.get("selector"))
    if spec is None:
        return []
    options = ", ".join(f"--{o.name} {args.get(o.name)}" for o in spec.options)
    return [f"Selector: {spec.label} (`--selector {spec.name}`{', ' + options if options else ''}).\n"]


def selection_report(run_dir: str, *, per_class: bool = False) -> str:
    """How the selection changed across rounds, per network: size, precision/recall/F1, samples entering/leaving.

    ``entered``/``left`` count samples that joined/dropped out of the selection since the previous round (``-`` in
    the first round). A per-class table follows for the last round, or for every round with ``per_class``.
    """
    path = Path(run_dir)
    rounds = load_rounds(path)
    parts = [f"# Selection rounds of {path}\n", *_selector_line(path)]
    for net, items in rounds.items():
        num = items[0][1]["mask"].shape[0]
        rows, per_class_parts, prev, any_clean = [], [], None, False
        for i, (rnd, arrays) in enumerate(items):
            mask = arrays["mask"].astype(bool)
            if mask.shape[0] != num:
                raise UserError(f"round {rnd} of {path} has {mask.shape[0]} samples, earlier rounds {num}; "
                                f"the selection folder mixes runs")
            metrics = _round_metrics(arrays)
            any_clean |= metrics is not None
            moved = ["-", "-"] if prev is None else [str(int((mask & ~prev).sum())), str(int((prev & ~mask).sum()))]
            keys = ("precision", "recall", "f1", "uncorrupted_recall")
            scores = [metrics[k] for k in keys] if metrics else [None] * len(keys)
            rows.append([str(rnd), str(int(mask.sum())), *map(_fmt, scores), *moved])
            if per_class or i == len(items) - 1:
                per_class_parts.append(f"### {net or 'selection'}: per class, round {rnd}\n\n"
                                       f"{_per_class_table(arrays, metrics)}\n")
            prev = mask
        parts.append(f"## {net or 'selection'}: {len(items)} round(s), {num} training samples\n\n"
                     + markdown_table(["round", "selected", "precision", "recall", "F1", "recall (classes without "
                                       "wrong labels)", "entered", "left"], rows)
                     + "\n")
        if not any_clean:
            parts.append("n/a: no clean labels are known for this data, so precision, recall and F1 cannot be "
                         "measured.\n")
        parts += per_class_parts
    return "\n".join(parts)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=str, nargs="?", default=None,
                        help="folder searched recursively for the runs' summary.json (a trainer's --output)")
    parser.add_argument("--out", type=str, default=None,
                        help="folder for report.md and report.csv (default: RUNS_DIR)")
    parser.add_argument("--reference", action="store_true",
                        help="put the published numbers of engine/published.csv beside ours (* = secondary source)")
    parser.add_argument("--metric", type=str, default="all", choices=(*ACC_TABLES, "all"),
                        help="which test-accuracy table to show: best (at the best validation epoch), max (maximum "
                             "over epochs, two-network runs the better network per epoch, as the published code), "
                             "last, last10 (mean of the last 10 epochs, DivideMix's 'last'); all = best, max and "
                             "last. report.csv always holds every metric")
    parser.add_argument("--selection", type=str, default=None, metavar="RUN_DIR",
                        help="instead of the tables: how one run's selection changed across its rounds "
                             "(RUN_DIR/selection/round_*.npz)")
    parser.add_argument("--per_class", action="store_true",
                        help="with --selection: per-class precision/recall for every round, not only the last")
    return parser


def main(args: argparse.Namespace) -> str:
    """Print (and return) the report the flags ask for."""
    if args.selection is not None:
        if args.runs_dir is not None or args.reference or args.out is not None:
            raise UserError("--selection RUN_DIR takes no RUNS_DIR, --out or --reference; run them separately")
        text = selection_report(args.selection, per_class=args.per_class)
    else:
        if args.runs_dir is None:
            raise UserError("give RUNS_DIR (a trainer's --output folder) or --selection RUN_DIR")
        if args.per_class:
            raise UserError("--per_class applies to --selection RUN_DIR only")
        text = report(args.runs_dir, out=args.out, reference=args.reference, metric=args.metric)
    print(text)
    return text


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
