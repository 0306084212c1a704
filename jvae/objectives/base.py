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

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jvae.data.arguments import check_count

__all__ = ["Objective", "EstimatorState", "as_objective", "score_surrogate", "value_and_surrogate",
           "check_bound_args", "batch_mean", "batch_std", "accepts_mask", "accepts_step"]

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
        jvae's objectives also take ``mask=`` (``[B]``, 1 for a real example, 0 for padding):
        every mean over the batch, the control variates' statistics included, then counts
        only the real examples (see :func:`batch_mean`; a trainer keeping the last partial
        batch of an epoch passes it).
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

    def wrapped(params, est, key, x, mask=None):
        value, aux = loss(params, key, x) if mask is None else loss(params, key, x, mask=mask)
        return value, (aux, est)

    def wrapped_step(params, est, key, x, mask=None, *, step):
        value, aux = loss(params, key, x, mask=mask, step=step)
        return value, (aux, est)

    return Objective(init, wrapped_step if accepts_step(loss) else wrapped)


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


def batch_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` ``[..., B]`` (the batch axis last) over the real examples.

    ``mask=None``: ``jnp.mean(values)`` itself (the same operation, so unmasked training is
    unchanged bit for bit). With ``mask`` ``[B]`` (1 for a real example, 0 for a padded row
    of a partial batch): ``sum(values[..., real]) / (count(real) * prod(leading))``, the
    mean a batch of only the real examples would give; padded entries are selected away
    (not multiplied by 0), so a non-finite padded value cannot leak in.
    """
    if mask is None:
        return jnp.mean(values)
    real = jnp.broadcast_to(mask > 0, values.shape)
    per = values.size // max(values.shape[-1], 1)
    count = jnp.sum(mask > 0).astype(values.dtype) * per
    return jnp.sum(jnp.where(real, values, 0)) / jnp.maximum(count, 1)


def batch_std(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Population standard deviation of ``values`` ``[..., B]`` over the real examples
    (``jnp.std(values)`` itself without ``mask``; see :func:`batch_mean`)."""
    if mask is None:
        return jnp.std(values)
    centred = values - batch_mean(values, mask)
    return jnp.sqrt(batch_mean(centred * centred, mask))


def accepts_mask(loss: Callable | Objective) -> bool:
    """Whether a loss function (or an :class:`Objective`'s ``loss``) takes a ``mask``
    keyword, i.e. can train on a padded partial batch."""
    fn = loss.loss if isinstance(loss, Objective) else loss
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "mask" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                   for p in params.values())


def accepts_step(loss: Callable | Objective) -> bool:
    """Whether a loss function (or an :class:`Objective`'s ``loss``) takes a ``step``
    keyword: the optimiser step, from which it computes a scheduled weight (a KL warm-up,
    :func:`jvae.objectives.make_elbo_loss` with a schedule). The trainer passes
    ``state.step`` plus the step's index in the epoch to such a loss, and nothing to others."""
    fn = loss.loss if isinstance(loss, Objective) else loss
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "step" in params
