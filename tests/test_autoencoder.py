"""Tests for jvae.models.autoencoder and jvae.objectives.autoencoder: the loss is the summed BCE with
logits of f(g(x)) (against a NumPy forward pass), it trains with make_train_epoch, its runs
resume exactly through train_and_evaluate, and the evaluator reports reconstruction errors."""

import pathlib
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae.runs import builders

from jvae.runs import schema
from jvae.models.autoencoder import PointHead, is_autoencoder, make_autoencoder
from jvae.evaluation import make_evaluator
from jvae.models.heads import DiagGaussianHead
from jvae.runs import read_metrics, restore_run, train_and_evaluate
from jvae.models.vae import VAE, init_params, reconstruct
from jvae.objectives.autoencoder import make_autoencoder_loss, reconstruction_terms
from jvae.objectives.elbo import make_elbo_loss
from jvae.training import TrainState, make_train_epoch

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "experiments/configs/lecture_autoencoder.py"


def _images(n, seed=0, side=6):
    """Grey 6x6 'digits': three prototypes with noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    protos = rng.random((3, side, side, 1)) ** 3
    x = protos[rng.integers(0, 3, n)] + 0.1 * rng.normal(size=(n, side, side, 1))
    return np.clip(x, 0, 1).astype(np.float32)


def _softplus(a):
    return np.logaddexp(0.0, a)


def _numpy_logits(params, x):
    """The autoencoder's forward pass in NumPy (float64): softplus MLPs, linear code."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    h = x.reshape(len(x), -1).astype(np.float64)
    enc, dec = p["encoder"], p["decoder"]
    for name in sorted(enc):
        h = _softplus(h @ enc[name]["kernel"] + enc[name]["bias"])
    z = h @ p["posterior"]["code"]["kernel"] + p["posterior"]["code"]["bias"]
    for name in sorted(dec):
        z = _softplus(z @ dec[name]["kernel"] + dec[name]["bias"])
    return z @ p["likelihood"]["out"]["kernel"] + p["likelihood"]["out"]["bias"]


def test_loss_is_bce_with_logits_summed_over_pixels():
    model = make_autoencoder((6, 6, 1), latent_dim=2, hidden=(5, 4))
    x = _images(16)
    params = init_params(model, jax.random.key(0), x[:1])
    loss, aux = make_autoencoder_loss(model)(params, jax.random.key(1), x)
    logits = _numpy_logits(params, x)
    flat = x.reshape(len(x), -1).astype(np.float64)
    # PyTorch's BCEWithLogitsLoss: max(l, 0) - l x + log(1 + exp(-|l|)), summed over pixels.
    bce = np.sum(np.maximum(logits, 0) - logits * flat + np.log1p(np.exp(-np.abs(logits))), 1)
    np.testing.assert_allclose(float(loss), bce.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["loss"]), bce.mean(), rtol=1e-5)
    sse = np.sum((flat - 1 / (1 + np.exp(-logits))) ** 2, 1)
    np.testing.assert_allclose(float(aux["squared_error"]), sse.mean(), rtol=1e-5)
    distortion, squared = reconstruction_terms(model, params, x)
    np.testing.assert_allclose(np.asarray(distortion), bce, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(squared), sse, rtol=1e-5)
    # The key is unused: the loss is deterministic, and the same under jit.
    again, _ = jax.jit(make_autoencoder_loss(model))(params, jax.random.key(7), x)
    np.testing.assert_allclose(float(again), float(loss), rtol=1e-6)


def test_lecture_architecture_784_128_128_2():
    model = make_autoencoder((28, 28, 1))
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0),
                                                jnp.zeros((1, 28, 28, 1))))["params"]
    got = {f"{m}/{layer}": shapes[m][layer]["kernel"].shape
           for m in shapes for layer in shapes[m]}
    assert got == {"encoder/dense_0": (784, 128), "encoder/dense_1": (128, 128),
                   "posterior/code": (128, 2), "decoder/dense_0": (2, 128),
                   "decoder/dense_1": (128, 128), "likelihood/out": (128, 784)}
    # The shipped config builds the same network.
    config = runpy.run_path(str(CONFIG))["get_config"]()
    built = builders.build_model(config, (28, 28, 1))
    assert is_autoencoder(built) and isinstance(built.posterior, PointHead)
    built_shapes = jax.eval_shape(lambda: init_params(built, jax.random.key(0),
                                                      jnp.zeros((1, 28, 28, 1))))
    assert jax.tree.map(lambda a: a.shape, built_shapes) == jax.tree.map(
        lambda a: a.shape, {"params": shapes})
    assert built.encoder.activation == "softplus" and built.decoder.activation == "softplus"


