"""The train state: parameters, optimiser state, step count, key and estimator state.

A :class:`TrainState` is a NamedTuple carried into and out of every compiled epoch (a pytree:
it can be vmapped over seeds, sharded and checkpointed).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jvae.objectives.base import EstimatorState

__all__ = ["TrainState", "trainable"]


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, so it can be vmapped and saved.

    Attributes:
      params: model parameters.
      opt_state: optimiser state of :func:`trainable` ``(params, estimator)``.
      step: number of optimiser steps taken (int32 scalar).
      key: typed PRNG key consumed by the next epoch.
      estimator: the objective's :class:`~jvae.objectives.base.EstimatorState` (control
        variate statistics, a learned baseline); empty for stateless objectives.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    estimator: EstimatorState = EstimatorState()

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation,
               key: jax.Array, estimator: EstimatorState = EstimatorState()) -> "TrainState":
        """A fresh state; ``estimator`` comes from ``objective.init(key, x_example)``."""
        opt_state = optimizer.init(trainable(params, estimator))
        return cls(params, opt_state, jnp.zeros((), jnp.int32), key, estimator)


def trainable(params: Any, estimator: EstimatorState = EstimatorState()) -> Any:
    """The pytree the optimiser updates: the model parameters, or ``(params, est_params)``
    when the estimator has trainable parameters (e.g. a learned baseline, whose leaves sit
    under a ``"baseline"`` key so a parameter group can give it its own learning rate)."""
    if jax.tree_util.tree_leaves(estimator.params):
        return (params, estimator.params)
    return params


def _untrainable(tree: Any, estimator: EstimatorState) -> tuple[Any, Any]:
    if jax.tree_util.tree_leaves(estimator.params):
        return tree
    return tree, estimator.params
