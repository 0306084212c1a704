"""Gaussian mixtures with full covariances, fitted by EM (Dempster, Laird & Rubin, 1977).

The model ``p(x) = sum_c pi_c N(x | mu_c, Sigma_c)``. One EM iteration (the homework's
Problem 3; Bishop 2006, sec. 9.2.2):

- E-step (:func:`gmm_responsibilities`): ``xi_ic = pi_c N(x_i | mu_c, Sigma_c) / p(x_i)``,
  the posterior over the component of each example;
- M-step (:func:`gmm_m_step`): the maximiser of the expected complete-data log-likelihood
  ``Phi = sum_i sum_c xi_ic log(pi_c N(x_i | mu_c, Sigma_c))``, in closed form:
  ``N_c = sum_i xi_ic``, ``pi_c = N_c / N``, ``mu_c = sum_i xi_ic x_i / N_c``,
  ``Sigma_c = sum_i xi_ic (x_i - mu_c)(x_i - mu_c)^T / N_c``.

Each iteration cannot decrease the log-likelihood. :func:`fit_gmm` runs the iterations as one
compiled ``lax.while_loop`` with a tolerance and a cap, from k-means++ centres, random
responsibilities or given parameters, and keeps the best of ``n_init`` restarts (vmapped in
the same program). The tolerance is never below the floating-point resolution of the
objective (:data:`TOL_ULPS` ``* eps * mean |log p(x_i)|``: in float32 a change of the
mean log-likelihood below that is rounding, not progress). Like ``sklearn.mixture.GaussianMixture`` (whose
iterations it reproduces), the M-step adds ``reg_covar`` to every covariance's diagonal and
``10 * eps`` to every ``N_c``, so a component that collapses onto one point or loses all its
examples keeps a positive-definite covariance instead of producing NaN.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jvae.classic.pca import _check_count, _check_values, _check_x
from jvae.data.arguments import check_number

__all__ = ["GMM", "GMMFit", "gmm_log_prob", "gmm_responsibilities", "gmm_m_step", "fit_gmm"]

INITS = ("kmeans++", "random")
#: The convergence tolerance is at least ``TOL_ULPS * eps * mean_i |log p(x_i)|`` (``eps`` of
#: the data's dtype) at the initial parameters: in float32 the computed change of the mean
#: log-likelihood between two EM iterations is off by up to ~3.5 of those units.
TOL_ULPS = 16.0


class GMM(NamedTuple):
    """Parameters of a Gaussian mixture with full covariances (a pytree).

    Attributes:
      weights: ``[C]`` mixing proportions (positive, summing to one).
      means: ``[C, D]`` component means.
      covariances: ``[C, D, D]`` symmetric positive-definite component covariances.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array


class GMMFit(NamedTuple):
    """The result of :func:`fit_gmm`.

    Attributes:
      gmm: the final :class:`GMM` (after ``n_iter`` M-steps).
      log_likelihoods: ``[max_iter + 1]`` mean log-likelihood per example: entry ``i`` is that
        of the parameters after ``i`` EM iterations (entry 0: the initial parameters), up to
        entry ``n_iter`` (the final parameters); the rest are NaN.
      n_iter: number of EM iterations run (int32 scalar).
      converged: whether the E-step's log-likelihood changed by less than ``tol`` between
        two consecutive iterations before ``max_iter`` was reached (bool scalar).
      tol: the tolerance used: ``max(tol, TOL_ULPS * eps * mean |log p(x_i)|)`` at the
        initial parameters (scalar; ``tol`` itself in float64 unless the data's scale is huge).
      restarts: ``[n_init]`` final mean log-likelihood of every restart (this fit is the
        largest's).
    """

    gmm: GMM
    log_likelihoods: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    tol: jax.Array | None = None
    restarts: jax.Array | None = None


def gmm_log_prob(gmm: GMM, x: jax.Array) -> jax.Array:
    """``log p(x) = logsumexp_c [log pi_c + log N(x | mu_c, Sigma_c)]`` per example.

    Args:
      gmm: the parameters.
      x: ``[N, D]``, finite.

    Returns:
      ``[N]``. NaN only if a covariance is not positive definite.
    """
    x = _check_points(x, gmm)
    return _e_step(gmm, jnp.asarray(x, gmm.means.dtype))[0]


def gmm_responsibilities(gmm: GMM, x: jax.Array) -> jax.Array:
    """The E-step: ``xi_ic = p(component c | x_i)`` by Bayes' rule.

    Args:
      gmm: the parameters.
      x: ``[N, D]``, finite.

    Returns:
      ``[N, C]``, each row summing to one.
    """
    x = _check_points(x, gmm)
    return _e_step(gmm, jnp.asarray(x, gmm.means.dtype))[1]


