"""Normalising-flow posteriors: ``q(z|x) = f_* N(mu(h), diag(sigma(h)^2))`` on distrax bijectors.

A flow head maps the encoder's features ``h [..., F]`` to a diagonal Gaussian base and to the
parameters of ``L`` invertible layers ``f = f_L o ... o f_1``, and returns a
:class:`FlowPosterior` (a ``distrax.Transformed``). Sampling is reparameterised,
``z = f(mu + sigma * eps)``, and its log-density comes with it by the change of variables
``log q(z) = log N(z_0) - sum_l log |det df_l/dz_{l-1}|``. Three layer families:

* :class:`PlanarFlowHead`: planar flows ``f(z) = z + u_hat tanh(w^T z + b)`` (Rezende & Mohamed,
  2015, "Variational inference with normalizing flows", appendix A), with ``u_hat`` chosen so
  that ``w^T u_hat >= -1`` (invertibility), every parameter amortised (a function of ``h``).
* :class:`IAFHead`: inverse autoregressive flow (Kingma et al., 2016, "Improved variational
  inference with inverse autoregressive flow"): ``z <- sigma * z + (1 - sigma) * m`` with
  ``[m, s] = MADE(z, h)`` (Germain et al., 2015), ``sigma = sigmoid(s)``, the numerically stable
  gated update of the paper's Algorithm 1; the variable ordering is reversed between layers.
* :class:`CouplingFlowHead`: affine coupling layers (Dinh et al., 2017, "Density estimation
  using Real NVP"), ``distrax.MaskedCoupling`` with alternating masks, conditioned on ``h``.

Shapes: the base has batch shape ``[B]`` (``h [B, F]``), ``sample(seed=k, sample_shape=(S,))``
gives ``[S, B, D]``, ``log_prob`` of ``[S, B, D]`` gives ``[S, B]``, exactly like
:class:`jvae.models.heads.DiagGaussianHead`'s output, so the ELBO (Monte Carlo KL), IWAE / STL / DReG,
the score-function objectives and the evaluator take a flow posterior unchanged.

``log_prob(z)`` of a sample this distribution drew itself is read back from the draw (same
array object; the importance-sampled log-likelihood and ``sample_and_log_prob`` take this
path). Any other ``z`` (STL and DReG re-evaluate ``q`` with stopped parameters) goes through
the inverse: closed form for coupling layers, a bracketed one-dimensional root with an
implicit-function gradient for planar layers, and ``D`` fixed-point passes for IAF layers
(exact after ``D`` passes, so ``D`` times a forward pass: prefer the ``"iwae"`` estimator or
the ELBO with an IAF posterior).

The layers (:class:`Planar`, :class:`IAF`) are ``distrax.Bijector`` subclasses whose
parameters are arrays, so a :class:`FlowPosterior` is a pure function of arrays that can be
used outside ``Module.apply`` and under ``jit``/``vmap``/``lax.map``. The MADE lives in
:mod:`jvae.models.made`.
"""

from __future__ import annotations

from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvae.models.heads import positive_scale
from jvae.models.made import MADE, MADEParams, made_apply
from jvae.models.nets import dense, dropout
from jvae.models.precision import check_compute_dtype

__all__ = ["FlowPosterior", "Planar", "IAF", "PlanarFlowHead", "IAFHead", "CouplingFlowHead",
           "FLOW_POSTERIORS"]

#: Flow posterior names accepted by the builders (``config.model.posterior``).
FLOW_POSTERIORS = ("planar", "iaf", "coupling")
_sg = jax.lax.stop_gradient


class FlowPosterior(distrax.Transformed):
    """``f_* N(loc, diag(scale^2))``: a diagonal Gaussian base pushed through a bijector.

    Args:
      loc: base mean ``[B, D]``.
      scale: base standard deviation ``[B, D]``.
      bijector: a ``distrax`` bijector with ``event_ndims_in = 1`` whose parameters broadcast
        against ``[..., B, D]`` (a ``distrax.Chain`` of flow layers).

    ``mean()`` and ``mode()`` return ``f(loc)``, the image of the base mean (a point estimate:
    the mean of a flow has no closed form); there is no analytic KL (``kl_divergence`` raises
    ``NotImplementedError``, so the ELBO takes its Monte Carlo rate).
    """

    def __init__(self, loc: jax.Array, scale: jax.Array, bijector: distrax.Bijector):
        super().__init__(distrax.MultivariateNormalDiag(loc, scale), bijector)
        self._draws = _Draws()

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        z, log_q = super().sample_and_log_prob(seed=seed, sample_shape=sample_shape)
        self._draws.remember(z, log_q)
        return z, log_q

    def sample(self, *, seed, sample_shape=()):
        return self.sample_and_log_prob(seed=seed, sample_shape=sample_shape)[0]

    def log_prob(self, value: jax.Array) -> jax.Array:
        cached = self._draws.lookup(value)
        return cached if cached is not None else super().log_prob(value)

    def mean(self) -> jax.Array:
        return self.bijector.forward(self.distribution.loc)

    def mode(self) -> jax.Array:
        return self.mean()

    def kl_divergence(self, other_dist, **kwargs):
        raise NotImplementedError("A flow posterior has no analytic KL; use a Monte Carlo one.")


