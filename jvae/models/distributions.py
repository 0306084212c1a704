"""Thin glue over distrax and TFP's JAX substrate.

Everything here returns ``distrax`` distributions whose ``log_prob`` is per example: the
trailing event dimensions are summed, every leading (batch or sample) dimension is kept.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
from tensorflow_probability.substrates import jax as tfp

tfd = tfp.distributions

__all__ = [
    "Bernoulli",
    "FlatIndependent",
    "bernoulli",
    "continuous_bernoulli",
    "continuous_bernoulli_log_normalizer",
    "diag_gaussian",
    "gaussian",
    "kl_divergence",
    "has_analytic_kl",
    "is_reparameterised",
    "normal_kl",
    "normal_nll",
    "mixture_diag_gaussian",
    "sample_mixture",
]


class Bernoulli(distrax.Bernoulli):
    """``distrax.Bernoulli`` with a cheaper, equally stable ``log_prob``.

    ``log p(x) = x * logit - softplus(logit)``: one softplus per element instead of distrax's
    two (``-softplus(-l)`` and ``-softplus(l)``), identical for ``x`` in [0, 1] and finite
    logits. This is the decoder's hot path, so it matters for epoch time.
    """

    def log_prob(self, value):
        logits = self.logits
        return value * logits - jax.nn.softplus(logits)


class FlatIndependent(distrax.Independent):
    """``distrax.Independent`` whose ``log_prob`` runs over the flattened event axes.

    Same values as ``distrax.Independent``. An image likelihood over ``[..., 28, 28, 1]``
    otherwise evaluates its element-wise log-density on that shape, and XLA's CPU loops,
    which vectorise along the innermost axis, then run on an axis of length 1: in the
    ``pytorch_example`` training step the fused softplus of the Bernoulli log-density took
    13.8 ms per 50 steps on ``[1, 128, 28, 28, 1]`` and 7.1 ms on ``[1, 128, 784]``. For
    Bernoulli, continuous Bernoulli and Normal base distributions the parameters and the value
    are reshaped to ``[..., prod(event_shape)]`` first; any other base distribution, or a
    value whose trailing shape is not the event shape, takes ``distrax.Independent``'s path
    unchanged.
    """

    def log_prob(self, value):
        k = self.reinterpreted_batch_ndims
        value = jnp.asarray(value)
        event = tuple(self.event_shape)
        if k < 2 or value.ndim < k or tuple(value.shape[value.ndim - k:]) != event:
            return super().log_prob(value)
        full = tuple(self.distribution.batch_shape)
        lead = full[: len(full) - k]

        def flat(a):
            return jnp.broadcast_to(a, full).reshape(lead + (-1,))

        base = self.distribution
        if isinstance(base, Bernoulli):
            flat_base = Bernoulli(logits=flat(base.logits))
        elif isinstance(base, tfd.ContinuousBernoulli) and base.logits is not None:
            flat_base = tfd.ContinuousBernoulli(logits=flat(base.logits))
        elif isinstance(base, distrax.Normal):
            flat_base = distrax.Normal(flat(base.loc), flat(base.scale))
        else:
            return super().log_prob(value)
        return jnp.sum(flat_base.log_prob(value.reshape(value.shape[: value.ndim - k] + (-1,))),
                       axis=-1)


def bernoulli(logits: jax.Array, event_ndims: int) -> distrax.Distribution:
    """Product of Bernoullis over the last ``event_ndims`` axes of ``logits``.

    Args:
      logits: ``[..., *event_shape]`` log-odds.
      event_ndims: number of trailing axes that form one observation.

    Returns:
      :class:`FlatIndependent` over :class:`Bernoulli`, with batch shape
      ``logits.shape[:-event_ndims]``.
      Its ``log_prob`` accepts grey levels in [0, 1] too, where it equals minus the
      binary cross-entropy (the PyTorch-examples VAE objective).
    """
    return FlatIndependent(Bernoulli(logits=logits), event_ndims)


def continuous_bernoulli(logits: jax.Array, event_ndims: int) -> distrax.Distribution:
    """Product of continuous Bernoullis (Loaiza-Ganem & Cunningham, 2019).

    Uses ``tfp.substrates.jax.distributions.ContinuousBernoulli`` (numerically stable near
    ``p = 0.5``) wrapped so that it composes with ``distrax.Independent``.

    Args:
      logits: ``[..., *event_shape]`` natural parameters (log-odds of ``lambda``).
      event_ndims: number of trailing axes that form one observation.
    """
    return FlatIndependent(tfd.ContinuousBernoulli(logits=logits), event_ndims)


def continuous_bernoulli_log_normalizer(probs: jax.Array) -> jax.Array:
    """Closed form ``log C(l) = log(2 atanh(1 - 2l) / (1 - 2l))``, ``log 2`` at ``l = 0.5``.

    Away from 0.5 it is computed as ``log(logit(l) / (2l - 1))`` (``2 atanh(1 - 2l) =
    -logit(l)``, ``logit(l) = log(l) - log1p(-l)``), accurate up to the ends of (0, 1). For
    ``|1 - 2l| < 0.1``, where that ratio cancels in float32, the series
    ``atanh(u) / u = 1 + u^2/3 + u^4/5 + u^6/7 + u^8/9 + O(u^10)`` is used. A reference for
    tests: the likelihood itself uses TFP's implementation.
    """
    probs = jnp.asarray(probs)
    u = 1.0 - 2.0 * probs
    near = jnp.abs(u) < 0.1
    safe = jnp.where(near, 0.25, probs)
    exact = jnp.log((jnp.log(safe) - jnp.log1p(-safe)) / (2.0 * safe - 1.0))
    u2 = jnp.where(near, u, 0.0) ** 2
    series = jnp.log(2.0) + jnp.log1p(u2 * (1 / 3 + u2 * (1 / 5 + u2 * (1 / 7 + u2 / 9))))
    return jnp.where(near, series, exact)


def gaussian(loc: jax.Array, scale: jax.Array, event_ndims: int) -> distrax.Distribution:
    """Product of univariate Gaussians over the last ``event_ndims`` axes."""
    return FlatIndependent(distrax.Normal(loc, scale), event_ndims)


def diag_gaussian(loc: jax.Array, scale: jax.Array) -> distrax.Distribution:
    """Diagonal Gaussian ``N(loc, diag(scale^2))`` over the last axis (reparameterisable)."""
    return distrax.MultivariateNormalDiag(loc, scale)


def mixture_diag_gaussian(logits: jax.Array, loc: jax.Array,
                          scale: jax.Array) -> distrax.MixtureSameFamily:
    """Mixture of ``C`` diagonal Gaussians over the last axis.

    Args:
      logits: mixing logits ``[..., C]``.
      loc: component means ``[..., C, D]``.
      scale: component standard deviations ``[..., C, D]``.

    Returns:
      ``MixtureSameFamily`` with batch shape ``[...]`` and event shape ``[D]``. Its ``sample``
      is not reparameterisable in the mixing weights (the component choice is discrete); use
      :func:`sample_mixture` for the pathwise-within-component sample.
    """
    if loc.shape != scale.shape or loc.shape[:-1] != logits.shape:
        raise ValueError(f"Mixture shapes disagree: logits {logits.shape}, loc {loc.shape}, "
                         f"scale {scale.shape} (expected [..., C], [..., C, D], [..., C, D]).")
    return distrax.MixtureSameFamily(distrax.Categorical(logits=logits),
                                     distrax.MultivariateNormalDiag(loc, scale))


def mixture_parts(q: distrax.Distribution) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(logits [..., C], loc [..., C, D], scale [..., C, D])`` of a diagonal-Gaussian mixture
    built by :func:`mixture_diag_gaussian`; ``TypeError`` for anything else."""
    if not isinstance(q, distrax.MixtureSameFamily):
        raise TypeError(f"Expected a mixture of diagonal Gaussians, got {type(q).__name__}.")
    comps = q.components_distribution
    if not isinstance(comps, distrax.MultivariateNormalDiag):
        raise TypeError("Expected MultivariateNormalDiag mixture components, got "
                        f"{type(comps).__name__}.")
    return q.mixture_distribution.logits, comps.loc, comps.scale_diag


