"""Console commands that ``pip install .`` puts on the PATH; each is the ``python -m`` entry point of the same job.

    fine-detect ...   = python -m engine.detect ...   (suspected label errors from features or a run)
    fine-report ...   = python -m engine.report ...   (tables of runs beside the published numbers)
"""
from __future__ import annotations

from engine import detect as _detect
from engine import report as _report
from fine.errors import run_cli


def detect() -> None:
    """``fine-detect``: :func:`engine.detect.main` on the command line; a bad input exits 2 with one line."""
    run_cli(_detect.main)


def report() -> None:
    """``fine-report``: :func:`engine.report.main` on the command line; a bad input exits 2 with one line."""
    run_cli(lambda: _report.main(_report.get_args_parser().parse_args()))
