"""The checks of a run: before it starts (a resume that changes only what may change, room
for two more checkpoints) and after every epoch (a non-finite or diverging loss stops the
run, naming the step and the run element, with the last good checkpoint intact)."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jvae.runs.checkpoints import Checkpointer
from jvae.runs.overrides import config_from_json, resume_differences
from jvae.runs.setup import run_labels
from jvae.training import (DivergenceError, NonFiniteLossError, TrainState, first_divergent_step,
                           first_non_finite)

__all__ = ["check_resume", "check_space", "check_losses", "last_good", "all_finite"]


def check_resume(config, workdir: pathlib.Path) -> list[str]:
    """Refuse a resume whose config changes more than :data:`jvae.runs.overrides.RESUMABLE`;
    returns the allowed changes."""
    stored = workdir / "config.json"
    if not stored.exists():
        return []
    refused, allowed = resume_differences(config_from_json(stored), config)
    if refused:
        raise ValueError(
            f"--resume would change {', '.join(refused)} of the run in {workdir}; a resumed "
            "run keeps its model, data and optimiser (only evaluation, figures, checkpointing, "
            "data location and num_epochs upwards may change: jvae.runs.overrides.RESUMABLE). "
            "Start a new --workdir to train another config.")
    return allowed


def check_space(ckpt: Checkpointer, state: TrainState) -> None:
    """Fail before training when the disk cannot hold two more checkpoints."""
    storable = state._replace(key=jax.random.key_data(state.key))
    need = 2 * sum(int(leaf.nbytes) for leaf in jax.tree.leaves(storable)) + (1 << 20)
    free = shutil.disk_usage(ckpt.directory).free
    if free < need:
        raise OSError(28, f"Not enough disk space for checkpoints in {ckpt.directory}: "
                      f"{free / 1e6:.1f} MB free, about {need / 1e6:.1f} MB needed")


def check_losses(config, ckpt, epoch, state, new_state, step_losses, lowest, multi) -> None:
    """Raise NonFiniteLossError / DivergenceError for an epoch whose per-step losses
    ``[runs, steps]`` (or new parameters) went wrong, naming the step and the run."""
    step0 = int(np.ravel(state.step)[0])
    kept = f"Nothing of epoch {epoch} was saved; {last_good(ckpt)}."
    labels = run_labels(config)
    for i, losses in enumerate(step_losses):   # the earliest bad step of each run is named
        bad = first_non_finite(losses)
        diverged = first_divergent_step(losses, lowest[i], factor=float(config.divergence.factor),
                                        max_loss=float(config.divergence.max_loss),
                                        patience=int(config.divergence.patience))
        which = f"It happened in {labels[i]}. " if multi else ""
        if diverged is not None and (bad is None or diverged[0] < bad):
            step, reason = diverged
            raise DivergenceError(epoch, step, step0 + step, float(losses[step]), reason,
                                  which + kept)
        if bad is not None:
            raise NonFiniteLossError(epoch, bad, step0 + bad, which + kept)
    if not all_finite(new_state.params):
        bad = step_losses.shape[1] - 1        # the last update produced NaN/Inf parameters
        raise NonFiniteLossError(epoch, bad, step0 + bad, kept)


def last_good(ckpt: Checkpointer) -> str:
    """Where the last good checkpoint is, for a failure message."""
    last = ckpt.latest_epoch()
    return (f"the last good checkpoint (epoch {last}) in {ckpt.directory} is intact"
            if last is not None else "no checkpoint had been written yet")


def all_finite(tree: Any) -> bool:
    """Whether every leaf of ``tree`` is finite (one host sync per leaf)."""
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))
