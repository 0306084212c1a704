"""Control variates for score-function estimators (the DPM2 notebook's section 3.3.2).

A control variate transforms the learning signal ``r`` of a score-function estimator
``r * grad log q(z|x)`` without changing its expectation: it subtracts a baseline that does
not depend on the sample ``z`` (or rescales ``r`` by a positive constant, which rescales the
step). Each one is an ``(init, apply)`` pair; state is a NamedTuple carried in and out:

    params, state = cv.init(key, x_example)
    r, state, loss, aux = cv.apply(params, state, r, ctx)

* ``r``: the signal ``[S, B]`` (S samples of B examples), never differentiated.
* ``ctx``: a :class:`CVContext` with the observations and, where a control variate needs
  them, the signal of a fresh independent sample and the importance log-weights.
* ``loss``: a scalar added to the training loss (the learned baseline's squared error; 0 else).
* ``aux``: diagnostics, merged into the training metrics.

:func:`chain` composes control variates left to right (the notebook's ``CVChain``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jvae.models.nets import MLP
from jvae.objectives.base import EstimatorState, batch_mean, batch_std

__all__ = ["CVContext", "ControlVariate", "RunningMean", "RunningStd", "centred_reward",
           "scaled_reward", "self_critic", "learned_baseline", "leave_one_out",
           "vimco_baseline", "chain", "CONTROL_VARIATES", "make_control_variate",
           "estimator_init"]


class CVContext(NamedTuple):
    """What a control variate may look at besides the signal.

    Attributes:
      x: the observations ``[B, *data_shape]``.
      fresh_signal: ``() -> [S, B]``, the raw learning signal of a fresh sample drawn
        independently of the one being scored (for :func:`self_critic`), or ``None``.
      log_weights: ``[K, B]`` importance log-weights ``log p(x, z_k) - log q(z_k|x)`` of a
        multi-sample bound (for :func:`vimco_baseline`), or ``None``.
      mask: ``[B]``, 1 for a real example and 0 for a padded row of a partial batch, or
        ``None`` (all real): the batch statistics (running mean and std, the baseline's
        squared error) count only the real examples (:func:`jvae.objectives.base.batch_mean`).
    """

    x: jax.Array
    fresh_signal: Callable[[], jax.Array] | None = None
    log_weights: jax.Array | None = None
    mask: jax.Array | None = None


class ControlVariate(NamedTuple):
    """``init(key, x_example) -> (params, state)`` and
    ``apply(params, state, signal, ctx) -> (signal, state, loss, aux)``.

    ``rescales`` marks control variates that divide the signal (``scaled_reward``): they
    rescale the score-function term, so every other part of the inference gradient must be
    in that term too (see :func:`jvae.objectives.score_function.make_sfe_objective`).
    """

    init: Callable[[jax.Array, jax.Array], tuple[Any, Any]]
    apply: Callable[[Any, Any, jax.Array, CVContext], tuple[jax.Array, Any, jax.Array, dict]]
    rescales: bool = False


class RunningMean(NamedTuple):
    """State of :func:`centred_reward`: the running mean and the number of updates."""

    mean: jax.Array
    count: jax.Array


class RunningStd(NamedTuple):
    """State of :func:`scaled_reward`: the running standard deviation (>= 1)."""

    std: jax.Array
    count: jax.Array


def _check_decay(decay: float) -> float:
    if not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay!r}.")
    return float(decay)


def _no_params(key, x_example):
    del key, x_example
    return ()


def _mask(ctx):
    """The batch mask of ``ctx`` (``None``: every row counts); the running statistics need
    nothing else of the context, so they also take ``ctx=None``."""
    return None if ctx is None else ctx.mask


def centred_reward(decay: float = 0.9) -> ControlVariate:
    """Subtract a running mean of the signal (NVIL's input-independent baseline).

    ``r' = r - m_{n-1}`` and then ``m_n = decay * m_{n-1} + (1 - decay) * mean(r)`` with
    ``m_0 = 0``, so after n updates ``m_n = (1 - decay) * sum_i decay^(n-i) * mean(r_i)``.
    The DPM2 notebook's ``CentredReward(alpha=0.9)`` puts weight ``alpha`` on the new batch,
    i.e. ``decay = 1 - alpha = 0.1``.
    """
    decay = _check_decay(decay)

    def init(key, x_example):
        return (), RunningMean(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))

    def apply(params, state, r, ctx):
        out = r - state.mean
        new = decay * state.mean + (1.0 - decay) * batch_mean(r, _mask(ctx))
        return out, RunningMean(new.astype(jnp.float32), state.count + 1), 0.0, {
            "cv/running_mean": state.mean}

    return ControlVariate(init, apply)


def scaled_reward(decay: float = 0.9) -> ControlVariate:
    """Divide the signal by a running standard deviation, floored at 1.

    ``r' = r / s_{n-1}`` and then ``s_n = max(decay * s_{n-1} + (1 - decay) * std(r), 1)``
    with ``s_0 = 1`` (the notebook's ``ScaledReward``; the floor keeps small signals from
    being blown up). ``std`` is over all ``S * B`` entries (population form). A positive
    rescaling keeps the gradient direction's expectation and divides its scale.
    """
    decay = _check_decay(decay)

    def init(key, x_example):
        return (), RunningStd(jnp.ones((), jnp.float32), jnp.zeros((), jnp.int32))

    def apply(params, state, r, ctx):
        out = r / state.std
        new = jnp.maximum(decay * state.std + (1.0 - decay) * batch_std(r, _mask(ctx)), 1.0)
        return out, RunningStd(new.astype(jnp.float32), state.count + 1), 0.0, {
            "cv/running_std": state.std}

    return ControlVariate(init, apply, rescales=True)


def self_critic() -> ControlVariate:
    """Subtract the raw signal of a fresh, independent sample ``z' ~ q(z|x)`` (self-critical
    training, Rennie et al., 2017; the notebook's ``SelfCritic``). Unbiased because ``z'`` is
    independent of the scored ``z``; needs ``ctx.fresh_signal``. Put it first in a chain: it
    subtracts an untransformed signal."""

    def init(key, x_example):
        return (), ()

    def apply(params, state, r, ctx):
        if ctx.fresh_signal is None:
            raise ValueError("self_critic needs ctx.fresh_signal (a score-function objective "
                             "provides it).")
        critic = jax.lax.stop_gradient(ctx.fresh_signal())
        return r - critic, state, 0.0, {"cv/critic_mean": batch_mean(critic, ctx.mask)}

    return ControlVariate(init, apply)


class _BaselineNet(nn.Module):
    hidden: Sequence[int]
    in_event_ndims: int

    @nn.compact
    def __call__(self, x):
        h = MLP(tuple(self.hidden), "relu", in_event_ndims=self.in_event_ndims,
                activate_final=True)(x)
        return nn.Dense(1)(h)[..., 0]


def learned_baseline(hidden: Sequence[int] = (512,), data_ndims: int | None = None
                     ) -> ControlVariate:
    """Subtract ``b_phi(x)``, an MLP of the observation trained by squared error
    ``mean (r - b_phi(x))^2`` (NVIL's input-dependent baseline; the notebook's ``Baseline``).

    Its parameters, ``{"baseline": ...}``, are trainable estimator parameters: the trainer
    optimises them with the model, and a separate learning rate is a parameter group
    (``make_optimizer(..., param_groups={"baseline": lr})``, built on
    ``optax.multi_transform``).

    Its output starts near 0, while an ELBO signal is of the order of -100 to -1000 nats and
    a small learning rate takes many steps to get there: put :func:`centred_reward` before it
    in a chain (``chain(centred_reward(), learned_baseline())``) so that it fits the
    input-dependent residual around the running mean.

    Args:
      hidden: hidden layer widths.
      data_ndims: number of trailing observation axes (default: all axes of ``x_example``
        after the batch axis).
    """
    hidden = tuple(int(h) for h in hidden)

    def net(x_example):
        ndims = data_ndims if data_ndims is not None else x_example.ndim - 1
        return _BaselineNet(hidden, ndims)

    def init(key, x_example):
        return {"baseline": net(x_example).init(key, x_example)}, ()

    def apply(params, state, r, ctx):
        b = net(ctx.x).apply(params["baseline"], ctx.x)              # [B]
        loss = batch_mean((jax.lax.stop_gradient(r) - b) ** 2, ctx.mask)
        return r - jax.lax.stop_gradient(b), state, loss, {
            "cv/baseline_loss": loss, "cv/baseline_mean": batch_mean(b, ctx.mask)}

    return ControlVariate(init, apply)


def leave_one_out() -> ControlVariate:
    """For ``S >= 2`` samples per example, subtract from each sample's signal the mean of the
    other ``S - 1`` (the leave-one-out / RLOO baseline, Kool et al., 2019); unbiased because
    the other samples are independent of the scored one."""

    def init(key, x_example):
        return (), ()

    def apply(params, state, r, ctx):
        s = r.shape[0]
        if s < 2:
            raise ValueError("leave_one_out needs num_samples >= 2.")
        others = (jnp.sum(r, axis=0, keepdims=True) - r) / (s - 1)
        return r - others, state, 0.0, {}

    return ControlVariate(init, apply)


def vimco_baseline() -> ControlVariate:
    """VIMCO's leave-one-out baseline for the K-sample bound (Mnih & Rezende, 2016).

    With ``L = log mean_k w_k`` the signal of every sample, the baseline of sample ``k`` is
    ``L^{-k}``: the same bound with ``log w_k`` replaced by the mean of the other
    ``K - 1`` log-weights; it does not depend on ``z_k``. Needs ``ctx.log_weights [K, B]``.
    """

    def init(key, x_example):
        return (), ()

    def apply(params, state, r, ctx):
        if ctx.log_weights is None:
            raise ValueError("vimco_baseline needs ctx.log_weights (a multi-sample objective "
                             "such as 'vimco' provides them).")
        baseline = vimco_leave_one_out_bound(jax.lax.stop_gradient(ctx.log_weights))
        return r - baseline, state, 0.0, {}

    return ControlVariate(init, apply)


def vimco_leave_one_out_bound(log_w: jax.Array) -> jax.Array:
    """``L^{-k}`` for every k: ``log mean_j w_j`` with ``log w_k`` replaced by the arithmetic
    mean of the other log-weights; ``log_w [K, B] -> [K, B]`` (K >= 2)."""
    k = log_w.shape[0]
    if k < 2:
        raise ValueError("The VIMCO baseline needs num_samples >= 2.")
    others_mean = (jnp.sum(log_w, axis=0, keepdims=True) - log_w) / (k - 1)     # [K, B]
    eye = jnp.eye(k, dtype=bool)[:, :, None]                                    # [K, K, 1]
    replaced = jnp.where(eye, others_mean[:, None, :], log_w[None, :, :])      # [K, K, B]
    return jax.nn.logsumexp(replaced, axis=1) - jnp.log(k)


def chain(*cvs: ControlVariate) -> ControlVariate:
    """Apply control variates left to right; losses add, diagnostics merge (the notebook's
    ``CVChain``). ``chain()`` is the identity."""
    for cv in cvs:
        if not isinstance(cv, ControlVariate):
            raise TypeError(f"chain() takes ControlVariate pairs, got {type(cv).__name__}.")

    def init(key, x_example):
        keys = jax.random.split(key, max(len(cvs), 1))
        pairs = [cv.init(k, x_example) for cv, k in zip(cvs, keys)]
        return tuple(p for p, _ in pairs), tuple(s for _, s in pairs)

    def apply(params, state, r, ctx):
        if len(params) != len(cvs) or len(state) != len(cvs):
            raise ValueError(
                f"This chain has {len(cvs)} control variates but got estimator params/state "
                f"for {len(params)}/{len(state)}: build the state with the same objective's "
                "init().")
        total, aux, new_states = 0.0, {}, []
        for cv, p, s in zip(cvs, params, state):
            r, s, loss, a = cv.apply(p, s, r, ctx)
            total = total + loss
            new_states.append(s)
            aux.update(a)
        return r, tuple(new_states), jnp.asarray(total, jnp.float32), aux

    return ControlVariate(init, apply, rescales=any(cv.rescales for cv in cvs))


def estimator_init(cv: ControlVariate):
    """``init(key, x_example) -> EstimatorState`` of an objective whose only state is that of
    the control variate (chain) ``cv``."""
    def init(key, x_example):
        return EstimatorState(*cv.init(key, x_example))

    return init


CONTROL_VARIATES = ("centred", "scaled", "self_critic", "baseline", "leave_one_out", "vimco")
"""The names of the control variates (the ``control_variates`` of a score-function config)."""


def make_control_variate(name: str, *, decay: float = 0.9,
                         baseline_hidden: Sequence[int] = (512,)) -> ControlVariate:
    """A control variate by its config name (one of :data:`CONTROL_VARIATES`)."""
    makers = {
        "centred": lambda: centred_reward(decay),
        "scaled": lambda: scaled_reward(decay),
        "self_critic": self_critic,
        "baseline": lambda: learned_baseline(baseline_hidden),
        "leave_one_out": leave_one_out,
        "vimco": vimco_baseline,
    }
    if name not in makers:
        raise ValueError(f"Unknown control variate {name!r}; choose from {list(makers)}.")
    return makers[name]()
