"""The linear VAE (jvae.classic.linear_vae) against PPCA (Lucas et al., 2019).

Exact marginal against a dense Gaussian and against ppca_log_likelihood; the closed-form ELBO
against jvae's Monte Carlo ELBO; a linear VAE trained by jvae's ELBO approaches the PPCA
maximum-likelihood optimum from below, with its ELBO below its exact log-likelihood; with a
fixed noise variance it collapses the directions PPCA's optimum gives zero columns.
GaussianHead(scale="learned_shared"): one scalar scale.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jvae
from jvae.classic import (PPCA, fit_linear_vae, fit_ppca, latent_usage, linear_vae_elbo,
                          linear_vae_log_likelihood, linear_vae_to_ppca, make_linear_vae,
                          ppca_fixed_noise, ppca_log_likelihood, ppca_sample, ppca_to_vae)
from jvae.models.heads import GaussianHead


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def data():
    """PPCA data, D = 10, 2 factors (non-orthogonal columns), noise sd 0.5: train, test."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(10, 2)))
    W = q * [2.0, 1.0] @ np.linalg.qr(rng.normal(size=(2, 2)))[0]
    truth = PPCA(W=jnp.asarray(W, jnp.float32),
                 mu=jnp.asarray(rng.normal(size=10), jnp.float32), sigma2=jnp.float32(0.25))
    _, x = ppca_sample(truth, jax.random.key(0), 4000)
    return x[:2000], x[2000:]


def _random_params(model, key, d):
    """Initialised parameters with a non-zero, non-orthogonal decoder and mean."""
    params = jvae.init_params(model, key, jnp.zeros((1, d)))
    out = params["params"]["likelihood"]["out"]
    out["bias"] = jax.random.normal(jax.random.fold_in(key, 1), out["bias"].shape)
    return params


def test_learned_shared_scale_is_one_scalar():
    x = jnp.ones((3, 4))
    head = GaussianHead((6,), scale="learned_shared", fixed_scale=0.7)
    params = head.init(jax.random.key(0), x)
    assert params["params"]["raw_scale"].shape == ()
    dist = head.apply(params, x)
    np.testing.assert_allclose(dist.stddev(), 0.7, rtol=1e-5)
    assert dist.batch_shape == (3,) and dist.event_shape == (6,)
    # Its gradient is the sum over every dimension's; "learned" keeps one scale per dimension.
    grad = jax.grad(lambda p: jnp.sum(head.apply(p, x).log_prob(jnp.zeros((3, 6)))))(params)
    assert grad["params"]["raw_scale"].shape == ()
    per_dim = GaussianHead((6,), scale="learned").init(jax.random.key(0), x)
    assert per_dim["params"]["raw_scale"].shape == (6,)
    with pytest.raises(ValueError, match="learned_shared"):
        GaussianHead((6,), scale="shared").init(jax.random.key(0), x)


def test_exact_log_likelihood_equals_ppca_and_dense_gaussian(data):
    x, _ = data
    ppca = fit_ppca(x, 2)
    model, params = ppca_to_vae(ppca)
    np.testing.assert_allclose(linear_vae_log_likelihood(model, params, x),
                               ppca_log_likelihood(ppca, x), rtol=1e-5)
    # A VAE mid-training (random, non-orthogonal W; a learned scalar noise): against the
    # dense N(mu, W W^T + sigma2 I), with W, mu, sigma2 read off the model's own p(x|z).
    model = make_linear_vae(10, 3, noise_scale=0.6)
    params = _random_params(model, jax.random.key(1), 10)
    z = jax.random.normal(jax.random.key(2), (5, 3))
    px = model.apply(params, z, method=jvae.VAE.decode)
    ppca = linear_vae_to_ppca(model, params)
    np.testing.assert_allclose(px.mean(), z @ ppca.W.T + ppca.mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(px.stddev(), jnp.sqrt(ppca.sigma2) * jnp.ones((5, 10)),
                               rtol=1e-5)
    W, mu, s2 = (np.asarray(a, np.float64) for a in ppca)
    dense = scipy.stats.multivariate_normal(mu, W @ W.T + s2 * np.eye(10))
    expected = dense.logpdf(np.asarray(x[:200], np.float64))
    exact = linear_vae_log_likelihood(model, params, x[:200])
    np.testing.assert_allclose(exact, expected, rtol=1e-5)
    jitted = jax.jit(lambda p, v: linear_vae_log_likelihood(model, p, v))(params, x[:200])
    np.testing.assert_allclose(jitted, exact, rtol=1e-6)


def test_closed_form_elbo_matches_monte_carlo_and_is_below_log_px(data):
    x, _ = data
    model = make_linear_vae(10, 3, noise_scale=0.6)
    params = _random_params(model, jax.random.key(3), 10)
    xs = x[:8]
    closed = linear_vae_elbo(model, params, xs)
    # jvae's one-sample estimates (analytic KL), 4000 independent draws: within 4 s.e.
    d, r = jax.jit(jax.vmap(lambda k: jvae.elbo_terms(model, params, k, xs, num_samples=1)))(
        jax.random.split(jax.random.key(4), 4000))
    draws = -np.asarray(d + r, np.float64)                       # [4000, 8]
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - closed) < 4 * se + 1e-3), (
        draws.mean(axis=0) - closed, se)
    assert np.all(closed < linear_vae_log_likelihood(model, params, xs))


