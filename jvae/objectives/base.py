"""What every objective is: a pure loss, optionally with estimator state, and the surrogate trick.

A *stateless* objective is a plain ``loss(params, key, x) -> (loss, aux)``. A *stateful* one
(score-function estimators with running baselines or a learned baseline) is an
:class:`Objective`, an ``(init, loss)`` pair in the manner of optax's
``GradientTransformation(init, update)``:

    est = objective.init(key, x_example)                        # EstimatorState
    loss, (aux, est) = objective.loss(params, est, key, x)      # pure, jittable

``EstimatorState.params`` are trainable (they receive the gradient of the returned loss, e.g.
the weights of a learned baseline trained by squared error); ``EstimatorState.state`` holds
statistics the loss updates itself (running means). The trainer carries both through the
jitted epoch (:func:`jvae.training.make_train_epoch`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jvae.data.arguments import check_count

__all__ = ["Objective", "EstimatorState", "as_objective", "score_surrogate", "value_and_surrogate",
           "check_bound_args"]

LossFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


class EstimatorState(NamedTuple):
    """Estimator state carried through training.

    Attributes:
      params: trainable parameters of the estimator (``()`` if none); optimised jointly with
        the model by the trainer's optimiser.
      state: non-trainable state (``()`` if none), returned updated by every loss call.
    """

    params: Any = ()
    state: Any = ()


class Objective(NamedTuple):
    """A stateful objective.

    Attributes:
      init: ``init(key, x_example) -> EstimatorState``.
      loss: ``loss(params, est, key, x) -> (loss, (aux, new_est))``: ``loss`` a scalar to
        minimise (its gradient with respect to ``params`` and ``est.params`` is the estimator),
        ``aux`` a flat dict of scalars containing at least ``"loss"`` (the negative bound).
    """

    init: Callable[[jax.Array, jax.Array], EstimatorState]
    loss: Callable[[Any, EstimatorState, jax.Array, jax.Array],
                   tuple[jax.Array, tuple[dict, EstimatorState]]]


def as_objective(loss: LossFn | Objective) -> Objective:
    """Wrap a stateless ``loss(params, key, x)`` as an :class:`Objective` with empty state
    (objectives are returned unchanged), so one trainer serves both kinds."""
    if isinstance(loss, Objective):
        return loss
    if not callable(loss):
        raise TypeError(f"Expected a loss function or an Objective, got {type(loss).__name__}.")

    def init(key, x_example):
        del key, x_example
        return EstimatorState()

    def wrapped(params, est, key, x):
        value, aux = loss(params, key, x)
        return value, (aux, est)

    return Objective(init, wrapped)


def score_surrogate(log_prob: jax.Array, signal: jax.Array) -> jax.Array:
    """The score-function (REINFORCE / likelihood-ratio) surrogate, written once.

    Returns ``(log_prob - stop_gradient(log_prob)) * stop_gradient(signal)``: its *value* is
    exactly zero, and its *gradient* is ``signal * grad log_prob``, the score-function
    estimator of ``grad E_q[signal]`` (Williams, 1992; Mnih & Gregor, 2014, NVIL). Adding it
    to a loss therefore changes the gradient but not the reported value (the "magic box" of
    Foerster et al., 2018). Every score-function term in jvae goes through this helper.

    Args:
      log_prob: ``log q(z|x)`` of *stopped* samples, any shape, differentiable in the
        parameters of ``q``.
      signal: the learning signal (already centred/scaled by control variates), same shape;
        never differentiated.

    Returns:
      Elementwise surrogate, the shape of ``log_prob``; reduce it like the objective.
    """
    return (log_prob - jax.lax.stop_gradient(log_prob)) * jax.lax.stop_gradient(signal)


def value_and_surrogate(value: jax.Array, surrogate: jax.Array) -> jax.Array:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass:
    ``stop_gradient(value) + surrogate - stop_gradient(surrogate)``."""
    return (jax.lax.stop_gradient(value) + surrogate
            - jax.lax.stop_gradient(surrogate)).astype(jnp.result_type(value))


def check_bound_args(num_samples, beta=1.0, kl: str = "auto") -> int:
    """Validate the settings every ELBO-type objective shares; returns ``int(num_samples)``.

    ``beta`` may be a traced value (a vmapped sweep), checked only when it is a number.
    """
    num_samples = check_count(num_samples, "num_samples")
    if isinstance(beta, (int, float)) and not beta >= 0:
        raise ValueError(f"beta must be non-negative, got {beta!r}.")
    if kl not in ("auto", "analytic", "mc"):
        raise ValueError(f"Unknown kl {kl!r}; expected 'auto', 'analytic' or 'mc'.")
    return int(num_samples)
