"""EM for Gaussian mixtures (jvae.classic.gmm): scikit-learn, monotonicity, the M-step's
stationarity, the covariance floor and bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal as mvn

from jvae.classic import (GMM, GMMFit, fit_gmm, gmm_log_prob, gmm_m_step,
                          gmm_responsibilities)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def x():
    """600 points from three overlapping 3-D Gaussians (float32)."""
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [2.5, 0.5, -1.0], [-1.0, 3.0, 1.0]])
    covs = [np.eye(3), np.diag([1.0, 0.6, 1.4]), np.array([[1.0, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])]
    return np.concatenate([rng.multivariate_normal(m, c, size=s)
                           for m, c, s in zip(means, covs, [300, 200, 100])]).astype(np.float32)


def _sklearn_from(init, x, tol, max_iter):
    mixture = pytest.importorskip("sklearn.mixture")
    w, m, c = (np.asarray(a, np.float64) for a in init)
    gm = mixture.GaussianMixture(
        len(w), covariance_type="full", weights_init=w / w.sum(), means_init=m,
        precisions_init=np.linalg.inv(c), reg_covar=1e-6, tol=tol, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # ConvergenceWarning when tol=0
        return gm.fit(np.asarray(x, np.float64))


def _assert_same_fit(fit, gm, x, atol_ll, atol_params):
    n = int(fit.n_iter)
    assert n == gm.n_iter_ and bool(fit.converged) == gm.converged_
    # Mean log-likelihood of the final parameters, and the E-step's log-likelihood of every
    # iteration (sklearn's lower_bounds_ = ours before each M-step).
    assert abs(float(fit.log_likelihoods[n]) - gm.score(np.asarray(x, np.float64))) < atol_ll
    np.testing.assert_allclose(fit.log_likelihoods[:n], gm.lower_bounds_, rtol=0, atol=atol_ll)
    assert np.all(np.isnan(np.asarray(fit.log_likelihoods[n + 1:])))
    np.testing.assert_allclose(fit.gmm.weights, gm.weights_, atol=atol_params)
    np.testing.assert_allclose(fit.gmm.means, gm.means_, atol=atol_params)
    np.testing.assert_allclose(fit.gmm.covariances, gm.covariances_, atol=atol_params)


def test_em_matches_sklearn_float32(x):
    init = fit_gmm(jax.random.PRNGKey(0), x, 3, max_iter=0).gmm        # k-means++ start
    # Converging run (float32 and float64 stop at the same iteration with tol 1e-3) ...
    fit = fit_gmm(None, x, 3, init=init, tol=1e-3)
    assert isinstance(fit, GMMFit) and bool(fit.converged) and int(fit.n_iter) > 3
    _assert_same_fit(fit, _sklearn_from(init, x, 1e-3, 100), x, 1e-4, 1e-4)
    # ... and a fixed number of iterations (tol=0), far past convergence.
    fit = fit_gmm(None, x, 3, init=init, tol=0.0, max_iter=100)
    assert not bool(fit.converged) and int(fit.n_iter) == 100
    _assert_same_fit(fit, _sklearn_from(init, x, 0.0, 100), x, 1e-4, 1e-4)


def test_em_matches_sklearn_float64(x):
    """In float64 the iterates are sklearn's to rounding, stopping rule included."""
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        init = fit_gmm(jax.random.PRNGKey(0), x64, 3, init="random", max_iter=0).gmm
        fit = fit_gmm(None, x64, 3, init=init)                      # tol 1e-6, max_iter 100
        assert fit.gmm.means.dtype == jnp.float64 and int(fit.n_iter) > 10
        _assert_same_fit(fit, _sklearn_from(init, x, 1e-6, 100), x, 1e-10, 1e-9)


