"""Dropout (the DPM2 notebook's ``nn.Dropout(p_drop)`` before every ``nn.Linear``).

Checked: rate 0 computes exactly what the losses computed before dropout existed; with
dropout the training losses are random across keys but fixed given the key, and draw their
samples from the same key stream; one mask per network within a loss call; no dropout in
evaluation; inverted dropout keeps the mean; bad rates are refused; a training run with
dropout is reproducible and resumes exactly; old stored configs still load and resume.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jvae
from jvae.runs import builders
from jvae.runs import schema
from jvae.runs.defaults import default_config
from jvae.runs.overrides import config_from_json, resume_differences
from jvae.evaluation import make_evaluator
from jvae.models.vae import DROPOUT_FOLD, VAE, dropout_rate, training_apply
from jvae.models.nets import MLP, check_dropout_rate, dropout
from jvae.objectives.base import as_objective
from jvae.objectives.iwae import iwae_bound
from jvae.training import TrainState, make_train_epoch

SHAPE = (6,)
N, BATCH = 32, 8


def _config(enc=0.0, dec=0.0, **changes):
    c = default_config()
    c.latent_dim = 2
    c.model.encoder_hidden = (8,)
    c.model.decoder_hidden = (8,)
    c.model.encoder_dropout = enc
    c.model.decoder_dropout = dec
    for dotted, value in changes.items():
        group, field = dotted.split("__")
        c[group][field] = value
    schema.validate_config(c)
    return c


def _data(n=N, seed=1):
    return (jax.random.uniform(jax.random.key(seed), (n,) + SHAPE) > 0.5).astype(jnp.float32)


_PARAMS = {}


def _model_and_params(config):
    """The model and its parameters, initialised once per architecture (dropout adds none)."""
    model = builders.build_model(config, SHAPE)
    arch = (config.model.kind, config.model.posterior)
    if arch not in _PARAMS:
        _PARAMS[arch] = jvae.init_params(model, jax.random.key(0), _data()[:1])
    return model, _PARAMS[arch]


def _loss(config, model):
    return as_objective(builders.build_loss(config, model))


def test_rate_zero_is_the_plain_apply_and_dropout_keeps_the_sample_stream():
    """Rate 0: no dropout stream, and the ELBO loss is, bit for bit, the one written with
    ``model.apply`` alone (an old config without the fields builds the same model). Decoder
    dropout: ``z`` is drawn from the loss key exactly as without dropout, the decoder's masks
    come from ``fold_in(key, DROPOUT_FOLD)``; the loss is random across keys, fixed given one."""
    config, drop = _config(), _config(dec=0.5)
    model, params = _model_and_params(config)
    dmodel = builders.build_model(drop, SHAPE)
    assert dropout_rate(model) == 0.0 and dropout_rate(dmodel) == 0.5
    assert dmodel.decoder.dropout_rate == dmodel.likelihood.dropout_rate == 0.5
    assert dmodel.encoder.dropout_rate == dmodel.posterior.dropout_rate == 0.0
    assert training_apply(model, jax.random.key(3)) == model.apply
    old = _config()
    del old.model["encoder_dropout"], old.model["decoder_dropout"]
    assert builders.build_model(old, SHAPE) == model
    x = _data(BATCH)
    loss0, loss1 = builders.build_loss(config, model), builders.build_loss(drop, dmodel)

    @jax.jit
    def values(params, key, other):
        q = model.apply(params, x, method=VAE.encode)
        z = q.sample(seed=key)
        r = q.kl_divergence(model.apply(params, method=VAE.prior_distribution))
        d = -model.apply(params, z, method=VAE.decode).log_prob(x)
        px = dmodel.apply(params, z, method=VAE.decode,
                          rngs={"dropout": jax.random.fold_in(key, DROPOUT_FOLD)})
        return (loss0(params, key, x)[0], jnp.mean(d + r), loss1(params, key, x)[0],
                jnp.mean(-px.log_prob(x) + r), loss1(params, other, x)[0])

    plain, manual, dropped, manual_dropped, other = (
        float(v) for v in values(params, jax.random.key(3), jax.random.key(4)))
    assert plain == manual
    np.testing.assert_allclose(dropped, manual_dropped, rtol=1e-6)
    assert dropped != plain and dropped != other
    assert float(values(params, jax.random.key(3), jax.random.key(4))[2]) == dropped


def _jaxpr(config, model, params, x):
    obj = _loss(config, model)
    return str(jax.make_jaxpr(lambda p, k: obj.loss(p, obj.init(k, x), k, x)[0])(
        params, jax.random.key(1)))


@pytest.mark.parametrize("changes", [
    {},
    {"objective__name": "iwae", "objective__num_samples": 3, "objective__estimator": "dreg"},
    {"objective__name": "sfe", "objective__control_variates": ("self_critic", "centred")},
    {"objective__name": "vimco", "objective__num_samples": 3, "model__posterior": "mixture"},
    {"objective__name": "mixture", "model__posterior": "mixture"},
    {"model__kind": "autoencoder"},
], ids=["elbo", "dreg", "sfe", "vimco", "mixture", "autoencoder"])
def test_every_training_loss_draws_dropout_masks_from_the_folded_key(changes):
    """Traced, not compiled: the loss of a model with dropout folds ``DROPOUT_FOLD`` into its
    key and draws more random bits (the masks); the rate-0 loss does neither."""
    on = _config(enc=0.3, dec=0.3, **changes)
    model = builders.build_model(on, SHAPE)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), _data()[:1]))
    off = _config(**changes)
    x = _data(BATCH)
    traced_on = _jaxpr(on, model, params, x)
    traced_off = _jaxpr(off, builders.build_model(off, SHAPE), params, x)
    assert str(DROPOUT_FOLD) in traced_on and str(DROPOUT_FOLD) not in traced_off
    assert traced_on.count("random_bits") > traced_off.count("random_bits")


def test_one_mask_per_network_within_a_loss_call():
    """STL and DReG evaluate q(z|x) twice (once with stopped parameters): the second
    evaluation (log q of the samples) must see the mask the samples were drawn with, so both
    values are the K-sample bound computed with a single encoder pass."""
    k_samples = 3
    config = _config(enc=0.5, dec=0.5, objective__name="iwae", objective__num_samples=k_samples)
    model, params = _model_and_params(config)
    key, x = jax.random.key(5), _data(BATCH)
    losses = {}
    for estimator in ("stl", "dreg"):
        config.objective.estimator = estimator
        losses[estimator] = builders.build_loss(config, model)

    @jax.jit
    def values(params, key):
        apply = training_apply(model, key)
        e1, e2 = (apply(params, x, method=VAE.encode) for _ in range(2))
        z = e1.sample(seed=key, sample_shape=(k_samples,))
        log_w = apply(params, x, z, method=VAE.log_joint) - e1.log_prob(z)
        plain = model.apply(params, x, method=VAE.encode).mean()
        return (e1.mean(), e2.mean(), plain, -jnp.mean(iwae_bound(log_w)),
                {name: fn(params, key, x)[0] for name, fn in losses.items()})

    m1, m2, plain, expected, got = values(params, key)
    np.testing.assert_array_equal(np.asarray(m1), np.asarray(m2))
    assert not np.allclose(np.asarray(m1), np.asarray(plain))
    for estimator, loss in got.items():
        np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6, err_msg=estimator)


def test_evaluation_and_sampling_have_no_dropout():
    """Evaluation (ELBO and importance-sampled log p(x)), decoding, sampling and
    reconstruction of a model with dropout trace to exactly the programs of the rate-0 model
    (so they give the same numbers for the same params and key, and no mask)."""
    model = builders.build_model(_config(enc=0.5, dec=0.5), SHAPE)
    model0 = builders.build_model(_config(), SHAPE)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), _data()[:1]))
    data, key = _data(20, seed=2), jax.random.key(1)
    z = jnp.zeros((5, 2))

    def programs(m):
        def run(params, key):
            return (make_evaluator(m, batch_size=10, ll_samples=4, ll_chunk=2,
                                   validate=False)(params, key, data),
                    m.apply(params, z, method=VAE.decode).mean(),
                    jvae.sample_prior(m, params, key, 3, mode="sample"),
                    jvae.reconstruct(m, params, key, data[:5], validate=False))
        return str(jax.make_jaxpr(run)(params, key))

    with_dropout, without = programs(model), programs(model0)
    assert with_dropout == without
    assert str(DROPOUT_FOLD) not in with_dropout


def test_inverted_dropout_keeps_the_mean():
    """Monte Carlo over 4000 masks: each unit is dropped with probability ``rate``, the kept
    ones are scaled by ``1 / (1 - rate)``, so a dense layer's mean output is its output
    without dropout (within 4 standard errors)."""
    import flax.linen as nn

    rate, n = 0.25, 4000

    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x):
            return dropout(self, x, rate, name="d")

    x = jnp.linspace(0.5, 2.0, 6)
    keys = jax.random.split(jax.random.key(7), n)
    mlp = MLP((3,), activate_final=False, dropout_rate=rate)
    params = mlp.init(jax.random.key(0), x)

    @jax.jit
    def draws(keys):
        return (jax.vmap(lambda k: Drop().apply({}, x, rngs={"dropout": k}))(keys),   # [n, 6]
                mlp.apply(params, x),                                 # no stream: no dropout
                jax.vmap(lambda k: mlp.apply(params, x, rngs={"dropout": k}))(keys))

    dropped, exact, out = (np.asarray(v) for v in draws(keys))
    kept = np.asarray(dropped != 0)
    p = kept.mean(0)
    assert np.all(np.abs(p - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)), p
    np.testing.assert_allclose(np.asarray(dropped)[kept],
                               np.broadcast_to(np.asarray(x) / (1 - rate), kept.shape)[kept],
                               rtol=1e-6)
    se = out.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(out.mean(0) - exact) < 4 * se), (out.mean(0), exact, se)
    assert np.all(out.std(0) > 0)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_bad_rates_are_refused(rate):
    for bad in (rate, "high", None):
        with pytest.raises(ValueError, match=r"in \[0, 1\)"):
            check_dropout_rate(bad)
    with pytest.raises(ValueError, match=r"MLP\.dropout_rate must be"):
        MLP((3,), dropout_rate=rate).init(jax.random.key(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"DiagGaussianHead\.dropout_rate must be"):
        jvae.DiagGaussianHead(2, dropout_rate=rate).init(jax.random.key(0), jnp.zeros((1, 2)))
    c = default_config()
    c.model.decoder_dropout = rate
    with pytest.raises(ValueError, match=r"^config\.model\.decoder_dropout must be"):
        schema.validate_config(c)


def _state_to_host(state):
    return jax.tree.map(np.asarray, state._replace(key=jax.random.key_data(state.key)))


def _state_from_host(host):
    state = jax.tree.map(jnp.asarray, host)
    return state._replace(key=jax.random.wrap_key_data(state.key))


def test_training_with_dropout_is_reproducible_and_resumes_exactly():
    config = _config(enc=0.2, dec=0.3)
    model, params = _model_and_params(config)
    optimizer = optax.adam(1e-2)
    data = _data()
    epoch = make_train_epoch(builders.build_loss(config, model), optimizer, BATCH)

    def run(p, epochs):
        state = TrainState.create(p, optimizer, jax.random.key(11))
        states = []
        for _ in range(epochs):
            state = epoch(state, data)[0]
            states.append(state)
        return states

    first, second = run(params, 2)
    again = run(params, 2)[1]
    for a, b in zip(jax.tree.leaves(second.params), jax.tree.leaves(again.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    resumed = epoch(_state_from_host(_state_to_host(first)), data)[0]
    for a, b in zip(jax.tree.leaves(_state_to_host(second)),
                    jax.tree.leaves(_state_to_host(resumed))):
        np.testing.assert_array_equal(a, b)


def test_old_stored_config_without_the_fields_loads_and_resumes(tmp_path):
    stored = default_config().to_dict()
    del stored["model"]["encoder_dropout"], stored["model"]["decoder_dropout"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(jvae.runs.overrides.normalised(stored)))
    config = config_from_json(path)
    assert (config.model.encoder_dropout, config.model.decoder_dropout) == (0.0, 0.0)
    assert resume_differences(config, default_config()) == ([], [])
    changed = default_config()
    changed.model.decoder_dropout = 0.1
    refused, _ = resume_differences(config, changed)
    assert refused == ["model.decoder_dropout (0.0 -> 0.1)"]
