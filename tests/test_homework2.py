"""Homework 2's pieces: its KL and NLL helpers (the homework's asserted values), the
``(mu, log_std)`` Gaussian heads, ``get_latent_stats``, and the theory's numerical checks
that have no other home (3.3*: the derivative of ``log det A``)."""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jvae


def assert_close(a, b, rtol, atol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- get_normal_KL / get_normal_nll


def test_normal_kl_reproduces_the_homeworks_asserted_values():
    # test_KL() of the homework, with its rtol=1e-3
    np.testing.assert_allclose(jvae.normal_kl(2, 3, 0, 0), 200.2144, rtol=1e-3)
    np.testing.assert_allclose(jvae.normal_kl(2, 3, 4, 5), 1.50925, rtol=1e-3)
    np.testing.assert_allclose(jvae.normal_kl(jnp.array([10, 10]), jnp.array([2, 4]),
                                              jnp.array([3, 5])), [49.2990, 1498.479], rtol=1e-3)


def test_normal_nll_reproduces_the_homeworks_asserted_values():
    # test_NLL() of the homework
    np.testing.assert_allclose(jvae.normal_nll(2, 2, 3), 3.9189, rtol=1e-3)
    np.testing.assert_allclose(jvae.normal_nll(5, -3, 6), 6.9191, rtol=1e-3)
    np.testing.assert_allclose(jvae.normal_nll(jnp.array([10, 10]), jnp.array([2, 4]),
                                               jnp.array([3, 5])), [3.9982, 5.9197], rtol=1e-3)


def test_normal_kl_and_nll_agree_with_distrax_elementwise():
    r = np.random.default_rng(0)
    m1, s1, m2, s2, x = (r.normal(size=(4, 3)).astype(np.float32) for _ in range(5))
    p, q = distrax.Normal(m1, np.exp(s1)), distrax.Normal(m2, np.exp(s2))
    assert_close(jvae.normal_kl(m1, s1, m2, s2), p.kl_divergence(q), rtol=1e-5, atol=1e-5)
    assert_close(jvae.normal_kl(m1, s1), p.kl_divergence(distrax.Normal(0.0, 1.0)),
                 rtol=1e-5, atol=1e-5)
    assert_close(jvae.normal_nll(x, m1, s1), -p.log_prob(x), rtol=1e-5, atol=1e-5)
    assert jvae.normal_kl(m1, s1, m2, s2).shape == (4, 3)       # not reduced


def test_normal_kl_is_finite_where_the_standard_deviations_alone_overflow():
    # exp(60) overflows float32; the difference of the log standard deviations does not
    kl = jvae.normal_kl(jnp.float32(0.0), jnp.float32(60.0), jnp.float32(0.0), jnp.float32(59.0))
    np.testing.assert_allclose(kl, -1.0 + 0.5 * np.exp(2.0) - 0.5, rtol=1e-5)


# ------------------------------------------------------------------- the (mu, log_std) heads


def test_gaussian_head_reads_a_log_std_output():
    h = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)), jnp.float32)
    head = jvae.GaussianHead((2,), predicted_scale="log_std", min_scale=1e-3)
    params = head.init(jax.random.key(0), h)
    px = head.apply(params, h)
    raw = h @ params["params"]["out"]["kernel"] + params["params"]["out"]["bias"]
    raw = np.asarray(raw).reshape(5, 2, 2)
    assert_close(px.distribution.loc, raw[..., 0], rtol=1e-5, atol=1e-6)
    assert_close(px.distribution.scale, np.exp(raw[..., 1]) + 1e-3, rtol=1e-5, atol=1e-6)
    soft = jvae.GaussianHead((2,)).apply(params, h)                  # the default: softplus
    assert_close(soft.distribution.scale, np.log1p(np.exp(raw[..., 1])) + 1e-3, rtol=1e-5,
                 atol=1e-6)