def sample_mixture(q: distrax.Distribution, key: jax.Array,
                   sample_shape: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """Draw ``(c, z)`` from a diagonal-Gaussian mixture, pathwise within the component.

    ``c ~ Categorical(softmax(logits))`` carries no gradient; ``z = loc_c + scale_c * eps``
    with ``eps ~ N(0, I)`` is differentiable in the chosen component's ``loc`` and ``scale``.
    This is the sampling half of the mixture estimator (score function for ``c``,
    reparameterisation for ``z``).

    Returns:
      ``c`` of shape ``[*sample_shape, ...]`` (int32) and ``z`` of shape
      ``[*sample_shape, ..., D]``.
    """
    logits, loc, scale = mixture_parts(q)
    k_c, k_eps = jax.random.split(key)
    batch = tuple(sample_shape) + logits.shape[:-1]
    c = jax.random.categorical(k_c, logits, shape=batch)
    onehot = jax.nn.one_hot(c, logits.shape[-1], dtype=loc.dtype)[..., None]   # [..., C, 1]
    eps = jax.random.normal(k_eps, batch + loc.shape[-1:], loc.dtype)
    mu = jnp.sum(onehot * loc, axis=-2)
    sigma = jnp.sum(onehot * scale, axis=-2)
    return c, mu + sigma * eps


def is_reparameterised(q: distrax.Distribution) -> bool:
    """Whether ``q.sample`` is a pathwise (reparameterised) draw whose gradient is unbiased:
    torch's ``has_rsample``. False for a mixture (its component choice is discrete; distrax
    would differentiate only within the chosen component), True for the Gaussians and flows
    jvae builds."""
    return not isinstance(q, distrax.MixtureSameFamily)


def require_reparameterised(q: distrax.Distribution, what: str) -> None:
    """Raise ``ValueError`` if ``q`` cannot be sampled pathwise (a mixture: its component
    choice is discrete and ``q.sample`` would silently give a biased gradient)."""
    if not is_reparameterised(q):
        raise ValueError(
            f"{what} needs a reparameterisable posterior, but q(z|x) is a mixture: train it "
            "with objective 'mixture' (score function for the component, path derivatives "
            "within it), 'sfe' or 'vimco'.")


def has_analytic_kl(q: distrax.Distribution, p: distrax.Distribution) -> bool:
    """Whether distrax/TFP registers a closed-form ``KL(q || p)`` for these types."""
    try:
        jax.eval_shape(lambda: q.kl_divergence(p))
    except NotImplementedError:
        return False
    return True


def kl_divergence(
    q: distrax.Distribution,
    p: distrax.Distribution,
    z: jax.Array | None = None,
    *,
    method: str = "auto",
) -> jax.Array:
    """``KL(q || p)`` per example: analytic where registered, Monte Carlo otherwise.

    Args:
      q: distribution with batch shape ``[B]`` (or any batch shape).
      p: distribution broadcastable against ``q``.
      z: samples ``[S, *q.batch_shape, D]`` from ``q``, needed for the Monte Carlo estimate
        ``mean_s [log q(z_s) - log p(z_s)]``.
      method: ``"auto"`` (analytic if registered, else MC), ``"analytic"`` (error if not
        registered) or ``"mc"``.

    Returns:
      ``[*q.batch_shape]`` KL values (an unbiased estimate when Monte Carlo).
    """
    if method not in ("auto", "analytic", "mc"):
        raise ValueError(f"Unknown KL method {method!r}; expected 'auto', 'analytic' or 'mc'.")
    if method != "mc":
        if has_analytic_kl(q, p):
            return q.kl_divergence(p)
        if method == "analytic":
            raise ValueError(
                f"No analytic KL registered for {type(q).__name__} || {type(p).__name__}; "
                "use method='mc' or 'auto'.")
    if z is None:
        raise ValueError("Monte Carlo KL needs samples z from q.")
    return jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0)



