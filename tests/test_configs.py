"""Every shipped config builds, validates and takes training steps on a small subset."""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from jvae import builders
from jvae.model import init_params
from jvae.training import TrainState, make_train_epoch

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))


def load_config(name):
    spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def fake_images(config, n):
    size = config.dataset.resize or 28
    x = np.random.default_rng(0).random((n, size, size, 1), np.float32)
    return (x > 0.5).astype(np.float32) if config.dataset.binarize != "none" else x


def test_expected_configs_are_shipped():
    assert {"pytorch_example", "gaussian2d", "fashion_mnist_dpm2"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_trains(name):
    config = load_config(name)
    builders.validate_config(config)
    if config.dataset.name == "gaussian2d":
        x = builders.load_data(config).train[:256]
    else:
        x = fake_images(config, 64)
    model = builders.build_model(config, x.shape[1:])
    opt = builders.build_optimizer(config)
    state = TrainState.create(init_params(model, jax.random.key(0), x[:1]), opt,
                              jax.random.key(1))
    epoch = make_train_epoch(builders.build_loss(config, model), opt, min(32, len(x)))
    new_state, metrics, losses = epoch(state, x)
    assert np.all(np.isfinite(np.asarray(losses)))
    assert int(new_state.step) == len(x) // min(32, len(x))
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                           state.params, new_state.params)
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli", "gaussian"])
@pytest.mark.parametrize("prior", ["standard", "mixture"])
def test_dpm2_conv_variant_every_likelihood_and_prior(likelihood, prior):
    config = load_config("fashion_mnist_dpm2")
    config.model.encoder = config.model.decoder = "conv"
    config.model.conv_encoder_features = (8, 16)
    config.model.conv_decoder_features = (16, 8)
    config.model.conv_encoder_out = 32
    config.model.likelihood = likelihood
    config.model.prior = prior
    config.model.prior_components = 3
    config.dataset.resize = 32          # the conv nets take any size; keep compilation cheap
    builders.validate_config(config)
    x = fake_images(config, 8)
    model = builders.build_model(config, x.shape[1:])
    params = init_params(model, jax.random.key(0), x[:1])
    loss, aux = builders.build_loss(config, model)(params, jax.random.key(1), x)
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(aux["elbo"]),
                               -(float(aux["distortion"]) + float(aux["rate"])), rtol=1e-5)


def test_unknown_names_raise_with_choices():
    config = load_config("pytorch_example")
    config.model.likelihood = "poisson"
    with pytest.raises(ValueError, match="bernoulli"):
        builders.validate_config(config)
    config = load_config("pytorch_example")
    config.dataset.name = "cifar100"
    with pytest.raises(ValueError, match="mnist"):
        builders.validate_config(config)