def test_code_is_posterior_mean_and_sample():
    model = make_autoencoder((6, 6, 1), latent_dim=3, hidden=(8,))
    x = _images(5)
    params = init_params(model, jax.random.key(0), x[:1])
    q = model.apply(params, x, method=VAE.encode)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    np.testing.assert_array_equal(np.asarray(q.sample(seed=jax.random.key(3))),
                                  np.asarray(q.mean()))
    a = reconstruct(model, params, jax.random.key(1), x, latent="mean")
    b = reconstruct(model, params, jax.random.key(2), x, latent="sample")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_trains_with_make_train_epoch():
    model = make_autoencoder((6, 6, 1), latent_dim=2, hidden=(16, 16))
    x = jnp.asarray(_images(256))
    opt = optax.adam(1e-2)
    state = TrainState.create(init_params(model, jax.random.key(0), x[:1]), opt,
                              jax.random.key(1))
    epoch = make_train_epoch(make_autoencoder_loss(model), opt, batch_size=32)
    losses = []
    for _ in range(3):
        state, metrics, step_losses = epoch(state, x)
        assert np.all(np.isfinite(np.asarray(step_losses)))
        assert set(metrics) == {"loss", "distortion", "squared_error"}
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 1.0, losses
    assert int(state.step) == 3 * (256 // 32)


def test_evaluator_reports_reconstruction_errors():
    model = make_autoencoder((6, 6, 1), latent_dim=2, hidden=(8,))
    x = _images(37)
    params = init_params(model, jax.random.key(0), x[:1])
    metrics = make_evaluator(model, batch_size=16)(params, jax.random.key(0), x)
    assert set(metrics) == {"distortion", "squared_error"}
    distortion, squared = reconstruction_terms(model, params, x)
    np.testing.assert_allclose(float(metrics["distortion"]), float(distortion.mean()), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["squared_error"]), float(squared.mean()), rtol=1e-5)
    with pytest.raises(ValueError, match="no likelihood p\\(x\\)"):
        make_evaluator(model, ll_samples=10)


def test_clear_errors():
    model = make_autoencoder((6, 6, 1), latent_dim=2, hidden=(8,))
    vae = VAE((6, 6, 1), model.prior, model.encoder, DiagGaussianHead(2), model.decoder,
              model.likelihood)
    with pytest.raises(ValueError, match="needs an autoencoder"):
        make_autoencoder_loss(vae)
    assert not is_autoencoder(vae) and is_autoencoder(model)
    make_elbo_loss(vae)   # a VAE keeps its ELBO
    config = runpy.run_path(str(CONFIG))["get_config"]()
    schema.validate_config(config)
    for field, value, match in (("objective.name", "iwae", "config.objective"),
                                ("eval.ll_samples", 100, "ll_samples=0"),
                                ("model.posterior", "mixture", "point-mass"),
                                ("model.kind", "autoencodr", "did you mean 'autoencoder'")):
        bad = runpy.run_path(str(CONFIG))["get_config"]()
        node = bad
        *parents, leaf = field.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
        with pytest.raises(ValueError, match=match):
            schema.validate_config(bad)


# ------------------------------------------------ train_and_evaluate: metrics and exact resume


def _small(num_epochs, **changes):
    c = runpy.run_path(str(CONFIG))["get_config"]()
    c.num_epochs = num_epochs
    c.batch_size = 32
    c.model.encoder_hidden = c.model.decoder_hidden = (16,)
    c.dataset.limit_train, c.dataset.limit_eval = 256, 64
    c.checkpoint_every = 1
    c.figures = False
    for k, v in changes.items():
        c[k] = v
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory, jvae_data_dir):
    full = tmp_path_factory.mktemp("ae_full")
    record = train_and_evaluate(_small(3, figures=True), full, progress=False)
    part = tmp_path_factory.mktemp("ae_part")
    train_and_evaluate(_small(1), part, progress=False)
    resumed = train_and_evaluate(_small(3), part, resume=True, progress=False)
    return full, record, part, resumed


def test_run_records_reconstruction_metrics_and_figures(runs):
    full, record, _, _ = runs
    assert {"train/loss", "train/distortion", "train/squared_error", "eval/distortion",
            "eval/squared_error"} <= set(record)
    assert "eval/elbo" not in record and "eval/log_likelihood" not in record
    history = read_metrics(full)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    for name in ("curves.png", "latents.png", "reconstructions.png"):
        assert (full / name).stat().st_size > 1000
    assert not (full / "samples.png").exists()    # an autoencoder has no prior to sample


def test_resume_is_exact(runs):
    full, record, part, resumed = runs
    _, _, _, a = restore_run(full)
    _, _, model, b = restore_run(part)
    assert is_autoencoder(model)
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert [r["train/loss"] for r in read_metrics(full)] == [r["train/loss"] for r in read_metrics(part)]
    assert resumed["eval/distortion"] == record["eval/distortion"]