def test_config_builds_the_homeworks_heads(small_g2d_config):
    c = small_g2d_config()
    c.model.posterior_scale = "log_std"
    c.model.likelihood_scale = "log_std"
    jvae.validate_config(c)
    model = jvae.build_model(c, (2,))
    assert model.posterior.scale == "log_std" and model.likelihood.predicted_scale == "log_std"
    c.model.likelihood_scale = "log_sd"
    with pytest.raises(ValueError, match="model.likelihood_scale 'log_sd'; did you mean 'log_std'"):
        jvae.validate_config(c)


# ------------------------------------------------------------------------ get_latent_stats


@pytest.fixture(scope="module")
def g2d_model():
    model = jvae.VAE((2,), jvae.StandardNormalPrior(2), jvae.MLP((8,)),
                     jvae.DiagGaussianHead(2, scale="log_std"), jvae.MLP((8,)),
                     jvae.GaussianHead((2,), predicted_scale="log_std"))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(37, 2)), jnp.float32)
    return model, jvae.init_params(model, jax.random.key(3), x[:1]), x


def test_posterior_stats_cover_every_example_in_chunks(g2d_model):
    model, params, x = g2d_model
    q = model.apply(params, x, method=jvae.VAE.encode)
    mean, std = jvae.posterior_stats(model, params, x, batch_size=10)   # 4 chunks, last padded
    assert mean.shape == std.shape == (37, 2)
    assert_close(mean, q.mean(), rtol=1e-5, atol=1e-6)
    assert_close(std, q.stddev(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        jvae.posterior_stats(model, params, x, batch_size=0)


def test_get_latent_stats_encodes_one_shuffled_batch(g2d_model):
    model, params, x = g2d_model
    key = jax.random.key(4)
    mu, std = jvae.get_latent_stats(model, params, key, x, batch_size=20)
    order = np.asarray(jax.random.permutation(key, 37))[:20]
    q = model.apply(params, x[order], method=jvae.VAE.encode)
    assert_close(mu, q.mean(), rtol=1e-5, atol=1e-6)
    assert_close(std, q.stddev(), rtol=1e-5, atol=1e-6)
    mu_all, _ = jvae.get_latent_stats(model, params, key, x)      # 3000 > 37: every point
    assert mu_all.shape == (37, 2)


# ----------------------------------------------------------------- the theory, problem 3.3*


def _random_matrices(n, count, seed):
    r = np.random.default_rng(seed)
    return [r.normal(size=(n, n)) + n * np.eye(n) * r.choice([-1, 1]) for _ in range(count)]


@pytest.mark.parametrize("n", [1, 3, 5])
def test_gradient_of_log_abs_det_is_the_inverse_transpose(n):
    """3.3*: d det A / dA = det(A) A^{-T}, so d log|det A| / dA = A^{-T} (any invertible A,
    either sign of the determinant); jax.grad of slogdet against the closed form, float64."""
    with jax.enable_x64(True):
        for a in _random_matrices(n, 4, seed=n):
            a = jnp.asarray(a, jnp.float64)
            grad = jax.grad(lambda m: jnp.linalg.slogdet(m)[1])(a)
            assert_close(grad, jnp.linalg.inv(a).T, rtol=1e-10, atol=1e-12)
            grad_det = jax.grad(jnp.linalg.det)(a)
            assert_close(grad_det, jnp.linalg.det(a) * jnp.linalg.inv(a).T, rtol=1e-9,
                         atol=1e-12)


def test_gradient_of_det_is_the_cofactor_matrix():
    """3.3*'s proof: expanding det A along row i, d det A / dA_ij = C_ij, the cofactor
    (-1)^(i+j) M_ij; the cofactor matrix built from minors equals jax.grad of det."""
    with jax.enable_x64(True):
        a = jnp.asarray(_random_matrices(4, 1, seed=9)[0], jnp.float64)
        cof = np.empty((4, 4))
        for i in range(4):
            for j in range(4):
                minor = np.delete(np.delete(np.asarray(a), i, 0), j, 1)
                cof[i, j] = (-1) ** (i + j) * np.linalg.det(minor)
        assert_close(jax.grad(jnp.linalg.det)(a), cof, rtol=1e-9, atol=1e-12)
