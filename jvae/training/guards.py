"""Stopping a run whose loss turns non-finite or blows up while it is still finite.

A non-finite loss is caught by :class:`NonFiniteLossError`; a loss that grows
by orders of magnitude (a learning rate of 1e6 gives 1e33 nats) stays finite and would
otherwise be reported as a finished run. :func:`first_divergent_step` checks an epoch's
per-step losses on the host, after the epoch, against the running minimum of the run.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DivergenceError", "NonFiniteLossError", "first_divergent_step", "first_non_finite"]


class DivergenceError(FloatingPointError):
    """Raised when the training loss diverges while finite; names the epoch and step."""

    def __init__(self, epoch: int, step_in_epoch: int, global_step: int, loss: float,
                 reason: str, detail: str = ""):
        self.epoch, self.step_in_epoch, self.global_step = epoch, step_in_epoch, global_step
        self.loss = loss
        super().__init__(
            f"Training diverged at epoch {epoch}, step {step_in_epoch} of that epoch (global "
            f"step {global_step}): loss {loss:.4g} {reason}. {detail}".strip())


def first_divergent_step(losses, running_min: float, *, factor: float,
                         max_loss: float, patience: int = 1) -> tuple[int, str] | None:
    """The first step of an epoch whose loss diverged, or ``None``.

    The run diverged at a step whose ``|loss| > max_loss`` (at once), or at the first of
    ``patience`` consecutive steps whose ``loss > m + factor * max(|m|, 1)``, where ``m`` is
    the smallest loss of all earlier steps of the run (``running_min`` before this epoch,
    ``inf`` at the start): a brief spike that recovers (a Gaussian likelihood whose predicted
    scale collapses for a few steps) is not a divergence. ``factor = 0`` or ``max_loss = 0``
    switches that test off. Non-finite losses are left to the non-finite check.

    Args:
      losses: per-step losses of the epoch, ``[steps]``.
      running_min: smallest loss before this epoch.
      factor: relative threshold (``config.divergence.factor``).
      max_loss: absolute threshold (``config.divergence.max_loss``).
      patience: consecutive steps above the relative threshold (``config.divergence.patience``;
        within one epoch).

    Returns:
      ``(step, reason)`` of the first divergent step.
    """
    losses = np.asarray(losses, np.float64).ravel()
    finite = np.where(np.isfinite(losses), losses, np.inf)
    before = np.minimum.accumulate(np.concatenate([[running_min], finite]))[:-1]
    absurd = np.zeros(losses.shape, bool)
    if max_loss:
        absurd = np.isfinite(losses) & (np.abs(losses) > max_loss)
    high = np.zeros(losses.shape, bool)
    if factor:
        limit = before + factor * np.maximum(np.abs(before), 1.0)
        high = np.isfinite(before) & np.isfinite(losses) & (losses > limit)
        patience = max(int(patience), 1)
        # a step starts a divergence when it and the next patience - 1 steps are all high
        runs = np.convolve(high.astype(np.int64), np.ones(patience, np.int64), "full")
        high = runs[patience - 1:] == patience
    first = [int(np.flatnonzero(a)[0]) for a in (absurd, high) if a.any()]
    if not first:
        return None
    i = min(first)
    if absurd[i]:
        return i, f"exceeds config.divergence.max_loss = {max_loss:g}"
    return i, (f"exceeds {factor:g} times the run's lowest loss so far ({before[i]:.4g}) for "
               f"{patience} consecutive steps (config.divergence.factor, .patience)")


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss is NaN or infinite; names the epoch and step."""

    def __init__(self, epoch: int, step_in_epoch: int, global_step: int, detail: str = ""):
        self.epoch, self.step_in_epoch, self.global_step = epoch, step_in_epoch, global_step
        super().__init__(
            f"Training loss became non-finite at epoch {epoch}, step {step_in_epoch} of that "
            f"epoch (global step {global_step}). {detail}".strip())


def first_non_finite(values) -> int | None:
    """Index of the first NaN/Inf in a 1-D array of per-step losses, or ``None``."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(values)))
    return int(bad[0]) if bad.size else None
