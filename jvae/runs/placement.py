"""Where a run's state and data live: one device, replicated for data parallelism, or the
stacked states of many seeds spread over the devices (``config.data_parallel``,
``config.shard_seeds``). In a job of several processes each process puts only its share of
the training examples on its devices."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jvae.data.rows import Rows
from jvae.runs.streaming import to_device
from jvae.training import sharding

__all__ = ["place"]


def place(config, state, train, evals, stacked: bool, log: Callable[[str], None] | None = None):
    """Put state and data (host arrays, ``[N, ...]``) on the devices as ``config.data_parallel``
    / ``shard_seeds`` ask.

    ``data_parallel``: state and evaluation data replicated on every device, each step's
    batch split over them (gradients all-reduced by the compiler). The training array is
    replicated too in one process; with several processes each process reads and places only
    its ``N / processes`` rows (:func:`jvae.training.sharding.shard_examples`; one line to
    ``log`` says which), or, when ``N`` is not a multiple of the devices, the whole array as
    before (one line says so). ``shard_seeds``: the stacked states of a multi-seed run or
    sweep spread over the devices (no communication). Returns ``(state, train, evals,
    batch_sharding or None)``; with neither option, the arrays go to the default device.

    ``train`` may be a reader (:class:`jvae.data.rows.Rows`, uint8 ``npy:`` data): it is
    written to the device chunk by chunk (:func:`jvae.runs.streaming.to_device`), never
    whole on the host; or ``None`` (a streamed run): nothing is placed for it.
    """
    if not (config.data_parallel or config.shard_seeds):
        if jax.process_count() > 1:
            raise ValueError(f"{jax.process_count()} processes but config.data_parallel is "
                             "False: every process would train the whole model alone; pass "
                             "--config.data_parallel=True.")
        # device_put of the host array itself: through jnp.asarray, a read-only array became an
        # alias that the first compiled call copied again (2x the training array at 600k images)
        return state, _put(train), jax.device_put(evals), None
    mesh = sharding.make_mesh()
    if config.data_parallel and config.shard_seeds:
        raise ValueError("Choose one of config.data_parallel and config.shard_seeds.")
    if config.shard_seeds and jax.process_count() > 1:
        raise ValueError("config.shard_seeds runs in one process only (its per-seed metrics "
                         "would span processes); use config.data_parallel with several.")
    evals = sharding.replicate(evals, mesh)
    if config.data_parallel:
        sharding.check_batch_divisible(int(config.batch_size), mesh)
        return (sharding.replicate(state, mesh), _training_array(train, mesh, log), evals,
                sharding.batch_sharding(mesh))
    if not stacked:
        raise ValueError("config.shard_seeds needs num_seeds > 1 or a sweep.")
    return sharding.shard_leading_axis(state, mesh), _replicated(train, mesh), evals, None


def _put(train):
    """The training array on the default device (``None`` stays ``None``)."""
    if train is None or not isinstance(train, Rows):
        return None if train is None else jax.device_put(train)
    return to_device(train)


def _replicated(train, mesh):
    """The training array on every device of ``mesh`` (``None`` stays ``None``)."""
    if train is None:
        return None
    return sharding.replicate(_put(train) if isinstance(train, Rows) else train, mesh)


def _training_array(train, mesh, log) -> jax.Array:
    """The data-parallel training array: this process's share of the rows in a job of
    several processes, the whole array replicated otherwise."""
    if train is None or jax.process_count() == 1:
        return _replicated(train, mesh)
    me, count, n = jax.process_index(), jax.process_count(), len(train)
    shared = sharding.shard_examples(train, mesh)
    if shared is not None:
        rows = sharding.process_rows(n, mesh)
        _say(log, f"process {me} of {count} reads training examples {rows.start}..."
                  f"{rows.stop - 1} of {n} (its share; {mesh.size} devices in all)")
        return shared
    _say(log, f"process {me} of {count} holds all {n} training examples: {n} is not a "
              f"multiple of the {mesh.size} devices (a multiple, e.g. "
              f"config.dataset.limit_train={n - n % mesh.size}, splits them over the processes)")
    return _replicated(train, mesh)


def _say(log, line: str) -> None:
    if log is not None:
        log(f"note: {line}.")
