"""Every shipped config builds, validates and takes training steps on a small subset."""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from jvae.runs import builders

from jvae.runs import schema
from jvae.models.vae import init_params
from jvae.objectives.base import as_objective
from jvae.training import TrainState, make_train_epoch

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem != "__init__")


def load_module(name):
    spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(name, variant=None):
    module = load_module(name)
    return module.get_config() if variant is None else module.get_config(variant)


def fake_images(config, n):
    size = config.dataset.resize or 28
    x = np.random.default_rng(0).random((n, size, size, 1), np.float32)
    return (x > 0.5).astype(np.float32) if config.dataset.binarize != "none" else x


def test_expected_configs_are_shipped():
    assert {"pytorch_example", "gaussian2d", "fashion_mnist_dpm2", "iwae_mnist"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_trains(name):
    config = load_config(name)
    schema.validate_config(config)
    if config.dataset.name == "gaussian2d":
        x = builders.load_data(config).train[:256]
    else:
        x = fake_images(config, 64)
    model = builders.build_model(config, x.shape[1:])
    opt = builders.build_optimizer(config, steps_per_epoch=len(x) // min(32, len(x)))
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
    if prior == "mixture":          # (a standard prior has no components: refused if set)
        config.model.prior_components = 3
    config.dataset.resize = 32          # the conv nets take any size; keep compilation cheap
    schema.validate_config(config)
    x = fake_images(config, 8)
    model = builders.build_model(config, x.shape[1:])
    params = init_params(model, jax.random.key(0), x[:1])
    # Jitted: run eagerly, every small op of the conv stacks compiled on its own took longer.
    loss, aux = jax.jit(builders.build_loss(config, model))(params, jax.random.key(1), x)
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(aux["elbo"]),
                               -(float(aux["distortion"]) + float(aux["rate"])), rtol=1e-5)


def test_unknown_names_raise_with_choices():
    config = load_config("pytorch_example")
    config.model.likelihood = "poisson"
    with pytest.raises(ValueError, match="bernoulli"):
        schema.validate_config(config)
    config = load_config("pytorch_example")
    config.dataset.name = "cifar100"
    with pytest.raises(ValueError, match="mnist"):
        schema.validate_config(config)


# ------------------------------------------------------------ config-string variants

DPM2_VARIANTS = [
    f"prior={prior},posterior={post},estimator={est}" + (f",cv={cv}" if cv else "")
    for prior in ("gaussian", "mixture")
    for post, est, cvs in (("gaussian", "reparam", (None,)),
                           ("gaussian", "sfe", (None, "critic", "baseline", "centred", "none")),
                           ("mixture", "sfe", (None, "critic", "baseline", "centred", "none")),
                           ("mixture", "mixture", (None, "critic", "baseline", "centred", "none")))
    for cv in cvs]
# One training step each for a representative subset, on a shrunken network (each one is a
# compilation): every score-function estimator, both priors and posteriors, a chain with a
# self-critic and one with a learned baseline. The default (reparam) variant trains at full
# size in test_config_builds_and_trains.
DPM2_TRAINED = ["prior=mixture,estimator=sfe",
                "posterior=mixture,estimator=sfe,cv=baseline",
                "prior=mixture,posterior=mixture,estimator=mixture,cv=centred"]
IWAE_VARIANTS = [f"k={k},stages={s},estimator={e}" for k in (1, 5, 50) for s in (1, 3, 8)
                 for e in ("iwae", "stl", "dreg")]
# k=1 with the IWAE estimator trains in test_config_builds_and_trains.
IWAE_TRAINED = ["k=5,stages=2,estimator=stl", "k=50,estimator=dreg"]


@pytest.fixture
def fast_compile():
    """Compile without most XLA optimisations while the test runs: these programs take one or
    two steps, so compilation dominates (about 3x faster on a 2-core CPU)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def _build_full(config, data_shape, steps_per_epoch=10):
    """Everything a run builds before compiling, on the config as shipped."""
    schema.validate_config(config)
    model = builders.build_model(config, data_shape)
    loss = builders.build_loss(config, model)
    opt = builders.build_optimizer(config, steps_per_epoch=steps_per_epoch)
    return model, loss, opt


def _train_small(config, x, batch_size):
    """One epoch of ``len(x) // batch_size`` steps; returns (state before, state after)."""
    schema.validate_config(config)
    model = builders.build_model(config, x.shape[1:])
    opt = builders.build_optimizer(config, steps_per_epoch=len(x) // batch_size)
    objective = as_objective(builders.build_loss(config, model))
    est = objective.init(jax.random.key(2), x[:1])
    state = TrainState.create(init_params(model, jax.random.key(0), x[:1]), opt,
                              jax.random.key(1), est)
    epoch = make_train_epoch(objective, opt, batch_size,
                             dynamic_binarization=config.dataset.binarize == "dynamic")
    new_state, metrics, losses = epoch(state, x)
    assert np.all(np.isfinite(np.asarray(losses)))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    return state, new_state


@pytest.mark.parametrize("variant", DPM2_VARIANTS)
def test_dpm2_variant_validates_and_builds(variant):
    config = load_config("fashion_mnist_dpm2", variant)
    v = dict(item.split("=") for item in variant.split(","))
    assert config.model.prior == {"gaussian": "standard", "mixture": "mixture"}[v["prior"]]
    assert config.model.posterior == v["posterior"]
    assert config.objective.name == {"reparam": "elbo", "sfe": "sfe",
                                     "mixture": "mixture"}[v["estimator"]]
    if v["estimator"] == "reparam":
        assert config.optim.name == "adam" and not dict(config.optim.param_groups)
        assert tuple(config.objective.control_variates) == ()
    else:
        assert config.optim.name == "rmsprop"
        groups = dict(config.optim.param_groups)
        assert groups == {"prior": 5e-4, "decoder": 5e-4, "likelihood": 5e-4,
                          "encoder": 1e-4, "posterior": 1e-4}
        chain = tuple(config.objective.control_variates)
        expected = load_module("fashion_mnist_dpm2").CV_CHAINS[v.get("cv", "critic")]
        if v["estimator"] == "mixture":          # `scaled` does not apply to the mixture one
            expected = tuple(cv for cv in expected if cv != "scaled")
        assert chain == expected
        assert (config.objective.baseline_learning_rate == 1e-4) == ("baseline" in chain)
    _build_full(config, (64, 64, 1))


def test_dpm2_default_is_the_reparameterised_vae():
    assert load_config("fashion_mnist_dpm2").to_dict() == \
        load_config("fashion_mnist_dpm2", "").to_dict() == \
        load_config("fashion_mnist_dpm2", "prior=gaussian,posterior=gaussian,"
                                          "estimator=reparam").to_dict()
    config = load_config("fashion_mnist_dpm2")
    assert (config.objective.name, config.model.prior, config.model.posterior,
            config.optim.name) == ("elbo", "standard", "gaussian", "adam")


@pytest.mark.parametrize("variant", DPM2_TRAINED)
def test_dpm2_variant_trains_one_step(variant, fast_compile):
    config = load_config("fashion_mnist_dpm2", variant)
    config.dataset.resize = 16                  # keep the compilation cheap
    config.model.encoder_hidden = (32, 20)
    config.model.decoder_hidden = (32,)
    if "baseline" in config.objective.control_variates:   # (refused where unused)
        config.objective.baseline_hidden = (16,)
    if config.model.prior == "mixture":
        config.model.prior_components = 3
    x = fake_images(config, 16)
    before, after = _train_small(config, x, batch_size=16)
    assert int(after.step) == 1
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                           before.params, after.params)
    assert all(jax.tree.leaves(changed)), changed
    if config.optim.name == "rmsprop":
        # optax RMSprop's first step moves every parameter by lr * g / sqrt((1 - decay) g^2),
        # i.e. by lr / sqrt(1 - decay) where the gradient is not tiny (the 1e-6 weight decay
        # changes g negligibly): the largest move of each module shows the learning rate of
        # its parameter group.
        factor = 1.0 / np.sqrt(1.0 - config.optim.rmsprop_decay)
        def largest(tree):
            return max(float(np.max(np.abs(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))

        delta = jax.tree.map(lambda a, b: np.asarray(b) - np.asarray(a),
                             before.params, after.params)["params"]
        for module, lr in dict(config.optim.param_groups).items():
            if module not in delta:             # the standard prior has no parameters
                continue
            np.testing.assert_allclose(largest(delta[module]), lr * factor, rtol=1e-2,
                                       err_msg=module)
        if "baseline" in config.objective.control_variates:
            moved = jax.tree.map(lambda a, b: np.asarray(b) - np.asarray(a),
                                 before.estimator.params, after.estimator.params)
            np.testing.assert_allclose(largest(moved), 1e-4 * factor, rtol=1e-2)


@pytest.mark.parametrize("variant, match", [
    ("prior=vampprior", "gaussian"),
    ("posterior=flow", "mixture"),
    ("estimator=reinforce", "reparam"),
    ("estimator=sfe,cv=magic", "critic"),
    ("likelihood=gaussian", "prior"),
    ("prior", "key=value"),
    ("prior=mixture,prior=gaussian", "twice"),
    ("posterior=mixture", "reparameterisable"),
    ("posterior=mixture,estimator=reparam", "reparameterisable"),
    ("estimator=mixture", "posterior=mixture"),
    ("estimator=reparam,cv=none", "cv"),
])
def test_dpm2_bad_variants_raise(variant, match):
    with pytest.raises(ValueError, match=match):
        load_config("fashion_mnist_dpm2", variant)


def test_dpm2_variant_through_the_config_flag():
    from absl import flags
    from ml_collections import config_flags

    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=values,
                                    lock_config=True)
    path = CONFIG_DIR / "fashion_mnist_dpm2.py"
    values(["prog", f"--config={path}:prior=mixture,posterior=mixture,estimator=sfe"])
    config = values.config
    assert (config.model.prior, config.model.posterior, config.objective.name) == (
        "mixture", "mixture", "sfe")


@pytest.mark.parametrize("variant", IWAE_VARIANTS)
def test_iwae_variant_validates_and_builds(variant):
    config = load_config("iwae_mnist", variant)
    v = dict(item.split("=") for item in variant.split(","))
    assert config.objective.name == "iwae"
    assert config.objective.num_samples == int(v["k"])
    assert config.objective.estimator == v["estimator"]
    assert config.num_epochs == builders.iwae_epochs(int(v["stages"]))
    assert config.eval.ll_every == config.num_epochs and config.eval.ll_samples == 5000
    assert config.model.init == "glorot"
    _build_full(config, (28, 28, 1), steps_per_epoch=3000)


def test_iwae_defaults_are_the_paper_settings():
    config = load_config("iwae_mnist")
    assert config.num_epochs == 3280 and config.objective.num_samples == 1
    assert (config.batch_size, config.learning_rate, config.optim.eps,
            config.optim.schedule) == (20, 1e-3, 1e-4, "iwae")
    assert (config.dataset.binarize, config.dataset.train_split,
            config.dataset.eval_split) == ("dynamic", "train_full", "test")
    assert tuple(config.model.encoder_hidden) == tuple(config.model.decoder_hidden) == (200, 200)
    assert (config.model.activation, config.latent_dim) == ("tanh", 50)


@pytest.mark.parametrize("variant", IWAE_TRAINED)
def test_iwae_variant_trains(variant, fast_compile):
    config = load_config("iwae_mnist", variant)
    x = fake_images(config, 40)
    before, after = _train_small(config, x, batch_size=int(config.batch_size))
    assert int(after.step) == 2
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                           before.params, after.params)
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("variant, match", [
    ("k=0", "positive integer"), ("k=five", "positive integer"), ("k=2.5", "positive integer"),
    ("stages=-1", "positive integer"), ("estimator=vimco", "dreg"), ("K=5", "estimator"),
    ("k", "key=value"), ("k=5,k=50", "twice"),
])
def test_iwae_bad_variants_raise(variant, match):
    with pytest.raises(ValueError, match=match):
        load_config("iwae_mnist", variant)