def test_log_likelihood_never_decreases(x):
    with jax.enable_x64(True):
        fit = fit_gmm(jax.random.PRNGKey(1), jnp.asarray(x, jnp.float64), 3, init="random",
                      tol=0.0, max_iter=100)
        ll = np.asarray(fit.log_likelihoods)
        assert np.all(np.isfinite(ll)) and ll[-1] - ll[0] > 0.1
        assert np.all(np.diff(ll) >= -1e-12)
    fit = fit_gmm(jax.random.PRNGKey(1), x, 3, tol=0.0)
    assert np.all(np.diff(np.asarray(fit.log_likelihoods)) >= -1e-5)


def test_m_step_is_a_stationary_point_of_the_expected_complete_log_likelihood(x):
    """grad Phi = 0 at the closed form: logits of pi (softmax), mu and Sigma; and the
    Lagrangian condition dPhi/dpi_c = n for pi on the simplex (float64, reg_covar = 0)."""
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        n = x64.shape[0]
        resp = jax.random.dirichlet(jax.random.PRNGKey(2), jnp.ones(3), (n,))
        new = gmm_m_step(x64, resp, reg_covar=0.0)

        def phi_w(w, means, covs):
            log_n = jax.vmap(lambda m, c: mvn.logpdf(x64, m, c), out_axes=1)(means, covs)
            return jnp.sum(resp * (jnp.log(w) + log_n))

        def phi(logits, means, covs):
            return phi_w(jax.nn.softmax(logits), means, covs)

        logits = jnp.log(new.weights)
        moved = (logits + jnp.array([0.1, 0.0, -0.1]), new.means + 0.05, new.covariances * 1.1)

        @jax.jit
        def check(logits, means, covs, moved):
            return (jax.grad(phi, argnums=(0, 1, 2))(logits, means, covs),
                    jax.grad(phi_w)(jax.nn.softmax(logits), means, covs),
                    jax.grad(phi, argnums=1)(*moved), phi(logits, means, covs), phi(*moved))

        grads, g_w, g_moved, phi_star, phi_moved = check(logits, new.means, new.covariances,
                                                          moved)
        for g in grads:
            assert float(jnp.max(jnp.abs(g))) < 1e-8 * n, g
        np.testing.assert_allclose(g_w, n, rtol=1e-10)              # = lambda, the multiplier
        # The test has power: a perturbed point is not stationary, and has lower Phi.
        assert float(jnp.max(jnp.abs(g_moved))) > 1.0
        assert phi_star > phi_moved


