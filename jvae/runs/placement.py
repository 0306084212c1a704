"""Where a run's state and data live: one device, replicated for data parallelism, or the
stacked states of many seeds spread over the devices (``config.data_parallel``,
``config.shard_seeds``)."""

from __future__ import annotations

import jax

from jvae.training import sharding

__all__ = ["place"]


def place(config, state, train, evals, stacked: bool):
    """Put state and data on the devices as ``config.data_parallel`` / ``shard_seeds`` ask.

    ``data_parallel``: state and data replicated on every device, each step's batch split
    over them (gradients all-reduced by the compiler). ``shard_seeds``: the stacked states of
    a multi-seed run or sweep spread over the devices (no communication). Returns
    ``(state, train, evals, batch_sharding or None)``; with neither option, nothing moves.
    """
    if not (config.data_parallel or config.shard_seeds):
        if jax.process_count() > 1:
            raise ValueError(f"{jax.process_count()} processes but config.data_parallel is "
                             "False: every process would train the whole model alone; pass "
                             "--config.data_parallel=True.")
        return state, train, evals, None
    mesh = sharding.make_mesh()
    if config.data_parallel and config.shard_seeds:
        raise ValueError("Choose one of config.data_parallel and config.shard_seeds.")
    if config.shard_seeds and jax.process_count() > 1:
        raise ValueError("config.shard_seeds runs in one process only (its per-seed metrics "
                         "would span processes); use config.data_parallel with several.")
    train, evals = sharding.replicate((train, evals), mesh)
    if config.data_parallel:
        sharding.check_batch_divisible(int(config.batch_size), mesh)
        return sharding.replicate(state, mesh), train, evals, sharding.batch_sharding(mesh)
    if not stacked:
        raise ValueError("config.shard_seeds needs num_seeds > 1 or a sweep.")
    return sharding.shard_leading_axis(state, mesh), train, evals, None