def test_trained_linear_vae_approaches_ppca_optimum(data):
    x, x_test = data
    ppca = fit_ppca(x, 2)
    fit = fit_linear_vae(jax.random.key(0), x, 2, num_epochs=20, batch_size=100,
                         learning_rate=0.1)                          # 400 Adam steps
    opt = float(jnp.mean(ppca_log_likelihood(ppca, x)))
    exact = np.asarray(fit.train_log_likelihood)
    elbo = np.asarray(fit.train_elbo)
    # The optimum is the global maximum of the training log-likelihood: never exceeded
    # (beyond float32 noise) during training; the ELBO lies below log p(x) throughout.
    assert np.all(exact <= opt + 1e-4), np.max(exact) - opt
    assert np.all(elbo < exact)
    gap, gap_elbo = opt - exact[-1], opt - elbo[-1]
    assert gap < 0.01, gap                 # measured 0.0004-0.0008 nats/example (4 seeds)
    assert gap_elbo < 0.02, gap_elbo       # measured 0.0034-0.0037
    learned = linear_vae_to_ppca(fit.model, fit.params)
    np.testing.assert_allclose(learned.sigma2, ppca.sigma2, rtol=0.02)
    test_gap = float(jnp.mean(ppca_log_likelihood(ppca, x_test)
                              - linear_vae_log_likelihood(fit.model, fit.params, x_test)))
    assert abs(test_gap) < 0.01, test_gap


def test_fixed_noise_collapses_what_ppca_zeroes(data):
    x, _ = data
    ppca = fit_ppca(x, 3)                          # lambda_3 is a noise eigenvalue
    lam = np.asarray(jnp.sum(ppca.W**2, 0) + ppca.sigma2)
    sigma2 = float(np.sqrt(lam[1] * lam[2]))       # between lambda_2 and lambda_3
    fixed = ppca_fixed_noise(ppca, sigma2)
    assert np.count_nonzero(np.asarray(jnp.sum(fixed.W**2, 0)) == 0) == 1
    # PPCA's fixed-noise solution is a stationary point of the likelihood in (W, mu).
    grads = jax.grad(lambda W, mu: jnp.mean(ppca_log_likelihood(PPCA(W, mu, fixed.sigma2), x)),
                     argnums=(0, 1))(fixed.W, fixed.mu)
    for g in grads:
        assert float(jnp.max(jnp.abs(g))) < 1e-3
    fit = fit_linear_vae(jax.random.key(1), x, 3, noise="fixed", noise_scale=np.sqrt(sigma2),
                         num_epochs=20, batch_size=100, learning_rate=0.1)
    var, col2, kl = latent_usage(fit.model, fit.params, x)
    collapsed = np.asarray(jnp.mean(kl < 0.01, 0) >= 0.99)
    assert collapsed.sum() == 1, (np.asarray(var), np.asarray(col2))
    # Posterior variance ~ 1 (measured 0.987: the KL's pull towards 1 is flat there), decoder
    # column ~ 0 (measured |w|^2 = 0.0008, sigma2 = 0.59).
    assert float(var[collapsed][0]) > 0.95 and float(col2[collapsed][0]) < 0.01 * sigma2
    gap = float(jnp.mean(ppca_log_likelihood(fixed, x)
                         - linear_vae_log_likelihood(fit.model, fit.params, x)))
    assert -1e-4 < gap < 0.01, gap


def test_bad_models_are_refused():
    per_dim = jvae.VAE(data_shape=(4,), prior=jvae.StandardNormalPrior(2),
                       encoder=jvae.MLP(hidden=()), posterior=jvae.DiagGaussianHead(2),
                       decoder=jvae.MLP(hidden=()),
                       likelihood=GaussianHead((4,), scale="learned"))
    params = jvae.init_params(per_dim, jax.random.key(0), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="isotropic"):
        linear_vae_to_ppca(per_dim, params)
    deep = per_dim.clone(decoder=jvae.MLP(hidden=(8,)))
    with pytest.raises(ValueError, match="linear-Gaussian"):
        linear_vae_to_ppca(deep, jvae.init_params(deep, jax.random.key(0), jnp.zeros((1, 4))))
    with pytest.raises(ValueError, match="noise"):
        make_linear_vae(4, 2, noise="per_pixel")
    with pytest.raises(ValueError, match="sigma2"):
        ppca_fixed_noise(fit_ppca(jnp.asarray(np.random.default_rng(0).normal(
            size=(50, 4)), jnp.float32), 2), 0.0)
