"""A run's scalars in TensorBoard: ``workdir/tensorboard/`` (``config.tensorboard = True``).

The event files hold what the run's JSON-lines records hold, one TensorBoard run per file,
every point at its optimiser step (so the three share one x axis):

- ``tensorboard/epochs``: each ``metrics.jsonl`` record (``train/loss``, ``eval/elbo``, ...,
  ``train/seconds``);
- ``tensorboard/steps``: each ``steps.jsonl`` record (``config.eval.log_steps``);
- ``tensorboard/dev``: each ``dev.jsonl`` record (``config.dataset.dev_size > 0``).

A multi-seed run or sweep writes each list element as ``NAME/i`` beside ``NAME_mean`` and
``NAME_std``; keys that are no metric (``epoch``, ``step``, ``seeds``, ``sweep/...``) are
left out. Scalars are stored as float32 (TensorBoard's ``simple_value``).

Written by process 0 from records already on the host, after each epoch (never inside the
compiled epoch). A resumed run opens the writers with ``purge_step`` at its first new step,
so TensorBoard hides the points of a killed run past the checkpoint (as the records are cut
back). The writer is ``tensorboardX``'s ``SummaryWriter`` (no TensorFlow needed); it is
optional: ``pip install 'jvae[tensorboard]'``. With the switch on and the package missing
the run stops at start-up with one line saying so.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

__all__ = ["TB_DIR", "TB_RUNS", "TensorBoardLog", "check_available", "scalars"]

TB_DIR = "tensorboard"
TB_RUNS = ("epochs", "steps", "dev")
_SKIP = ("epoch", "step", "seeds")


def check_available(enabled: bool) -> None:
    """Raise a one-line ``ImportError`` when ``enabled`` and ``tensorboardX`` is missing."""
    if not enabled:
        return
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise ImportError("config.tensorboard is on but tensorboardX is not installed: pip "
                          "install 'jvae[tensorboard]' (or tensorboardX), or pass "
                          "--config.tensorboard=False.") from None


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one record: ``{tag: value}``.

    Numbers as they are; a list ``NAME`` with a ``NAME_mean`` partner (a per-seed metric) as
    ``NAME/0``, ``NAME/1``, ...; ``epoch``, ``step``, ``seeds``, ``sweep/...`` and
    non-numbers left out.
    """
    out = {}
    for key, value in record.items():
        if key in _SKIP or key.startswith("sweep/"):
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, list) and f"{key}_mean" in record:
            for i, v in enumerate(value):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{key}/{i}"] = float(v)
    return out


class TensorBoardLog:
    """The run's three TensorBoard writers (see the module docstring); inactive (every method
    a no-op) when ``enabled`` is False.

    Args:
      workdir: the run directory; the events go to ``workdir/tensorboard/<run>/``.
      enabled: ``config.tensorboard`` and this is process 0.
      purge_step: the first step this run writes (0 for a fresh run, the checkpoint's step
        + 1 on resume): TensorBoard hides the points of older event files from there on.
    """

    def __init__(self, workdir: str | pathlib.Path, enabled: bool, purge_step: int = 0):
        self.root = pathlib.Path(workdir) / TB_DIR
        self.enabled = bool(enabled)
        self._purge = int(purge_step)
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str):
        if run not in self._writers:
            from tensorboardX import SummaryWriter

            # TensorBoard reads a run's event files in name order, and tensorboardX names
            # them by the second: a resume within the same second would overwrite the
            # first file without the nanoseconds.
            self._writers[run] = SummaryWriter(str(self.root / run), flush_secs=30,
                                               purge_step=self._purge,
                                               filename_suffix=f".{time.time_ns()}")
        return self._writers[run]

    def write(self, run: str, records: list[dict]) -> None:
        """Add ``records`` (each with its ``step``) to the TensorBoard run ``run``."""
        if not self.enabled or not records:
            return
        writer = self._writer(run)
        for record in records:
            step = int(record["step"])
            for tag, value in scalars(record).items():
                writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        """Write the buffered events to disk (a running TensorBoard then shows them)."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every writer."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> "TensorBoardLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
