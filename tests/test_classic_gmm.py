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
        fit = fit_gmm(None, x64, 3, init=init, tol=1e-6)            # max_iter 100
        assert float(fit.tol) == 1e-6             # float64 resolves 1e-6: not raised
        assert fit.gmm.means.dtype == jnp.float64 and int(fit.n_iter) > 10
        _assert_same_fit(fit, _sklearn_from(init, x, 1e-6, 100), x, 1e-10, 1e-9)


def _mixture_data(d, n, c, seed, spread):
    """``n`` float32 points from ``c`` random diagonal Gaussians in ``d`` dimensions."""
    rng = np.random.default_rng(seed)
    means = spread * rng.normal(size=(c, d))
    return np.concatenate([rng.normal(m, rng.uniform(0.5, 1.2, d), size=(n // c, d))
                           for m in means]).astype(np.float32)


@pytest.mark.parametrize("d, seed", [(3, 1), (5, 0), (10, 2)])
def test_float32_em_stops_where_sklearn_float64_does(d, seed):
    """Default settings (tol 1e-3, far above float32's resolution of the objective) from a
    shared start: the same iteration count as scikit-learn in float64, or a final mean
    log-likelihood within 1e-5; and a tolerance below float32's resolution is raised to it,
    so the fit stops with the one scikit-learn stops at with that tolerance."""
    x = _mixture_data(d, 800, 4, seed, 2.0)
    init = fit_gmm(jax.random.PRNGKey(seed), x, 4, max_iter=0).gmm
    fit = fit_gmm(None, x, 4, init=init, max_iter=300)
    gm = _sklearn_from(init, x, 1e-3, 300)
    final = float(fit.log_likelihoods[int(fit.n_iter)])
    assert bool(fit.converged) and float(fit.tol) == pytest.approx(1e-3)
    assert int(fit.n_iter) == gm.n_iter_ or abs(final - gm.score(x.astype(np.float64))) < 1e-5
    fine = fit_gmm(None, x, 4, init=init, tol=1e-7, max_iter=300)
    scale = float(np.mean(np.abs(np.asarray(gmm_log_prob(init, x)))))
    assert float(fine.tol) == pytest.approx(16 * np.finfo(np.float32).eps * scale, rel=1e-3)
    gm = _sklearn_from(init, x, float(fine.tol), 300)
    final = float(fine.log_likelihoods[int(fine.n_iter)])
    assert abs(int(fine.n_iter) - gm.n_iter_) <= 1
    assert abs(final - gm.score(x.astype(np.float64))) < 3 * float(fine.tol)


def test_restarts_reach_sklearn_s_best_where_one_start_falls_short():
    """Six clusters of random sizes in 5-D: about half the k-means++ starts end in a poorer
    optimum (0.1 nats per example or more below); the best of ``n_init = 8`` restarts (one
    vmapped program) is within 1e-3 of scikit-learn's best with the same ``n_init`` and
    k-means++ starts (float64), and each restart is the fit from its own split key."""
    mixture = pytest.importorskip("sklearn.mixture")
    rng = np.random.default_rng(0)
    means = 3.0 * rng.normal(size=(6, 5))
    sizes = rng.multinomial(600, rng.dirichlet(np.full(6, 3.0)))
    x = np.concatenate([rng.normal(m, rng.uniform(0.5, 1.2, 5), size=(k, 5))
                        for m, k in zip(means, sizes)]).astype(np.float32)
    best = fit_gmm(jax.random.PRNGKey(0), x, 6, n_init=8, tol=1e-6, max_iter=300)
    assert best.restarts.shape == (8,) and best.gmm.means.shape == (6, 5)
    final = float(best.log_likelihoods[int(best.n_iter)])
    assert final == float(np.max(best.restarts))
    assert float(np.min(best.restarts)) < final - 1e-3          # one start is not enough
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = mixture.GaussianMixture(6, init_params="k-means++", n_init=8, random_state=0,
                                     tol=1e-6, max_iter=300).fit(x.astype(np.float64))
    assert final > gm.score(x.astype(np.float64)) - 1e-3
    one = fit_gmm(jax.random.split(jax.random.PRNGKey(0), 8)[5], x, 6, tol=1e-6, max_iter=300)
    np.testing.assert_allclose(one.restarts[0], best.restarts[5], rtol=1e-5)


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
    ({"n_init": 0}, "n_init must be a positive integer"),
    ({"n_init": 2, "init": _GOOD}, "restarts need a random init"),
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