def gmm_m_step(x: jax.Array, resp: jax.Array, reg_covar: float = 1e-6) -> GMM:
    """The M-step: closed-form maximiser of the expected complete-data log-likelihood.

    ``N_c = sum_i resp_ic + 10 eps``, ``pi_c = N_c / sum_c N_c``, ``mu_c = sum_i resp_ic x_i /
    N_c``, ``Sigma_c = sum_i resp_ic (x_i - mu_c)(x_i - mu_c)^T / N_c + reg_covar I`` (with
    ``eps`` the machine epsilon of the dtype; ``reg_covar = 0`` gives the exact stationary
    point of the homework's Problem 3 up to that ``10 eps``). Memory ``O(N D)`` per component
    (a ``lax.map`` over components).

    Args:
      x: ``[N, D]``, finite.
      resp: ``[N, C]`` responsibilities (non-negative; rows need not be normalised, e.g.
        one-hot assignments).
      reg_covar: non-negative value added to every covariance's diagonal.

    Returns:
      The new :class:`GMM`.
    """
    if not isinstance(x, jax.core.Tracer):
        x = _check_x(x)
    if not isinstance(resp, jax.core.Tracer):
        shape = getattr(resp, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != x.shape[0]:
            raise ValueError(f"resp: expected [N={x.shape[0]}, C], got "
                             f"{None if shape is None else tuple(shape)}.")
        _check_values(resp, name="resp", data_shape=(shape[1],))
    _check_reg(reg_covar)
    x = jnp.asarray(x)
    return _m_step(x, jnp.asarray(resp, x.dtype), jnp.asarray(reg_covar, x.dtype))


def fit_gmm(key: jax.Array, x: jax.Array, num_components: int, *,
            init: str | GMM = "kmeans++", max_iter: int = 100, tol: float = 1e-3,
            reg_covar: float = 1e-6, n_init: int = 1) -> GMMFit:
    """Fits a full-covariance Gaussian mixture by EM, as one compiled ``lax.while_loop``.

    Iteration ``i`` runs the E-step on the current parameters (which gives their mean
    log-likelihood ``L``) and then the M-step; it stops after an iteration whose ``L``
    changed by less than the tolerance from the previous one, or after ``max_iter``
    iterations. This is ``sklearn.mixture.GaussianMixture``'s loop: from the same initial
    parameters, with the same ``max_iter`` and ``reg_covar`` and its ``tol`` set to the
    returned ``fit.tol``, both return the same iterates (float64) or stop at the same
    iteration (float32). The tolerance is ``max(tol, TOL_ULPS * eps * mean |log p(x_i)|)``
    at the initial parameters, so a float32 fit never stops on a change that is only
    rounding (``tol = 0`` still runs ``max_iter`` iterations). With ``n_init > 1``, EM runs
    from ``n_init`` initialisations drawn from independent keys (``jax.random.split(key,
    n_init)``), vmapped in the same compiled program, and the fit whose final
    log-likelihood is largest is returned (scikit-learn's ``n_init``).

    Jittable and vmappable over keys (``num_components``, ``init`` when a string, and
    ``max_iter`` are static); the input checks and the singular-covariance error run on
    concrete arrays only (traced, a failed fit returns NaN log-likelihoods).

    Args:
      key: ``jax.random`` key for the initialisation (unused with a :class:`GMM` init).
      x: ``[N, D]`` finite floating-point data.
      num_components: C, at most N.
      init: ``"kmeans++"`` (centres by k-means++ seeding, Arthur & Vassilvitskii 2007, each
        example assigned to its nearest centre, then one M-step), ``"random"`` (uniformly
        random responsibilities normalised per example, then one M-step) or a :class:`GMM`
        with C components to start from.
      max_iter: maximum number of EM iterations (>= 0; 0 returns the initial parameters).
      tol: convergence threshold on the change of the mean log-likelihood in nats per
        example (>= 0; scikit-learn's default 1e-3), raised to the objective's floating-point
        resolution (see above; ``fit.tol`` is the one used).
      reg_covar: non-negative value added to the covariances' diagonals (the covariance
        floor).
      n_init: number of restarts (>= 1; more than 1 needs a random ``init``); ``1`` uses
        ``key`` itself.

    Returns:
      A :class:`GMMFit`.

    Raises:
      ValueError: ``x`` is not a finite 2-D float array, C is not a positive integer or
        exceeds N, a setting is out of range, ``init`` is invalid, or a covariance becomes
        singular despite ``reg_covar`` (increase it, or standardise ``x``).
    """
    x = _check_x(x)
    c = _check_count(num_components, "num_components")
    n, d = x.shape
    if c > n:
        raise ValueError(f"num_components={c} is more than the number of examples N={n}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) \
            or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}.")
    if not isinstance(tol, jax.core.Tracer):
        check_number(tol, "tol", low=0.0)
    _check_reg(reg_covar)
    x = jnp.asarray(x)
    if isinstance(init, GMM):
        init_gmm, kind = _check_init(init, c, d, x.dtype), "given"
    elif isinstance(init, str) and init in INITS:
        init_gmm, kind = None, init
    else:
        raise ValueError(f"init must be one of {list(INITS)} or a GMM, got {init!r}.")
    if kind != "given" and key is None:
        raise ValueError(f"init={init!r} needs a jax.random key (got None).")
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}.")
    if n_init > 1 and kind == "given":
        raise ValueError(f"n_init={n_init} restarts need a random init ('kmeans++' or "
                         "'random'); a given GMM would give the same fit every time.")
    fit = _fit_restarts(key, x, init_gmm, jnp.asarray(tol, x.dtype),
                        jnp.asarray(reg_covar, x.dtype), c, kind, int(max_iter), int(n_init))
    if not isinstance(fit.log_likelihoods, jax.core.Tracer):
        lls = np.asarray(fit.log_likelihoods)[: int(fit.n_iter) + 1]
        if not np.all(np.isfinite(lls)):
            bad = int(np.argmin(np.isfinite(lls)))
            what = "the initial parameters" if bad == 0 else f"EM iteration {bad}"
            raise ValueError(
                f"A covariance became singular ({what} gave a non-finite log-likelihood) "
                f"despite reg_covar={float(reg_covar):g}: increase reg_covar, standardise x "
                f"(scale {float(jnp.max(jnp.abs(x))):.3g}) or use fewer components.")
    return fit