def test_e_step_is_bayes_rule(x):
    gmm = fit_gmm(jax.random.PRNGKey(3), x, 3, max_iter=0).gmm       # k-means++ start
    w, m, c = (np.asarray(a, np.float64) for a in gmm)
    from scipy.stats import multivariate_normal

    joint = np.stack([w[k] * multivariate_normal(m[k], c[k]).pdf(x) for k in range(3)], 1)
    np.testing.assert_allclose(gmm_log_prob(gmm, x), np.log(joint.sum(1)), rtol=1e-5)
    resp = gmm_responsibilities(gmm, x)
    np.testing.assert_allclose(resp, joint / joint.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(jnp.sum(resp, 1), 1.0, atol=1e-6)


def test_collapsing_component_is_floored_not_nan():
    """Ten copies of one point: the component on them collapses to reg_covar * I."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(size=(200, 2)),
                        np.full((10, 2), 10.0)]).astype(np.float32)
    init = GMM(weights=jnp.array([0.2, 0.4, 0.4]),
               means=jnp.array([[10.0, 10.0], [-1.0, 0.0], [1.0, 0.0]]),
               covariances=jnp.tile(jnp.eye(2) * 0.5, (3, 1, 1)))
    fit = fit_gmm(None, x, 3, init=init, reg_covar=1e-3, max_iter=20)
    assert np.all(np.isfinite(np.asarray(fit.log_likelihoods[: int(fit.n_iter) + 1])))
    np.testing.assert_allclose(fit.gmm.covariances[0], 1e-3 * np.eye(2), atol=1e-7)
    np.testing.assert_allclose(fit.gmm.weights[0], 10 / 210, rtol=1e-4)
    # k-means++ on the same data (a centre on the copies is likely): still finite.
    for seed in range(3):
        fit = fit_gmm(jax.random.PRNGKey(seed), x, 3, max_iter=20)
        assert np.all(np.isfinite(np.asarray(fit.log_likelihoods[: int(fit.n_iter) + 1])))
    # Without a floor the covariance is singular: a clear error, not NaN parameters.
    with pytest.raises(ValueError, match="singular.*reg_covar") as info:
        fit_gmm(None, x, 3, init=init, reg_covar=0.0, max_iter=20)
    assert "\n" not in str(info.value)


def test_explicit_keys_jit_and_vmap(x):
    a = fit_gmm(jax.random.PRNGKey(5), x, 3)
    b = fit_gmm(jax.random.PRNGKey(5), x, 3)
    c = fit_gmm(jax.random.PRNGKey(6), x, 3)
    np.testing.assert_array_equal(a.gmm.means, b.gmm.means)
    assert not np.allclose(a.log_likelihoods[0], c.log_likelihoods[0])
    keys = jax.random.split(jax.random.PRNGKey(7), 4)
    many = jax.vmap(lambda k: fit_gmm(k, x, 3, max_iter=10))(keys)
    assert many.log_likelihoods.shape == (4, 11) and many.gmm.means.shape == (4, 3, 3)
    assert many.n_iter.shape == (4,) and many.converged.shape == (4,)
    one = fit_gmm(keys[2], x, 3, tol=0.0)
    np.testing.assert_allclose(many.log_likelihoods[2], one.log_likelihoods[:11], rtol=1e-5)
    # Under jit, also with the data closed over (a concrete array inside a trace).
    gmm = one.gmm
    np.testing.assert_allclose(jax.jit(lambda: gmm_log_prob(gmm, x))(), gmm_log_prob(gmm, x),
                               rtol=1e-6)
    m_step = jax.jit(lambda r: gmm_m_step(x, r))(gmm_responsibilities(gmm, x))
    np.testing.assert_allclose(m_step.means, gmm_m_step(x, gmm_responsibilities(gmm, x)).means,
                               rtol=1e-5)


_GOOD = GMM(jnp.array([0.5, 0.5]), jnp.zeros((2, 2)), jnp.tile(jnp.eye(2), (2, 1, 1)))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_components": 300}, "more than the number of examples"),
    ({"num_components": 0}, "positive integer"),
    ({"x": np.zeros(20, np.float32)}, "2-D array"),
    ({"x": np.full((20, 2), np.nan, np.float32)}, "NaN"),
    ({"init": "kmeans"}, "init must be one of"),
    ({"init": (1, 2, 3)}, "init must be one of"),
    ({"init": GMM(jnp.ones(3) / 3, jnp.zeros((3, 2)), jnp.tile(jnp.eye(2), (3, 1, 1)))},
     "init GMM has shapes"),
    ({"init": _GOOD._replace(weights=jnp.array([0.7, 0.7]))}, "sum to 1"),
    ({"init": _GOOD._replace(covariances=jnp.array([np.eye(2), -np.eye(2)]))},
     "not positive definite"),
    ({"init": _GOOD._replace(covariances=jnp.array([np.eye(2), [[1.0, 2.0], [0.0, 1.0]]]))},
     "symmetric"),
    ({"reg_covar": -1.0}, "reg_covar"),
    ({"tol": -1.0}, "tol"),
    ({"max_iter": -1}, "max_iter"),
    ({"key": None}, "needs a jax.random key"),
])
def test_fit_gmm_bad_input(kwargs, match):
    args = {"x": np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32),
            "num_components": 2}
    args.update(kwargs)
    key = args.pop("key", jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=match) as info:
        fit_gmm(key, args.pop("x"), args.pop("num_components"), **args)
    assert "\n" not in str(info.value)


def test_pure_functions_bad_input():
    with pytest.raises(ValueError, match="D=2"):
        gmm_log_prob(_GOOD, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        gmm_responsibilities(_GOOD, np.full((4, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="resp"):
        gmm_m_step(np.zeros((4, 2), np.float32), np.ones((5, 2), np.float32))
