"""Exact t-SNE in JAX (van der Maaten & Hinton, 2008), for maps of latent spaces.

t-SNE embeds ``N`` points ``x_i`` in a low-dimensional space (``y_i``, usually 2-D) so that
neighbourhoods are kept: it matches the joint probabilities ``p_ij`` of Gaussian neighbourhoods
in the data (each point's bandwidth set so that its conditional distribution has the given
*perplexity*, symmetrised as ``p_ij = (p_j|i + p_i|j) / 2N``) with the Student-t
probabilities ``q_ij ~ (1 + |y_i - y_j|^2)^-1`` of the map, by gradient descent on
``KL(P || Q)``. This is the *exact* method of the paper, the one of ``sklearn.manifold.TSNE
(method="exact")``, with its optimiser: early exaggeration 12 of ``P`` for the first 250
iterations with momentum 0.5, then momentum 0.8; per-coordinate gains (+0.2 where the
gradient changes sign, x0.8 where it does not, at least 0.01; Jacobs, 1988); learning rate
``max(N / 12 / 4, 50)`` (sklearn's ``"auto"``, Belkina et al., 2019); PCA initialisation
scaled so that the first coordinate has standard deviation 1e-4 (Kobak & Linderman, 2021).
Unlike sklearn it always runs all ``num_iters`` iterations (no early stop on a small
gradient), inside one jitted ``lax.fori_loop``.

The exact method holds ``[N, N]`` matrices: memory and time per iteration grow as ``N^2``, so
:func:`tsne` refuses more than ``max_points`` points (2000 by default, about 16 MB per matrix
and a few seconds per 1000 iterations on a CPU core per 1000 points); subsample larger sets.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jvae.data.arguments import check_count, check_number
from jvae.data.validate import check_points

__all__ = ["tsne", "TSNEResult", "TSNEMap", "tsne_map", "joint_probabilities",
           "tsne_kl_divergence"]

_EPS = float(np.finfo(np.float32).tiny)   # floor of P and Q inside logs (sklearn: 2.2e-16)
_EXAGGERATION_ITERS = 250


class TSNEResult(NamedTuple):
    """Output of :func:`tsne`.

    Attributes:
      embedding: ``[N, num_components]`` map coordinates.
      kl_divergence: scalar ``KL(P || Q)`` of the final map (without exaggeration).
    """

    embedding: jax.Array
    kl_divergence: jax.Array


def joint_probabilities(x, perplexity: float = 30.0, *, tol: float = 1e-5,
                        max_steps: int = 100) -> jax.Array:
    """The symmetrised joint probabilities ``P`` of t-SNE for data ``x``.

    For each point ``i`` the precision ``beta_i`` of ``p_j|i ~ exp(-beta_i |x_i - x_j|^2)``
    is found by bisection (all rows at once, ``max_steps`` halvings, a row stopping once its
    entropy is within ``tol`` nats of ``log(perplexity)``), as sklearn's
    ``_binary_search_perplexity``; then ``P = (P_cond + P_cond^T) / sum``.

    Args:
      x: ``[N, D]`` data.
      perplexity: effective number of neighbours, in ``(0, N - 1)``.
      tol: entropy tolerance of the bisection (nats).
      max_steps: bisection steps.

    Returns:
      ``[N, N]`` float32 symmetric matrix with zero diagonal summing to 1 (off-diagonal
      entries floored at the smallest normal float32).

    Raises:
      ValueError: ``x`` is not a finite ``[N, D]`` array, or the perplexity is out of range.
    """
    x = _check_points(x, perplexity, "joint_probabilities")
    tol = check_number(tol, "joint_probabilities: tol", low=0.0, low_open=True)
    max_steps = check_count(max_steps, "joint_probabilities: max_steps")
    return _joint_probabilities(x, jnp.float32(perplexity), tol, max_steps)


class TSNEMap(NamedTuple):
    """Output of :func:`tsne_map`, ready for :func:`jvae.plotting.save_latent_tsne`.

    Attributes:
      embedding: ``[n, 2]`` numpy map coordinates of the mapped points.
      labels: ``[n]`` labels of the mapped points, or ``None``.
      total: the number of points the mapped ones were drawn from.
      perplexity: the perplexity used.
    """

    embedding: np.ndarray
    labels: np.ndarray | None
    total: int
    perplexity: float


def tsne_map(latents, labels=None, *, max_points: int = 2000, perplexity: float = 30.0,
             num_iters: int = 1000, seed: int = 0) -> TSNEMap:
    """A 2-D t-SNE map of latents of more than 2 dimensions, for a figure.

    More than ``max_points`` points are subsampled without replacement (by ``seed``, kept in
    their original order): exact t-SNE costs ``O(N^2)`` memory and time per iteration (1000
    points: about 2 s on a CPU core). The map itself is deterministic (PCA initialisation).

    Args:
      latents: ``[N, D]`` with ``D > 2`` (posterior means, say; plot 2-D latents directly).
      labels: ``[N]`` integer labels, or ``None``.
      max_points: the most points mapped.
      perplexity: t-SNE's effective number of neighbours (below the mapped count - 1).
      num_iters: t-SNE iterations (the first 250 with early exaggeration).
      seed: the subsample's seed.

    Raises:
      ValueError: ``latents`` is not ``[N, D]`` with ``D > 2`` and ``N - 1 > perplexity``,
        or holds NaN/Inf; ``labels`` does not have one entry per point.
    """
    max_points = check_count(max_points, "tsne_map: max_points", minimum=2)
    seed = check_count(seed, "tsne_map: seed", minimum=0)
    perplexity = check_number(perplexity, "tsne_map: perplexity", low=0.0, low_open=True)
    x = np.asarray(check_points(latents, "tsne_map: latents", lists=True, integers=True),
                   np.float64)
    if x.ndim != 2 or x.shape[1] <= 2:
        raise ValueError(f"tsne_map maps latents of more than 2 dimensions [N, D > 2], got "
                         f"shape {x.shape}; plot 2-D latents directly with "
                         "jvae.plotting.save_code_scatter")
    if not len(x) - 1 > perplexity:
        raise ValueError(f"t-SNE needs more points ({len(x)}) than its perplexity "
                         f"({perplexity}) plus one")
    if not np.all(np.isfinite(x)):
        raise ValueError("tsne_map: latents contain NaN or Inf")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(x),):
            raise ValueError(f"tsne_map: labels must have shape ({len(x)},), got {labels.shape}")
    total = len(x)
    if total > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(total, int(max_points), replace=False))
        x = x[keep]
        labels = None if labels is None else labels[keep]
    emb = np.asarray(tsne(x, perplexity=float(perplexity), num_iters=int(num_iters),
                          max_points=len(x)).embedding)
    return TSNEMap(emb, labels, total, float(perplexity))


def tsne_kl_divergence(p, y) -> jax.Array:
    """``KL(P || Q)`` of a map ``y [N, d]`` for joint probabilities ``p [N, N]``, with ``Q``
    the Student-t probabilities of ``y`` (``d - 1`` degrees of freedom, at least 1)."""
    p = jnp.asarray(p, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or y.ndim != 2 or y.shape[0] != p.shape[0]:
        raise ValueError(f"tsne_kl_divergence needs p [N, N] and y [N, d], got {p.shape} and "
                         f"{y.shape}")
    return _kl_and_grad(p, y)[0]


def tsne(x, *, num_components: int = 2, perplexity: float = 30.0, num_iters: int = 1000,
         early_exaggeration: float = 12.0, learning_rate: float | None = None,
         init: str = "pca", key: jax.Array | None = None,
         max_points: int = 2000) -> TSNEResult:
    """Exact t-SNE of ``x`` (van der Maaten & Hinton, 2008), sklearn's exact method in JAX.

    Args:
      x: ``[N, D]`` data (latent means, say), ``N <= max_points``.
      num_components: dimension of the map.
      perplexity: effective number of neighbours, in ``(0, N - 1)``.
      num_iters: gradient-descent iterations in all, the first ``min(250, num_iters)`` with
        early exaggeration and momentum 0.5 (sklearn's ``max_iter``).
      early_exaggeration: factor on ``P`` during the first 250 iterations.
      learning_rate: step size; ``None``: ``max(N / early_exaggeration / 4, 50)``.
      init: ``"pca"`` (the first principal components, scaled to standard deviation 1e-4
        along the first; deterministic, signs fixed as sklearn's ``svd_flip``) or
        ``"random"`` (Gaussian with standard deviation 1e-4, needs ``key``).
      key: a ``jax.random.key`` for ``init="random"``.
      max_points: the largest ``N`` accepted (memory is ``O(N^2)``).

    Returns:
      :class:`TSNEResult` with the ``[N, num_components]`` embedding and the final KL.

    Raises:
      ValueError: bad shapes, non-finite data, too many points, or invalid settings.
    """
    max_points = check_count(max_points, "tsne: max_points")
    num_components = check_count(num_components, "tsne: num_components")
    num_iters = check_count(num_iters, "tsne: num_iters")
    early_exaggeration = check_number(early_exaggeration, "tsne: early_exaggeration", low=1.0)
    if learning_rate is not None:
        learning_rate = check_number(learning_rate, "tsne: learning_rate", low=0.0,
                                     low_open=True)
    x = _check_points(x, perplexity, "tsne")
    n = x.shape[0]
    if n > max_points:
        raise ValueError(f"tsne: {n} points exceed max_points={max_points} (the exact method "
                         f"holds [N, N] matrices); subsample the points or raise max_points.")
    if learning_rate is None:
        learning_rate = max(n / early_exaggeration / 4.0, 50.0)
    if init == "pca":
        if num_components > min(x.shape):
            raise ValueError(f"tsne: init='pca' needs num_components <= min(N, D) = "
                             f"{min(x.shape)}, got {num_components}")
        y0 = _pca_init(x, int(num_components))
    elif init == "random":
        if key is None:
            raise ValueError("tsne: init='random' needs key=jax.random.key(seed)")
        y0 = 1e-4 * jax.random.normal(key, (n, int(num_components)), jnp.float32)
    else:
        raise ValueError(f"tsne: unknown init {init!r}; choose 'pca' or 'random'")
    y, kl = _tsne(x, y0, jnp.float32(perplexity), jnp.float32(learning_rate),
                  jnp.float32(early_exaggeration), int(num_iters))
    return TSNEResult(y, kl)


# ------------------------------------------------------------------------------------ helpers


def _check_points(x, perplexity, fn: str) -> jax.Array:
    """``x`` as float32 ``[N, D]`` points for t-SNE, or a one-line ``ValueError``: an array
    (or nested lists) of real numbers, 2-D with N >= 2, finite, not all at one point, and a
    perplexity in ``(0, N - 1)``. Points spread over more than 2^20 or less than 2^-20 are
    divided by a power of two first (in float64; centred too when far from the origin):
    ``P`` does not depend on the scale, and float32 squared distances would overflow or
    underflow (data scaled by a power of two give the same map, bit for bit)."""
    arr = check_points(x, f"{fn}: x", lists=True, integers=True, min_points=2)
    if isinstance(arr, jax.core.Tracer):
        return arr
    n = arr.shape[0]
    perplexity = check_number(perplexity, f"{fn}: perplexity")
    if not 0 < perplexity < n - 1:
        raise ValueError(f"{fn}: perplexity must lie in (0, N - 1) = (0, {n - 1}), "
                         f"got {perplexity!r}")
    a = np.asarray(arr, np.float64)
    centred = a - a.mean(axis=0)
    spread = float(np.max(np.abs(centred)))
    if spread == 0.0 or np.all(a == a[0]):
        raise ValueError(f"{fn}: x: all {n} points are the same point; t-SNE needs points at "
                         "different positions (their neighbourhoods are undefined)")
    if np.max(np.abs(a)) > 2.0 ** 10 * spread:    # far from the origin: float32 would
        a = centred                               # lose the differences
    if not 2.0 ** -20 <= spread <= 2.0 ** 20:
        a = a / 2.0 ** np.round(np.log2(spread))  # exact: a power of two
    small = a.astype(np.float32)
    if np.all(small == small[0]):
        raise ValueError(f"{fn}: x: all {n} points coincide in float32 (they differ by less "
                         "than float32 resolves at their magnitude); centre the data first")
    return jnp.asarray(small)


def _sq_distances(x: jax.Array) -> jax.Array:
    """``[N, N]`` squared Euclidean distances (centred first, clipped at 0, zero diagonal)."""
    x = x - x.mean(axis=0)
    sq = jnp.sum(x * x, axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return jnp.maximum(d, 0.0) * (1.0 - jnp.eye(x.shape[0], dtype=x.dtype))


@partial(jax.jit, static_argnums=(2, 3))
def _joint_probabilities(x, perplexity, tol: float, max_steps: int):
    n = x.shape[0]
    off = 1.0 - jnp.eye(n, dtype=x.dtype)
    d = _sq_distances(x)
    # The row minimum (off the diagonal) is subtracted: P and the entropy do not change, and
    # exp(-beta d) cannot underflow for every neighbour of a far point.
    d = d - jnp.min(jnp.where(off > 0, d, jnp.inf), axis=1, keepdims=True)
    target = jnp.log(perplexity)

    def conditional(beta):
        w = jnp.exp(-d * beta[:, None]) * off
        total = jnp.maximum(w.sum(axis=1), 1e-8)
        p = w / total[:, None]
        entropy = jnp.log(total) + beta * jnp.sum(d * p, axis=1)
        return p, entropy

    def step(_, carry):
        beta, lo, hi, done = carry
        _, entropy = conditional(beta)
        diff = entropy - target
        done = done | (jnp.abs(diff) <= tol)
        up = diff > 0                                   # too flat: raise the precision
        new_lo = jnp.where(up, beta, lo)
        new_hi = jnp.where(up, hi, beta)
        new_beta = jnp.where(up, jnp.where(jnp.isinf(hi), beta * 2.0, (beta + hi) / 2.0),
                             jnp.where(jnp.isinf(lo), beta / 2.0, (beta + lo) / 2.0))
        keep = lambda old, new: jnp.where(done, old, new)   # noqa: E731
        return keep(beta, new_beta), keep(lo, new_lo), keep(hi, new_hi), done

    ones = jnp.ones((n,), x.dtype)
    init = (ones, jnp.full((n,), -jnp.inf, x.dtype), jnp.full((n,), jnp.inf, x.dtype),
            jnp.zeros((n,), bool))
    beta = jax.lax.fori_loop(0, max_steps, step, init)[0]
    p = conditional(beta)[0]
    p = p + p.T
    p = p / jnp.maximum(p.sum(), _EPS)
    return jnp.maximum(p, _EPS) * off


def _pca_init(x: jax.Array, k: int) -> jax.Array:
    """The first ``k`` principal components of ``x``, scaled to std 1e-4 along the first (in
    NumPy: a few small host ops; op-by-op JAX would compile each)."""
    xc = np.asarray(x, np.float64)
    xc = xc - xc.mean(axis=0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    # sklearn's svd_flip (decision by the rows of Vt): the largest |entry| of each row > 0.
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    y = (u * (s * signs))[:, :k]
    return jnp.asarray(y / np.std(y[:, 0]) * 1e-4, jnp.float32)


def _kl_and_grad(p, y):
    """``KL(P || Q)`` and its gradient in ``y`` (sklearn's ``_kl_divergence``)."""
    n, d = y.shape
    dof = max(d - 1, 1)
    off = 1.0 - jnp.eye(n, dtype=y.dtype)
    num = (1.0 + _sq_distances(y) / dof) ** (-(dof + 1.0) / 2.0) * off
    q = jnp.maximum(num / jnp.sum(num), _EPS)
    kl = jnp.sum(jnp.where(off > 0, p * jnp.log(jnp.maximum(p, _EPS) / q), 0.0))
    w = (p - q) * num * off
    grad = (2.0 * (dof + 1.0) / dof) * (w.sum(axis=1, keepdims=True) * y - w @ y)
    return kl, grad


@partial(jax.jit, static_argnums=(5,))
def _tsne(x, y0, perplexity, learning_rate, exaggeration, num_iters: int):
    """P of ``x``, then ``num_iters`` steps from ``y0``: one compiled program."""
    return _optimise(_joint_probabilities(x, perplexity, 1e-5, 100), y0, learning_rate,
                     exaggeration, num_iters)


def _optimise(p, y0, learning_rate, exaggeration, num_iters: int):
    def body(i, carry):
        y, update, gains = carry
        # sklearn restarts its optimiser (update 0, gains 1) when the exaggeration ends.
        restart = i == _EXAGGERATION_ITERS
        update = jnp.where(restart, 0.0, update)
        gains = jnp.where(restart, 1.0, gains)
        early = i < _EXAGGERATION_ITERS
        _, grad = _kl_and_grad(p * jnp.where(early, exaggeration, 1.0), y)
        momentum = jnp.where(early, 0.5, 0.8)
        inc = update * grad < 0.0
        gains = jnp.maximum(jnp.where(inc, gains + 0.2, gains * 0.8), 0.01)
        update = momentum * update - learning_rate * gains * grad
        return y + update, update, gains

    init = (y0, jnp.zeros_like(y0), jnp.ones_like(y0))
    y = jax.lax.fori_loop(0, num_iters, body, init)[0]
    return y, _kl_and_grad(p, y)[0]
