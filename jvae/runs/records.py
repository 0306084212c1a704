"""A run's per-epoch records: ``metrics.jsonl``, one JSON object per epoch, written by process 0.

Scalars are stored as floats; a multi-seed run or sweep stores per-element lists plus their
``_mean`` and ``_std`` (:func:`add_metrics`).

The records always match the state the run continues from: every start, fresh or resumed,
first cuts ``metrics.jsonl``, ``steps.jsonl`` and ``dev.jsonl`` back to the restored
checkpoint (:func:`cut_records`), so the lines of a run killed after its last checkpoint (or
of an earlier run in a directory without checkpoints) are never kept next to the ones the
continuing run writes again.
"""

from __future__ import annotations

import json
import pathlib

from jvae.runs import steplog
from jvae.runs.steplog import add_metrics
from jvae.training import sharding

__all__ = ["METRICS_FILE", "read_metrics", "write_metrics", "append_metrics", "add_metrics",
           "scalar", "cut_records"]

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """The per-epoch records of ``workdir/metrics.jsonl`` (empty list if absent).

    A last line cut short (a run killed while appending it) is dropped; a damaged line
    before it is a ``ValueError`` naming the file and the line.
    """
    return steplog.read_jsonl(pathlib.Path(workdir) / METRICS_FILE)


def write_metrics(workdir: pathlib.Path, records: list[dict]) -> None:
    """Replace ``metrics.jsonl`` by ``records`` atomically (process 0 only)."""
    if not sharding.is_main_process():   # multi-process: process 0 writes
        return
    path = workdir / METRICS_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def append_metrics(workdir: pathlib.Path, record: dict) -> None:
    """Append one epoch's record to ``metrics.jsonl`` (process 0 only)."""
    if not sharding.is_main_process():
        return
    steplog.append_lines(workdir / METRICS_FILE, json.dumps(record) + "\n")


def cut_records(workdir: pathlib.Path, epoch: int, step: int) -> list[dict]:
    """Cut a run's records back to the state it continues from (process 0 only).

    Keeps the ``metrics.jsonl`` records of epochs ``<= epoch`` and the ``steps.jsonl`` and
    ``dev.jsonl`` records of steps ``<= step``; ``epoch = step = 0`` (a fresh start, or a
    resume without a checkpoint) keeps none but a dev assessment at step 0 is written again
    by the run. ``steps.jsonl`` and ``dev.jsonl`` are removed when nothing is kept, whatever
    the config (so a stale file of an earlier config never survives); ``metrics.jsonl`` is
    rewritten (empty for a fresh start).

    Returns:
      The kept ``metrics.jsonl`` records (the run's history so far).
    """
    workdir = pathlib.Path(workdir)
    history = [r for r in read_metrics(workdir) if r.get("epoch", 0) <= epoch] if epoch else []
    for name in (steplog.STEPS_FILE, steplog.DEV_FILE):
        steplog.cut_jsonl(workdir / name, "step", step if epoch else -1)
    write_metrics(workdir, history)
    return history


def scalar(record: dict, key: str) -> float:
    """``record[key]``, or its ``_mean`` over seeds for a multi-seed record (NaN if absent)."""
    return record.get(f"{key}_mean", record.get(key, float("nan")))
