"""Bad input to the newer APIs is refused in one line (counts, numbers, points, t-SNE, PCA,
GMM, jvae.testing, binarisation, module constructors), and good input of other dtypes or
scales gives the right answer instead of NaN."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jvae
from jvae import testing
from jvae.data import check_count, check_number, check_points
from jvae.runs import builders, default_config


def _one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text and text.strip(), text
    return text


# ------------------------------------------------------------------ counts, numbers, points


@pytest.mark.parametrize("value", [2.5, 2.0, "3", True, None, np.array([1, 2]), 0, -1])
def test_check_count_refuses_what_is_not_a_positive_integer(value):
    with pytest.raises(ValueError, match="batch_size must be a positive integer") as info:
        check_count(value, "batch_size")
    _one_line(info)


def test_check_count_accepts_integers_of_any_kind():
    assert check_count(np.int64(3), "n") == 3 and type(check_count(np.int64(3), "n")) is int
    assert check_count(np.array(4), "n") == 4
    assert check_count(0, "n", minimum=0) == 0
    with pytest.raises(ValueError, match=r"an integer in \[1, 5\], got 6"):
        check_count(6, "n", maximum=5)


@pytest.mark.parametrize("value, match", [
    ("big", "must be a number"), (float("nan"), "must be finite"), (math.inf, "must be finite"),
    (True, "must be a number"), (-1.0, r"must lie in \[0, inf\)")])
def test_check_number_refuses_non_numbers_non_finite_and_out_of_range(value, match):
    with pytest.raises(ValueError, match=match) as info:
        check_number(value, "tol", low=0.0)
    assert _one_line(info).startswith("tol ")


@pytest.mark.parametrize("x, match", [
    (np.array([["a", "b"]] * 3), "non-numeric dtype"), (np.ones((3, 2), bool), "boolean"),
    (np.ones((3, 2), np.complex64), "complex"), (np.ones(3), "2-D array"),
    (np.ones((0, 2)), "at least 1 row"), ([[1.0, 2.0]], "expected an array"),
    (np.array([[1.0, np.inf]]), "non-finite")])
def test_check_points_refuses_unusable_points(x, match):
    with pytest.raises(ValueError, match=match) as info:
        check_points(x, "x")
    _one_line(info)


def test_check_points_computes_half_precision_in_float32():
    x = check_points(np.ones((3, 2), np.float16))
    assert x.dtype == np.float32
    assert check_points(jnp.ones((3, 2), jnp.bfloat16)).dtype == jnp.float32
    assert check_points([[1, 2], [3, 4]], lists=True, integers=True).dtype == np.float32


# ---------------------------------------------------------------------------------- t-SNE


def _cloud(n=24, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("x, kwargs, match", [
    (np.ones((24, 4)), {}, "all 24 points are the same point"),
    (np.full((24, 4), "a"), {}, "non-numeric dtype"),
    (_cloud(), {"num_iters": 2.5}, "num_iters must be a positive integer"),
    (_cloud(), {"perplexity": float("nan")}, "perplexity must be finite"),
    (_cloud(), {"perplexity": "5"}, "perplexity must be a number"),
    (_cloud(), {"learning_rate": -1.0}, "learning_rate must lie in"),
    (_cloud(), {"max_points": 2.0}, "max_points must be a positive integer"),
])
def test_tsne_refuses_degenerate_or_mistyped_input(x, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        jvae.tsne(x, **{"perplexity": 5.0, **kwargs})
    assert _one_line(info).startswith("tsne: ")


def test_tsne_is_scale_free_instead_of_nan():
    """Points scaled by 2^40 or 2^-60 (float32 distances would overflow or underflow) give
    the map of the unscaled points, bit for bit; 1e20 gives a finite map."""
    x = _cloud()
    ref = jvae.tsne(x, perplexity=5.0, num_iters=60)
    for scale in (2.0 ** 40, 2.0 ** -60):
        got = jvae.tsne(x * scale, perplexity=5.0, num_iters=60)
        np.testing.assert_array_equal(np.asarray(got.embedding), np.asarray(ref.embedding))
    far = jvae.tsne(x * 1e20 + 1e25, perplexity=5.0, num_iters=60)
    assert np.all(np.isfinite(np.asarray(far.embedding))) and np.isfinite(far.kl_divergence)
    p = np.asarray(jvae.joint_probabilities(x * 1e20, 5.0))
    np.testing.assert_allclose(p, np.asarray(jvae.joint_probabilities(x, 5.0)), atol=1e-6)


# ---------------------------------------------------------------------------- PCA and GMM


def test_fit_pca_refuses_constant_data_and_traced_constant_data_is_not_nan():
    with pytest.raises(ValueError, match="same point.*no direction") as info:
        jvae.fit_pca(np.ones((10, 4), np.float32), 2)
    _one_line(info)
    traced = jax.jit(jvae.fit_pca, static_argnums=1)(jnp.ones((10, 4)), 2)
    np.testing.assert_array_equal(np.asarray(traced.explained_variance_ratio), [0.0, 0.0])
    with pytest.raises(ValueError, match="num_components must be a positive integer"):
        jvae.fit_pca(_cloud().astype(np.float32), 2.0)


def test_half_precision_data_is_fitted_in_float32():
    x = _cloud(40, 3).astype(np.float16)
    x32 = x.astype(np.float32)
    pca16, pca32 = jvae.fit_pca(x, 2), jvae.fit_pca(x32, 2)
    assert pca16.components.dtype == jnp.float32
    np.testing.assert_allclose(pca16.explained_variance, pca32.explained_variance, rtol=1e-6)
    key = jax.random.key(0)
    fit16, fit32 = jvae.fit_gmm(key, x, 2, max_iter=5), jvae.fit_gmm(key, x32, 2, max_iter=5)
    assert fit16.gmm.means.dtype == jnp.float32
    np.testing.assert_allclose(fit16.gmm.means, fit32.gmm.means, rtol=1e-6)
    np.testing.assert_allclose(jvae.gmm_log_prob(fit32.gmm, x), jvae.gmm_log_prob(fit32.gmm, x32))


@pytest.mark.parametrize("kwargs, match", [
    ({"tol": "small"}, "tol must be a number"), ({"tol": float("nan")}, "tol must be finite"),
    ({"reg_covar": "x"}, "reg_covar must be a number"), ({"max_iter": 2.5}, "max_iter"),
    ({"num_components": 2.0}, "num_components must be a positive integer")])
def test_fit_gmm_names_a_bad_setting(kwargs, match):
    args = {"num_components": 2, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        jvae.fit_gmm(jax.random.key(0), _cloud(20, 2).astype(np.float32),
                     args.pop("num_components"), **args)
    _one_line(info)


# ------------------------------------------------------------------------- jvae.testing


@pytest.fixture(scope="module")
def reference():
    return testing.ppca_reference(4, 2)


def test_gradient_draws_refuses_fractional_counts_and_nan_inputs(reference):
    model, params = reference.model, reference.params()
    loss = jvae.make_elbo_loss(model)
    x = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    key = jax.random.key(0)
    for kwargs, match in [({"n": 2.5}, "n must be a positive integer"),
                          ({"n": 4, "chunk_size": 1.5}, "chunk_size must be a positive integer")]:
        with pytest.raises(ValueError, match=match):
            testing.gradient_draws(loss, params, x, key=key, **kwargs)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="x: 1 non-finite values"):
        testing.gradient_draws(loss, params, bad, 4, key)
    nan_params = jax.tree.map(lambda a: a * np.nan, params)
    with pytest.raises(ValueError, match=r"params\[.*non-finite"):
        testing.gradient_draws(loss, nan_params, x, 4, key)
    with pytest.raises(ValueError, match="num_draws .* must be an integer >= 2"):
        testing.gradient_moments(loss, params, x, 3.5, key)


def test_checks_refuse_a_nan_reference_and_bad_thresholds():
    draws = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="reference contains NaN"):
        testing.check_unbiased(draws, [0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="z must be finite"):
        testing.check_unbiased(draws, np.zeros(3), z=float("nan"))
    with pytest.raises(ValueError, match="draws must be an array"):
        testing.snr([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="below must be a number"):
        testing.variance_ratio(draws, draws, below="1")


# ------------------------------------------------------------------------- binarisation


@pytest.mark.parametrize("x, match", [
    (np.full((2, 3), 255.0, np.float32), "values must lie in \\[0, 1\\]"),
    (np.full((2, 3), -0.5, np.float32), "values must lie in \\[0, 1\\]"),
    (np.full((2, 3), np.nan, np.float32), "non-finite"),
    (np.ones((2, 3), np.uint8), "integer dtype uint8")])
def test_binarisation_takes_probabilities_only(x, match):
    with pytest.raises(ValueError, match=match) as info:
        jvae.binarize_dynamic(jax.random.key(0), x)
    _one_line(info)
    with pytest.raises(ValueError, match=match):
        jvae.binarize_static(x)


def test_binarisation_of_valid_data_and_inside_jit():
    x = np.full((1000,), 0.3, np.float32)
    draws = np.asarray(jvae.binarize_dynamic(jax.random.key(1), x))
    assert set(np.unique(draws)) <= {0.0, 1.0} and abs(draws.mean() - 0.3) < 0.06
    traced = jax.jit(jvae.binarize_dynamic)(jax.random.key(1), x)     # not checked when traced
    np.testing.assert_array_equal(np.asarray(traced), draws)
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\)"):
        jvae.binarize_static(x, threshold=1.5)


def test_make_train_epoch_refuses_a_fractional_batch_size():
    loss = lambda params, key, x: (jnp.sum(params["w"] * x), {"loss": jnp.sum(x)})  # noqa: E731
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 2.5"):
        jvae.make_train_epoch(loss, optax.sgd(0.1), 2.5)
    assert jvae.make_train_epoch(loss, optax.sgd(0.1), np.int32(2)) is not None


def test_dynamically_binarised_dev_and_eval_splits_are_both_fixed_binary_images(jvae_data_dir):
    c = default_config()
    c.dataset.binarize, c.dataset.dev_size = "dynamic", 50
    c.dataset.limit_train, c.dataset.limit_eval = 300, 100
    first, second = builders.load_data(c), builders.load_data(c)
    for data in (first.dev, first.eval):
        assert set(np.unique(data)) == {0.0, 1.0}
    assert len(np.unique(first.train)) > 2               # training stays grey (fresh draws)
    np.testing.assert_array_equal(first.dev, second.dev)  # the same binarisation every time
    np.testing.assert_array_equal(first.eval, second.eval)


# ----------------------------------------------------------------------- module constructors


def _vae(**parts):
    base = dict(data_shape=(6,), prior=jvae.StandardNormalPrior(2),
                encoder=jvae.MLP((8,)), posterior=jvae.DiagGaussianHead(2),
                decoder=jvae.MLP((8,)), likelihood=jvae.GaussianHead((6,)))
    return jvae.VAE(**{**base, **parts})


@pytest.mark.parametrize("build, match", [
    (lambda: jvae.VampPrior(500), r"VampPrior.data_shape must be a shape.*did you mean \(500,\)"),
    (lambda: jvae.StandardNormalPrior(2.5), "StandardNormalPrior.latent_dim must be a positive"),
    (lambda: jvae.MixturePrior(2, 2.5), "MixturePrior.num_components must be a positive"),
    (lambda: jvae.MLP(400), r"MLP.hidden must be a tuple.*did you mean \(400,\)"),
    (lambda: jvae.BernoulliHead(784), r"BernoulliHead.event_shape must be a shape"),
    (lambda: jvae.DiagGaussianHead((2,)), "DiagGaussianHead.latent_dim must be a positive"),
    (lambda: jvae.PointHead("2"), "PointHead.latent_dim must be a positive"),
    (lambda: jvae.ConvEncoder(features=8), "ConvEncoder.features must be"),
    (lambda: jvae.MLP((8,), dropout_rate=1.0), r"MLP.dropout_rate must be a number in \[0, 1\)"),
    (lambda: jvae.make_autoencoder((6,), 2.5), "latent_dim must be a positive integer"),
    (lambda: _vae(data_shape=6), r"VAE.data_shape must be a shape.*did you mean \(6,\)"),
    (lambda: _vae(prior=jvae.StandardNormalPrior(3)), "prior .* has latent_dim 3 but the "
                                                      "posterior .* has latent_dim 2"),
    (lambda: _vae(likelihood=jvae.GaussianHead((2, 3))), r"event_shape \(2, 3\) differs"),
    (lambda: _vae(prior=jvae.VampPrior((7,), 3)), r"VampPrior's data_shape \(7,\) differs"),
    (lambda: _vae(prior=jvae.MLP((8,)), encoder=jvae.StandardNormalPrior(2)),
     "VAE.prior is a MLP .* fields in order are data_shape, prior, encoder"),
    (lambda: _vae(posterior=jvae.IAFHead(2, hidden=5)), r"IAFHead.hidden must be .*\(5,\)"),
])
def test_a_module_given_a_wrong_argument_says_which_field(build, match):
    with pytest.raises(ValueError, match=match) as info:
        build()
    _one_line(info)