class Planar(distrax.Bijector):
    """Planar layer ``f(z) = z + u_hat tanh(w^T z + b)`` (Rezende & Mohamed, 2015).

    ``u_hat = u + (m(w^T u) - w^T u) w / |w|^2`` with ``m(a) = -1 + softplus(a)`` gives
    ``c = w^T u_hat = m(w^T u) > -1``, so ``f`` is invertible with ``log |det df/dz| =
    log(1 + (1 - tanh^2(w^T z + b)) c)``. The constraint is kept exactly in float32: ``c`` is
    ``softplus(w^T u) - 1`` itself (never the rounded product ``w^T u_hat``, which falls below
    -1 by up to ~1e-4 when ``w^T u`` is far below zero), and the log-det is evaluated as
    ``log(t^2 + softplus(w^T u) sech^2(w^T z + b))`` (``t = tanh(w^T z + b)``, the same
    quantity with nothing cancelled) in log space, so it is finite for all finite parameters
    and points, including where ``softplus`` underflows. The inverse solves the scalar
    equation ``a + c tanh(a + b) = w^T y`` (``a = w^T z``; increasing in ``a``) by bisection on
    ``[w^T y - |c|, w^T y + |c|]``, then takes one Newton step from the stopped root, which
    gives the implicit-function gradient in ``y`` and the parameters.

    Args:
      u: ``[..., D]`` (broadcast against ``z [..., D]``).
      w: ``[..., D]``.
      b: ``[...]``.
      bisection_steps: iterations of the inverse's bisection (50: float32 resolution).
    """

    def __init__(self, u: jax.Array, w: jax.Array, b: jax.Array, bisection_steps: int = 50):
        super().__init__(event_ndims_in=1)
        wu = jnp.sum(w * u, -1)
        w_sq = jnp.sum(w * w, -1, keepdims=True) + 1e-12
        self.c = jax.nn.softplus(wu) - 1.0                # w^T u_hat >= -1 exactly, [...]
        self.log_softplus = _log_softplus(wu)             # log(1 + c), finite, [...]
        self.u_hat = u + (self.c - wu)[..., None] * w / w_sq
        self.w, self.b = w, b
        self.bisection_steps = int(bisection_steps)

    def _log_det(self, a: jax.Array) -> jax.Array:
        """``log(1 + (1 - tanh^2 a) c) = log(tanh^2 a + (1 + c) sech^2 a)`` in log space."""
        abs_a = jnp.abs(a)
        log_sech_sq = 2.0 * (np.log(2.0) - abs_a - jnp.log1p(jnp.exp(-2.0 * abs_a)))
        log_tanh_sq = 2.0 * jnp.log(jnp.maximum(jnp.abs(jnp.tanh(a)), _TINY))
        return jnp.logaddexp(log_tanh_sq, self.log_softplus + log_sech_sq)

    def forward_and_log_det(self, x):
        a = jnp.sum(self.w * x, -1) + self.b
        y = x + self.u_hat * jnp.tanh(a)[..., None]
        return y, self._log_det(a)

    def inverse_and_log_det(self, y):
        target = jnp.sum(self.w * y, -1)
        c, b = self.c, self.b

        def g(a):
            return a + c * jnp.tanh(a + b) - target

        lo, hi = target - jnp.abs(c) - 1e-3, target + jnp.abs(c) + 1e-3

        def bisect(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = g(mid) > 0
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

        lo, hi = jax.lax.fori_loop(0, self.bisection_steps, bisect, _sg((lo, hi)))
        a0 = _sg(0.5 * (lo + hi))
        slope = jnp.maximum(jnp.exp(self._log_det(a0 + b)), _TINY)     # dg/da > 0
        a = a0 - (g(a0) - _sg(g(a0))) / _sg(slope)      # value a0, implicit gradient
        x = y - self.u_hat * jnp.tanh(a + b)[..., None]
        return x, -self._log_det(a + b)


#: Smallest |tanh| and slope used by :class:`Planar` (keeps logs and divisions finite).
_TINY = 1e-30


def _log_softplus(x: jax.Array) -> jax.Array:
    """``log(softplus(x)) = log(log(1 + e^x))``, finite for every finite ``x`` (it is ``x``
    to float32 precision below -20, where ``softplus`` underflows for ``x < -104``)."""
    safe = jnp.maximum(x, -20.0)
    return jnp.where(x < -20.0, x, jnp.log(jax.nn.softplus(safe)))


class IAF(distrax.Bijector):
    """IAF layer ``y = sigma * x + (1 - sigma) * m``, ``[m, s] = MADE(x, h)``,
    ``sigma = sigmoid(s + forget_bias)`` (Kingma et al., 2016, Algorithm 1).

    ``y_i`` depends on ``x_{<i}`` (in the MADE's ordering) and on ``x_i`` through
    ``sigma_i x_i``, so the Jacobian is triangular with ``log |det| = sum_i log sigma_i``.
    The inverse iterates ``x <- (y - (1 - sigma(x)) m(x)) / sigma(x)`` ``D`` times from
    ``x = y``: pass ``k`` fixes the ``k``-th coordinate in the ordering, so the result and its
    autodiff gradient are exact.

    Args:
      params: the MADE's arrays (:class:`jvae.models.made.MADEParams`, context included).
      forget_bias: added to ``s`` (the paper starts ``sigma`` near 1 this way).
    """

    def __init__(self, params: MADEParams, forget_bias: float = 2.0):
        super().__init__(event_ndims_in=1)
        self.params, self.forget_bias = params, float(forget_bias)

    def _gate(self, x):
        m, s = made_apply(self.params, x)
        return m, s + self.forget_bias

    def forward_and_log_det(self, x):
        m, s = self._gate(x)
        sigma = jax.nn.sigmoid(s)
        return sigma * x + (1.0 - sigma) * m, jnp.sum(jax.nn.log_sigmoid(s), -1)

    def inverse_and_log_det(self, y):
        def step(_, x):
            m, s = self._gate(x)
            sigma = jax.nn.sigmoid(s)
            return (y - (1.0 - sigma) * m) / sigma

        # The context's batch axes may be ones y only broadcasts against (a VampPrior's K
        # pseudo-inputs: y [..., 1, D], context [K, H]): the loop's carry has the full shape.
        batch = jnp.broadcast_shapes(y.shape[:-1], self.params.context.shape[:-1])
        y = jnp.broadcast_to(y, batch + y.shape[-1:])
        x = jax.lax.fori_loop(0, y.shape[-1], step, y)
        _, s = self._gate(x)
        return x, -jnp.sum(jax.nn.log_sigmoid(s), -1)


class _FlowHead(nn.Module):
    """Base of the flow heads: the diagonal Gaussian base ``(loc, scale) [..., D]`` from ``h``."""

    latent_dim: int
    num_layers: int = 2
    scale: str = "softplus"
    min_scale: float = 1e-5
    weight_init: str = "lecun"
    dropout_rate: float = 0.0
    compute_dtype: str = "float32"   # the dense layers' and MADEs' products; flows run in float32

    def _check(self, min_dim: int = 1) -> tuple[int, int]:
        d, n = int(self.latent_dim), int(self.num_layers)
        if d < min_dim:
            raise ValueError(f"{type(self).__name__} needs latent_dim >= {min_dim}, got "
                             f"{self.latent_dim!r}.")
        if n <= 0:
            raise ValueError(f"num_layers (model.flow_layers) must be a positive integer, got "
                             f"{self.num_layers!r}.")
        return d, n

    def _layer(self, h, size, name):
        out = dense(size, h.shape[-1], self.weight_init, name=name,
                    compute_dtype=check_compute_dtype(self.compute_dtype))(
            dropout(self, h, self.dropout_rate, name=f"dropout_{name}"))
        return out.astype(jnp.float32) if out.dtype == jnp.bfloat16 else out

    def _base(self, h):
        d = int(self.latent_dim)
        loc = self._layer(h, d, "loc")
        scale = positive_scale(self._layer(h, d, "raw_scale"), self.scale, self.min_scale)
        return loc, scale


def _chain(layers: Sequence[distrax.Bijector]) -> distrax.Bijector:
    # distrax.Chain applies its last bijector first: layer 0 acts on the base sample.
    return distrax.Chain(list(reversed(layers)))


class PlanarFlowHead(_FlowHead):
    """``q(z|x)``: a diagonal Gaussian through ``num_layers`` amortised :class:`Planar` layers.

    Every layer's ``u, w [..., D]`` and ``b [...]`` are linear maps of ``h [..., F]``.
    Returns a :class:`FlowPosterior` with batch shape ``h.shape[:-1]``.
    """

    @nn.compact
    def __call__(self, h: jax.Array) -> FlowPosterior:
        d, n = self._check()
        loc, scale = self._base(h)
        u = self._layer(h, n * d, "u").reshape(h.shape[:-1] + (n, d))
        w = self._layer(h, n * d, "w").reshape(h.shape[:-1] + (n, d))
        b = self._layer(h, n, "b")
        layers = [Planar(u[..., k, :], w[..., k, :], b[..., k]) for k in range(n)]
        return FlowPosterior(loc, scale, _chain(layers))


class IAFHead(_FlowHead):
    """``q(z|x)``: a diagonal Gaussian through ``num_layers`` :class:`IAF` layers.

    Each layer has its own MADE (hidden widths ``hidden``) with the context ``h`` added to its
    first hidden layer; odd layers use the reversed ordering. Returns a
    :class:`FlowPosterior` with batch shape ``h.shape[:-1]``.

    Attributes:
      hidden: the MADE's hidden widths (each at least ``latent_dim - 1``).
      forget_bias: see :class:`IAF`.
    """

    hidden: Sequence[int] = (100,)
    forget_bias: float = 2.0

    @nn.compact
    def __call__(self, h: jax.Array) -> FlowPosterior:
        d, n = self._check()
        loc, scale = self._base(h)
        ctx = dropout(self, h, self.dropout_rate, name="dropout_context")
        layers = [IAF(MADE(d, tuple(self.hidden), reverse=k % 2 == 1, weight_init=self.weight_init,
                           compute_dtype=self.compute_dtype, name=f"made_{k}")(ctx),
                      self.forget_bias) for k in range(n)]
        return FlowPosterior(loc, scale, _chain(layers))


class CouplingFlowHead(_FlowHead):
    """``q(z|x)``: a diagonal Gaussian through ``num_layers`` affine coupling layers (RealNVP).

    Layer ``k`` keeps the coordinates with ``i % 2 == k % 2`` and maps the others by
    ``z_i <- z_i exp(s_i) + t_i``, ``[s, t] = g(z_kept, h)``: a one-hidden-layer network
    whose hidden layer also gets a linear map of ``h``; ``s`` is soft-clipped to
    ``(-3, 3)`` by ``3 tanh(s / 3)``. The output layer starts at zero (each layer starts as
    the identity). Returns a :class:`FlowPosterior` with batch shape ``h.shape[:-1]``.

    Attributes:
      hidden: width of each coupling network's hidden layer.
    """

    hidden: int = 100

    @nn.compact
    def __call__(self, h: jax.Array) -> FlowPosterior:
        d, n = self._check(min_dim=2)
        width = int(self.hidden)
        if width <= 0:
            raise ValueError(f"hidden (model.flow_hidden) must be positive, got {self.hidden!r}.")
        loc, scale = self._base(h)
        layers = []
        for k in range(n):
            mask = jnp.arange(d) % 2 == k % 2
            w1 = self.param(f"kernel_{k}", nn.initializers.lecun_normal(), (d, width))
            b1 = self.param(f"bias_{k}", nn.initializers.zeros, (width,))
            w2 = self.param(f"out_kernel_{k}", nn.initializers.zeros, (width, 2 * d))
            b2 = self.param(f"out_bias_{k}", nn.initializers.zeros, (2 * d,))
            ctx = self._layer(h, width, f"context_{k}")                        # [..., H]
            layers.append(distrax.MaskedCoupling(
                mask, _coupling_conditioner(w1, b1, w2, b2, ctx, d), _affine))
        return FlowPosterior(loc, scale, _chain(layers))


def _coupling_conditioner(w1, b1, w2, b2, ctx, d):
    def conditioner(x_kept):                      # [..., D] (masked) -> [..., D, 2]
        hid = jax.nn.relu(x_kept @ w1 + b1 + ctx)
        out = hid @ w2 + b2
        return out.reshape(out.shape[:-1] + (d, 2))
    return conditioner


def _affine(params):
    log_scale = 3.0 * jnp.tanh(params[..., 0] / 3.0)
    return distrax.ScalarAffine(shift=params[..., 1], log_scale=log_scale)


class _Draws:
    """The draws of one :class:`FlowPosterior` and their log-densities, matched by identity.

    Not a pytree (``distrax``'s flattening keeps it as metadata), so it never carries
    tracers across a ``jit`` boundary; a lookup only compares array objects.
    """

    def __init__(self):
        self._items: list = []

    def remember(self, z, log_q):
        self._items.append((z, log_q))
        del self._items[:-4]

    def lookup(self, value):
        for z, log_q in self._items:
            if value is z:
                return log_q
        return None
