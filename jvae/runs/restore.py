"""Rebuilding a run from its work directory: the config it stored and its newest checkpoint
that verifies."""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Callable, NamedTuple

from jvae.runs.checkpoints import Checkpointer
from jvae.runs.overrides import config_from_json
from jvae.runs.setup import build_run, initial_state

__all__ = ["RestoredRun", "load_run", "restore_run", "report_skipped", "stderr_line"]


class RestoredRun(NamedTuple):
    """A run rebuilt from its work directory by :func:`load_run`.

    Attributes:
      config: the config the run stored (``config.json``).
      datasets: its data (:class:`jvae.runs.builders.Datasets`).
      model: its model.
      state: the restored :class:`~jvae.training.TrainState` (stacked over seeds for a
        multi-seed run or a sweep).
      epoch: the epoch of the restored checkpoint.
    """

    config: Any
    datasets: Any
    model: Any
    state: Any
    epoch: int


def restore_run(workdir: str | pathlib.Path, epoch: int | None = None, *,
                log: Callable[[str], None] | None = None):
    """Rebuild a finished or interrupted run from its work directory.

    Without ``epoch`` the newest checkpoint that verifies is restored; each newer damaged
    one is skipped with a line to ``log`` (default: standard error) saying why.
    :func:`load_run` does the same and also says which epoch it restored.

    Returns:
      ``(config, datasets, model, state)`` with the state of the newest (or given) checkpoint
      (stacked over seeds for a multi-seed run).

    Raises:
      FileNotFoundError: ``workdir`` holds no ``config.json`` or no checkpoint.
      jvae.runs.checkpoints.CheckpointError: no checkpoint verifies, or it does not fit the
        stored config.
    """
    return tuple(load_run(workdir, epoch, log=log)[:4])


def load_run(workdir: str | pathlib.Path, epoch: int | None = None, *,
             log: Callable[[str], None] | None = None) -> RestoredRun:
    """:func:`restore_run` with the restored checkpoint's epoch: a :class:`RestoredRun`.

    Raises:
      As :func:`restore_run`; ``ValueError`` for an ``epoch`` that is not an integer >= 0.
    """
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)
                              or epoch < 0):
        raise ValueError(f"epoch must be an integer >= 0 (a checkpoint's epoch) or None for "
                         f"the newest, got {epoch!r}.")
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found: {workdir} is not a jvae run directory (train one with "
            "python -m jvae.train --config ... --workdir DIR).")
    config = config_from_json(config_path)
    datasets, model, optimizer = build_run(config)
    template = initial_state(config, model, optimizer, datasets.train[:1])
    ckpt = Checkpointer(workdir / "checkpoints")
    if epoch is None:
        restored = ckpt.restore_latest(template, warn=False)
        report_skipped(restored.skipped, restored.epoch, ckpt, log or stderr_line)
        state, epoch = restored.state, restored.epoch
    else:
        state = ckpt.restore(template, epoch)
    return RestoredRun(config, datasets, model, state, int(epoch))


def stderr_line(line: str) -> None:
    """The default ``log`` of a run: one line to standard error."""
    print(line, file=sys.stderr)


def report_skipped(skipped, epoch: int, ckpt: Checkpointer, log) -> None:
    """One ``log`` line per damaged checkpoint skipped on the way to ``epoch``."""
    for e, reason in skipped:
        log(f"warning: skipped the checkpoint of epoch {e} in {ckpt.directory}: {reason}; "
            f"using epoch {epoch}.")
