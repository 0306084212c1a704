"""Checkpoints of a :class:`~jvae.training.TrainState` with orbax.

Orbax writes each checkpoint into a temporary directory and renames it only once complete,
so a crash mid-write leaves the previous checkpoints untouched; a half-written one is never
picked up as the latest. Typed PRNG keys are stored as their raw key data and wrapped again
on restore, so a restored run draws exactly the random numbers the uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp

from jvae.training import TrainState

__all__ = ["Checkpointer", "write_json_atomic"]


def _to_storable(state: TrainState) -> TrainState:
    return state._replace(key=jax.random.key_data(state.key))


class Checkpointer:
    """Save and restore train states by epoch number under ``directory``.

    Args:
      directory: where checkpoints live (created if missing).
      max_to_keep: number of most recent checkpoints kept.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_epoch(self) -> int | None:
        """Epoch of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_step()

    def all_epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state: TrainState) -> None:
        """Write ``state`` as the checkpoint of ``epoch`` and wait until it is on disk."""
        self._manager.save(int(epoch), args=ocp.args.StandardSave(_to_storable(state)),
                           force=True)
        self._manager.wait_until_finished()

    def restore(self, template: TrainState, epoch: int | None = None) -> TrainState:
        """Restore the checkpoint of ``epoch`` (default: latest) into ``template``'s structure.

        Raises:
          FileNotFoundError: no checkpoint exists (the message names the directory).
        """
        if epoch is None:
            epoch = self.latest_epoch()
        if epoch is None:
            raise FileNotFoundError(f"No checkpoint found in {self.directory}.")
        storable = _to_storable(template)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
        restored = self._manager.restore(int(epoch), args=ocp.args.StandardRestore(abstract))
        restored = TrainState(*restored)
        return restored._replace(key=jax.random.wrap_key_data(restored.key))

    def close(self) -> None:
        self._manager.close()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