def normal_kl(mean_1, log_std_1, mean_2=None, log_std_2=None) -> jax.Array:
    """Element-wise ``KL(N(mean_1, exp(log_std_1)^2) || N(mean_2, exp(log_std_2)^2))``.

    Homework 2's ``get_normal_KL``: Gaussians given by a mean and a *log standard deviation*
    (its heads' ``mu, log_std`` outputs), the second one standard normal when ``mean_2`` /
    ``log_std_2`` is ``None`` (zeros). No reduction: a diagonal Gaussian's KL is the sum of
    the result over its last axis. The closed form

    ``log s2 - log s1 + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2``

    is computed from the log standard deviations (``exp(2 (log_std_1 - log_std_2))``), so it
    stays finite where ``s1`` or ``s2`` alone would overflow. The homework's asserted values
    (e.g. ``normal_kl(2, 3, 4, 5) = 1.50925``) are checked in ``tests/test_homework2.py``.

    Args:
      mean_1: the first Gaussian's mean (any shapes that broadcast together).
      log_std_1: the first Gaussian's log standard deviation.
      mean_2: the second's mean, or ``None`` for 0.
      log_std_2: the second's log standard deviation, or ``None`` for 0 (with ``mean_2 =
        None``: the standard normal).

    Returns:
      The broadcast shape of the inputs, float32 (or the inputs' float dtype).
    """
    m1 = jnp.asarray(mean_1, jnp.result_type(float, mean_1))
    s1 = jnp.asarray(log_std_1, m1.dtype)
    m2 = jnp.zeros_like(m1) if mean_2 is None else jnp.asarray(mean_2, m1.dtype)
    s2 = jnp.zeros_like(s1) if log_std_2 is None else jnp.asarray(log_std_2, m1.dtype)
    return (s2 - s1 + 0.5 * jnp.exp(2.0 * (s1 - s2))
            + 0.5 * jnp.square(m1 - m2) * jnp.exp(-2.0 * s2) - 0.5)


def normal_nll(x, mean, log_std) -> jax.Array:
    """Element-wise ``-log N(x | mean, exp(log_std)^2)``: Homework 2's ``get_normal_nll``.

    ``0.5 log(2 pi) + log_std + (x - mean)^2 / (2 exp(2 log_std))``, not reduced (sum over
    the last axis for a diagonal Gaussian). The homework's asserted values (e.g.
    ``normal_nll(2, 2, 3) = 3.9189``) are checked in ``tests/test_homework2.py``.

    Args:
      x: observations.
      mean: the Gaussian's mean (any shape that broadcasts with ``x``).
      log_std: its log standard deviation (likewise).

    Returns:
      The broadcast shape, float32 (or the inputs' float dtype).
    """
    x = jnp.asarray(x, jnp.result_type(float, x))
    mean, log_std = jnp.asarray(mean, x.dtype), jnp.asarray(log_std, x.dtype)
    return (0.5 * jnp.log(2.0 * jnp.pi) + log_std
            + 0.5 * jnp.square(x - mean) * jnp.exp(-2.0 * log_std))
