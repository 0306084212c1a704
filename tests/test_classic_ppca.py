"""Probabilistic PCA (jvae.classic.ppca): scikit-learn, Bayes' rule, ML stationarity, the VAE."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.scipy.special import logsumexp

import jvae
from jvae.classic import (PPCA, fit_ppca, ppca_log_likelihood, ppca_marginal, ppca_posterior,
                          ppca_sample, ppca_to_vae)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _planted(n=2000, d=10, k=3, sigma=0.3, seed=0):
    """Data from a PPCA with non-orthogonal W (float32)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, k)) * np.linspace(2.0, 1.0, k)
    mu = rng.normal(size=d)
    x = rng.normal(size=(n, k)) @ W.T + mu + sigma * rng.normal(size=(n, d))
    return x.astype(np.float32), W, mu, sigma**2


def _correlated_ppca(d=5, k=2, sigma2=0.25, seed=1):
    """A PPCA whose W has non-orthogonal columns, so p(z|x) is correlated."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, k)) + 0.8 * rng.normal(size=(d, 1))    # shared direction
    return PPCA(W=jnp.asarray(W, jnp.float32), mu=jnp.asarray(rng.normal(size=d), jnp.float32),
                sigma2=jnp.asarray(sigma2, jnp.float32))


def _rel_err(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref) / np.abs(ref)))


def test_log_likelihood_matches_sklearn_score_samples():
    decomposition = pytest.importorskip("sklearn.decomposition")
    x, *_ = _planted()
    ref = decomposition.PCA(n_components=3, svd_solver="full").fit(x.astype(np.float64))
    ppca = fit_ppca(x, 3, ddof=1)                 # sklearn's covariance divides by N - 1
    np.testing.assert_allclose(ppca.sigma2, ref.noise_variance_, rtol=1e-4)
    np.testing.assert_allclose(ppca.W @ ppca.W.T + ppca.sigma2 * np.eye(10),
                               ref.get_covariance(), rtol=1e-4, atol=1e-5)
    expected = ref.score_samples(x.astype(np.float64))
    assert _rel_err(ppca_log_likelihood(ppca, x), expected) < 1e-4
    assert _rel_err(ppca_marginal(ppca).log_prob(x), expected) < 1e-4


def test_log_likelihood_matches_sklearn_mnist(jvae_data_dir):
    decomposition = pytest.importorskip("sklearn.decomposition")
    from jvae.data import load_split

    images = load_split("mnist", "test", data_dir=jvae_data_dir).images[:1000]
    x = np.asarray(images.reshape(len(images), -1))
    ref = decomposition.PCA(n_components=10, svd_solver="full").fit(x.astype(np.float64))
    expected = ref.score_samples(x.astype(np.float64))
    # float32: a few log-densities of MNIST digits lie near 0 (the range is about -50 to
    # 450) and float32 rounding of terms of size D log(sigma2) ~ 2600 is ~1e-3 absolute, so
    # the error is measured against the typical magnitude; per example in float64.
    err = np.abs(np.asarray(ppca_log_likelihood(fit_ppca(x, 10, ddof=1), x)) - expected)
    assert err.max() / np.mean(np.abs(expected)) < 1e-4
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        assert _rel_err(ppca_log_likelihood(fit_ppca(x64, 10, ddof=1), x64), expected) < 1e-4


def test_fit_is_the_maximum_likelihood_stationary_point():
    """With ddof=0 the gradient of sum_i log p(x_i) in (W, mu, log sigma2) vanishes (x64)."""
    x, *_ = _planted(n=500, d=6, k=2)
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        ppca = fit_ppca(x64, 2)
        assert ppca.W.dtype == jnp.float64

        def total(W, mu, log_s2):
            return jnp.sum(ppca_log_likelihood(PPCA(W, mu, jnp.exp(log_s2)), x64))

        grads = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(ppca.W, ppca.mu, jnp.log(ppca.sigma2))
        for g in grads:
            assert float(jnp.max(jnp.abs(g))) < 1e-8 * x.shape[0]
        # The columns are orthogonal (R = I) and any rotation gives the same likelihood.
        gram = np.asarray(ppca.W.T @ ppca.W)
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-10)
        rot = jnp.array([[0.6, -0.8], [0.8, 0.6]])
        np.testing.assert_allclose(
            ppca_log_likelihood(PPCA(ppca.W @ rot, ppca.mu, ppca.sigma2), x64),
            ppca_log_likelihood(ppca, x64), rtol=1e-12)
        # ML beats the unbiased (ddof=1) estimate on the training data.
        assert total(ppca.W, ppca.mu, jnp.log(ppca.sigma2)) > jnp.sum(
            ppca_log_likelihood(fit_ppca(x64, 2, ddof=1), x64))


def test_posterior_is_gaussian_conditioning():
    """p(z|x) against conditioning the joint Gaussian of (z, x), in numpy float64."""
    ppca = _correlated_ppca()
    W, mu, s2 = (np.asarray(a, np.float64) for a in ppca)
    x = np.asarray(ppca_sample(ppca, jax.random.PRNGKey(0), 7)[1])
    cov_x = W @ W.T + s2 * np.eye(5)                  # joint cov [[I, W^T], [W, cov_x]]
    gain = W.T @ np.linalg.inv(cov_x)
    mean_ref = (x - mu) @ gain.T
    cov_ref = np.eye(2) - gain @ W
    q = ppca_posterior(ppca, x)
    assert q.batch_shape == (7,) and q.event_shape == (2,)
    np.testing.assert_allclose(q.mean(), mean_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q.covariance(), np.broadcast_to(cov_ref, (7, 2, 2)),
                               rtol=1e-4, atol=1e-6)
    assert abs(cov_ref[0, 1]) > 0.05 * math.sqrt(cov_ref[0, 0] * cov_ref[1, 1])  # correlated


@pytest.mark.parametrize("k", [1, 2])
def test_posterior_is_bayes_rule_on_a_grid(k):
    """p(x|z) p(z) / p(x) on a grid, with p(x) itself integrated numerically."""
    ppca = _correlated_ppca(k=k)
    W, mu, s2 = (np.asarray(a, np.float64) for a in ppca)
    x = np.asarray(ppca_sample(ppca, jax.random.PRNGKey(1), 3)[1], np.float64)
    q = ppca_posterior(ppca, x)
    m, sd = np.asarray(q.mean()), np.sqrt(np.diagonal(np.asarray(q.covariance()), 0, -2, -1))
    n_pts = 2001 if k == 1 else 241
    for i in range(3):
        axes = [np.linspace(m[i, j] - 7 * sd[i, j], m[i, j] + 7 * sd[i, j], n_pts)
                for j in range(k)]
        z = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, k)
        cell = np.prod([a[1] - a[0] for a in axes])
        log_joint = (-0.5 * np.sum((x[i] - z @ W.T - mu) ** 2, -1) / s2
                     - 2.5 * np.log(2 * np.pi * s2) - 0.5 * np.sum(z**2, -1)
                     - 0.5 * k * np.log(2 * np.pi))
        log_px = float(logsumexp(log_joint)) + math.log(cell)       # numerical evidence
        np.testing.assert_allclose(log_px, ppca_log_likelihood(ppca, x[i:i + 1])[0],
                                   rtol=1e-5, atol=2e-4)       # float32 log-likelihood
        log_post = log_joint - log_px
        got = np.asarray(ppca_posterior(ppca, x[i:i + 1]).log_prob(
            jnp.asarray(z, jnp.float32)[:, None, :]))[:, 0]
        keep = log_post > log_post.max() - 20
        np.testing.assert_allclose(got[keep], log_post[keep], atol=2e-3)
        p = np.exp(log_post) * cell
        np.testing.assert_allclose(p @ z, m[i], atol=1e-4 * sd[i].max() + 1e-5)


def test_sample_moments():
    ppca = _correlated_ppca()
    z, x = ppca_sample(ppca, jax.random.PRNGKey(2), 40000)
    assert z.shape == (40000, 2) and x.shape == (40000, 5)
    W, mu, s2 = (np.asarray(a, np.float64) for a in ppca)
    np.testing.assert_allclose(np.cov(np.asarray(x, np.float64).T), W @ W.T + s2 * np.eye(5),
                               atol=0.06)
    np.testing.assert_allclose(np.mean(np.asarray(x), 0), mu, atol=0.03)
    resid = np.asarray(x) - np.asarray(z) @ W.T - mu
    np.testing.assert_allclose(np.var(resid, 0), s2, rtol=0.03)
    a, b = ppca_sample(ppca, jax.random.PRNGKey(2), 5)
    np.testing.assert_array_equal(a, z[:5] * 0 + a)                 # deterministic per key
    np.testing.assert_array_equal(ppca_sample(ppca, jax.random.PRNGKey(2), 5)[1], b)


def test_ppca_to_vae_exact_pieces():
    from jvae.models.vae import VAE, init_params

    ppca = _correlated_ppca()
    model, params = ppca_to_vae(ppca)
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0), jnp.zeros((1, 5))))
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(shapes), jax.tree.leaves(params)):
        assert a.shape == b.shape
    W, mu, s2 = (np.asarray(a, np.float64) for a in ppca)
    x = np.asarray(ppca_sample(ppca, jax.random.PRNGKey(3), 6)[1])
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (4, 6, 2)))
    log_px_z = model.apply(params, jnp.asarray(z), method=VAE.decode).log_prob(x)
    ref = (-0.5 * np.sum((x - z @ W.T - mu) ** 2, -1) / s2 - 2.5 * np.log(2 * np.pi * s2))
    np.testing.assert_allclose(log_px_z, ref, rtol=1e-5)
    log_pz = model.apply(params, method=VAE.prior_distribution).log_prob(z)
    np.testing.assert_allclose(log_pz, -0.5 * np.sum(z**2, -1) - np.log(2 * np.pi), rtol=1e-5)
    # The encoder: exact posterior mean and exact marginal standard deviations.
    q = model.apply(params, x, method=VAE.encode)
    exact = ppca_posterior(ppca, x)
    np.testing.assert_allclose(q.mean(), exact.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q.stddev(), np.sqrt(np.diagonal(exact.covariance(), 0, -2, -1)),
                               rtol=1e-4)


def test_ppca_to_vae_importance_log_likelihood_converges():
    ppca = _correlated_ppca()
    model, params = ppca_to_vae(ppca)
    x = ppca_sample(ppca, jax.random.PRNGKey(5), 20)[1]
    exact = np.asarray(ppca_log_likelihood(ppca, x))
    key = jax.random.PRNGKey(6)
    elbo = np.asarray(jvae.importance_log_likelihood(model, params, key, x, 1))
    iwae = np.asarray(jvae.importance_log_likelihood(model, params, key, x, 4000,
                                                     chunk_size=1000))
    iwae_100 = np.asarray(jvae.importance_log_likelihood(model, params, key, x, 100))
    gap_elbo, gap_100, gap = exact - elbo, exact - iwae_100, exact - iwae
    # Measured: mean gaps 0.25 (K=1), 0.011 (K=100), -0.0003 (K=4000); max |gap| 0.014.
    assert abs(np.mean(gap)) < 3e-3 and np.max(np.abs(gap)) < 0.03, gap
    assert np.mean(gap_elbo) > np.mean(gap_100) > abs(np.mean(gap))
    assert np.mean(gap_elbo) > 0.05             # correlated posterior: q is not exact


def test_ppca_to_vae_of_the_ml_fit_is_exact():
    """Orthogonal W: q(z|x) is the exact posterior, so every importance weight is p(x)."""
    x, *_ = _planted(n=300, d=6, k=2)
    ppca = fit_ppca(x, 2)
    model, params = ppca_to_vae(ppca)
    iw = jvae.importance_log_likelihood(model, params, jax.random.PRNGKey(7), x[:50], 8)
    np.testing.assert_allclose(iw, ppca_log_likelihood(ppca, x[:50]), rtol=2e-5, atol=2e-4)


def test_fit_ppca_jits():
    x, *_ = _planted(n=300, d=6, k=2)
    eager = fit_ppca(x, 2)
    jitted = jax.jit(fit_ppca, static_argnums=1)(jnp.asarray(x), 2)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x, k, kwargs, match", [
    (np.ones((10, 4), np.float32), 4, {}, "smaller than the data dimension"),
    (np.ones((2, 5), np.float32), 3, {}, "more than the number of examples"),
    (np.ones((10, 4), np.float32), 0, {}, "positive integer"),
    (np.ones(10, np.float32), 1, {}, "2-D array"),
    (np.array([[0.0, 1.0, 2.0], [np.nan, 2.0, 0.0]], np.float32), 1, {}, "NaN"),
    (np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32), 1, {"ddof": 2},
     "ddof"),
    # Points on a line in R^3: a 1-D latent explains everything, sigma2 = 0.
    (np.outer(np.arange(10.0), [1.0, 2.0, 3.0]).astype(np.float32), 1, {}, "degenerate"),
])
def test_fit_ppca_bad_input(x, k, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        fit_ppca(x, k, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_input_to_the_pure_functions():
    ppca = _correlated_ppca()
    with pytest.raises(ValueError, match="shape"):
        ppca_log_likelihood(ppca, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        ppca_posterior(ppca, np.full((3, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="positive"):
        ppca_sample(ppca, jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="sigma2"):
        ppca_to_vae(ppca._replace(sigma2=jnp.asarray(0.0)))