# ----------------------------------------------------------------------------- helpers

def _component_log_probs(gmm: GMM, x: jax.Array) -> jax.Array:
    """``[N, C]`` ``log pi_c + log N(x_i | mu_c, Sigma_c)`` via Cholesky factors."""
    d = x.shape[-1]

    def one(args):
        mean, cov = args
        chol = jnp.linalg.cholesky(cov)
        y = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)   # [D, N]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        return -0.5 * (jnp.sum(y**2, 0) + logdet + d * math.log(2.0 * math.pi))

    comp = jax.lax.map(one, (gmm.means, gmm.covariances))                      # [C, N]
    return comp.T + jnp.log(gmm.weights)


@jax.jit
def _e_step(gmm: GMM, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log p(x) [N], responsibilities [N, C])``."""
    joint = _component_log_probs(gmm, x)
    log_px = jax.scipy.special.logsumexp(joint, axis=1)
    return log_px, jnp.exp(joint - log_px[:, None])


@jax.jit
def _m_step(x: jax.Array, resp: jax.Array, reg_covar: jax.Array) -> GMM:
    nk = jnp.sum(resp, axis=0) + 10.0 * jnp.finfo(resp.dtype).eps                # [C]
    means = (resp.T @ x) / nk[:, None]
    eye = jnp.eye(x.shape[1], dtype=x.dtype)

    def cov(args):
        r, mean, n = args
        diff = x - mean
        return (r[:, None] * diff).T @ diff / n + reg_covar * eye

    covariances = jax.lax.map(cov, (resp.T, means, nk))
    return GMM(weights=nk / jnp.sum(nk), means=means, covariances=covariances)


def _kmeans_plusplus(key: jax.Array, x: jax.Array, c: int) -> jax.Array:
    """``[C, D]`` centres: the first uniformly, each next with probability ~ D(x)^2."""
    n = x.shape[0]
    k0, key = jax.random.split(key)
    first = x[jax.random.randint(k0, (), 0, n)]
    centres = jnp.zeros((c, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=1)

    def body(j, carry):
        centres, d2 = carry
        logits = jnp.where(jnp.sum(d2) > 0, jnp.log(d2), 0.0)    # all duplicates: uniform
        new = x[jax.random.categorical(jax.random.fold_in(key, j), logits)]
        return centres.at[j].set(new), jnp.minimum(d2, jnp.sum((x - new) ** 2, axis=1))

    return jax.lax.fori_loop(1, c, body, (centres, d2))[0]


def _initial_gmm(key, x, reg_covar, c: int, kind: str) -> GMM:
    if kind == "kmeans++":
        centres = _kmeans_plusplus(key, x, c)
        d2 = (jnp.sum(x**2, 1)[:, None] - 2.0 * x @ centres.T
              + jnp.sum(centres**2, 1)[None, :])
        resp = jax.nn.one_hot(jnp.argmin(d2, axis=1), c, dtype=x.dtype)
    else:
        resp = jax.random.uniform(key, (x.shape[0], c), x.dtype)
        resp = resp / jnp.sum(resp, axis=1, keepdims=True)
    return _m_step(x, resp, reg_covar)


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8))
def _fit_restarts(key, x, init_gmm, tol, reg_covar, c: int, kind: str, max_iter: int,
                  n_init: int) -> GMMFit:
    """EM from ``n_init`` starts (vmapped over split keys), the best final fit kept."""
    if n_init == 1:
        fit = _fit(key, x, init_gmm, tol, reg_covar, c, kind, max_iter)
        return fit._replace(restarts=fit.log_likelihoods[fit.n_iter][None])
    fits = jax.vmap(lambda k: _fit(k, x, init_gmm, tol, reg_covar, c, kind, max_iter))(
        jax.random.split(key, n_init))
    final = jnp.take_along_axis(fits.log_likelihoods, fits.n_iter[:, None], axis=1)[:, 0]
    best = jnp.argmax(jnp.where(jnp.isnan(final), -jnp.inf, final))
    return jax.tree.map(lambda a: a[best], fits)._replace(restarts=final)


def _fit(key, x, init_gmm, tol, reg_covar, c: int, kind: str, max_iter: int) -> GMMFit:
    gmm = init_gmm if kind == "given" else _initial_gmm(key, x, reg_covar, c, kind)
    lls = jnp.full((max_iter + 1,), jnp.nan, x.dtype)
    inf = jnp.asarray(-jnp.inf, x.dtype)
    # The change of the mean log-likelihood is resolved to ~eps * mean |log p(x_i)|.
    floor = TOL_ULPS * jnp.finfo(x.dtype).eps * jnp.mean(jnp.abs(_e_step(gmm, x)[0]))
    tol = jnp.where(tol > 0, jnp.maximum(tol, floor), tol)

    def cond(carry):
        _, prev, i, _, converged = carry
        return (i < max_iter) & ~converged & ~jnp.isnan(prev)

    def body(carry):
        gmm, prev, i, lls, _ = carry
        log_px, resp = _e_step(gmm, x)
        ll = jnp.mean(log_px)
        converged = jnp.abs(ll - prev) < tol          # False in the first iteration (prev -inf)
        return _m_step(x, resp, reg_covar), ll, i + 1, lls.at[i].set(ll), converged

    carry = (gmm, inf, jnp.asarray(0, jnp.int32), lls, jnp.asarray(False))
    gmm, _, n_iter, lls, converged = jax.lax.while_loop(cond, body, carry)
    lls = lls.at[n_iter].set(jnp.mean(_e_step(gmm, x)[0]))
    return GMMFit(gmm=gmm, log_likelihoods=lls, n_iter=n_iter, converged=converged, tol=tol)


def _check_reg(reg_covar: Any) -> None:
    if isinstance(reg_covar, jax.core.Tracer):
        return
    check_number(reg_covar, "reg_covar", low=0.0)


def _check_points(x: Any, gmm: GMM) -> Any:
    if isinstance(x, jax.core.Tracer):
        return x
    d = gmm.means.shape[-1]
    x = _check_x(x)
    if x.shape[1] != d:
        raise ValueError(f"x: expected [N, D={d}] (the mixture's dimension), got "
                         f"{tuple(x.shape)}.")
    return x


def _check_init(init: GMM, c: int, d: int, dtype) -> GMM:
    """Shapes [C], [C, D], [C, D, D]; weights on the simplex; covariances SPD (if concrete)."""
    w, m, s = (jnp.asarray(a, dtype) for a in init)
    if w.shape != (c,) or m.shape != (c, d) or s.shape != (c, d, d):
        raise ValueError(
            f"init GMM has shapes weights {tuple(w.shape)}, means {tuple(m.shape)}, "
            f"covariances {tuple(s.shape)}; expected ({c},), ({c}, {d}), ({c}, {d}, {d}).")
    if not any(isinstance(a, jax.core.Tracer) for a in (w, m, s)):
        wn, mn, sn = (np.asarray(a, np.float64) for a in (w, m, s))
        if not (np.all(np.isfinite(wn)) and np.all(wn > 0) and abs(wn.sum() - 1) < 1e-4):
            raise ValueError(f"init GMM weights must be positive and sum to 1, got {wn}.")
        if not np.all(np.isfinite(mn)):
            raise ValueError("init GMM means contain NaN or Inf.")
        if not (np.all(np.isfinite(sn)) and np.allclose(sn, np.swapaxes(sn, 1, 2),
                                                         rtol=1e-5, atol=1e-8)):
            raise ValueError("init GMM covariances must be finite and symmetric.")
        eig_min = np.linalg.eigvalsh(sn).min(axis=1)
        if not np.all(eig_min > 0):
            raise ValueError(f"init GMM covariance {int(np.argmin(eig_min))} is not positive "
                             f"definite (smallest eigenvalue {eig_min.min():.3g}).")
    return GMM(w, m, s)
