"""Mixed precision (jvae.models.precision, config.model.compute_dtype): parameters, optimiser
state, checkpoints and densities stay float32; products run in bfloat16 and accumulate in
float32; the default is the float32 program unchanged. Small models, a few steps each."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae import testing
from jvae.evaluation.likelihood import evaluate, importance_log_likelihood, make_evaluator
from jvae.models.heads import DiagGaussianHead
from jvae.models.nets import MLP
from jvae.models.precision import (COMPUTE_DTYPES, check_compute_dtype, matmul,
                                   with_compute_dtype)
from jvae.models.vae import VAE, init_params
from jvae.objectives.elbo import make_elbo_loss
from jvae.objectives.iwae import make_iwae_loss
from jvae.runs import builders, schema
from jvae.runs.checkpoints import Checkpointer
from jvae.runs.defaults import default_config
from jvae.training import TrainState, make_train_epoch

SHAPE = (12, 12, 1)


def _config(network="mlp", dtype=None, posterior="gaussian"):
    config = default_config()
    config.model.encoder = config.model.decoder = network
    config.model.encoder_hidden = config.model.decoder_hidden = (32,)
    config.model.conv_encoder_features = (8, 16)
    config.model.conv_decoder_features = (16, 8)
    config.model.posterior = posterior
    config.model.flow_hidden = 8
    config.latent_dim = 4
    if dtype is None:
        del config.model["compute_dtype"]            # a config from before the switch
    else:
        config.model.compute_dtype = dtype
    return config


def _data(n=64, seed=0):
    return jax.random.bernoulli(jax.random.key(seed), 0.3, (n,) + SHAPE).astype(jnp.float32)


def _model(network="mlp", dtype="float32", posterior="gaussian"):
    return builders.build_model(_config(network, dtype, posterior), SHAPE)


@functools.lru_cache(maxsize=None)
def _trained(network, dtype, seed=0, steps=3):
    """``(state, step losses)`` after ``steps`` Adam steps (cached: tests share runs)."""
    model = _model(network, dtype)
    x = _data()
    params = init_params(model, jax.random.key(seed), x[:1])
    optimizer = optax.adam(1e-3)
    state = TrainState.create(params, optimizer, jax.random.key(seed + 1))
    epoch = make_train_epoch(make_elbo_loss(model), optimizer, batch_size=len(x) // steps,
                             model=model)
    state, _, losses = epoch(state, x)
    return state, losses


def _dtypes(tree):
    return {str(leaf.dtype) for leaf in jax.tree.leaves(tree)
            if jnp.issubdtype(leaf.dtype, jnp.floating)}


def test_unknown_dtype_names_are_refused_with_the_closest_name():
    assert check_compute_dtype("bfloat16") == "bfloat16" and COMPUTE_DTYPES[0] == "float32"
    with pytest.raises(ValueError, match=r"did you mean 'bfloat16'\?"):
        check_compute_dtype("bfloat")
    with pytest.raises(ValueError, match=r"MLP.compute_dtype 'float23' \(did you mean "
                                         r"'float32'\?\)"):
        MLP((4,), compute_dtype="float23")
    config = _config(dtype="bf16")
    with pytest.raises(ValueError, match=r"config.model.compute_dtype 'bf16'.*bfloat16"):
        schema.validate_config(config)
    with pytest.raises(ValueError, match="with_compute_dtype|compute_dtype 'half'"):
        with_compute_dtype(_model(), "half")


def test_the_switch_reaches_every_network_and_head():
    model = _model("conv", "bfloat16", posterior="iaf")
    parts = [model.encoder, model.posterior, model.decoder, model.likelihood]
    assert [p.compute_dtype for p in parts] == ["bfloat16"] * 4
    assert _model("conv").encoder.compute_dtype == "float32"
    # the compiled loss: bfloat16 operands in products and convolutions, none in float32
    x = _data(8)
    params = init_params(model, jax.random.key(0), x[:1])
    loss = make_elbo_loss(model)
    hlo = jax.jit(jax.grad(lambda p: loss(p, jax.random.key(1), x)[0])).lower(params).as_text()
    assert "bf16" in hlo and "convolution" in hlo
    f32 = with_compute_dtype(model, "float32")
    assert "bf16" not in jax.jit(lambda p: make_elbo_loss(f32)(p, jax.random.key(1), x)[0]
                                 ).lower(params).as_text()


def test_matmul_accumulates_bfloat16_products_in_float32():
    x = jnp.full((3, 4096), 1.0 + 2 ** -7)          # exact in bfloat16
    w = jnp.ones((4096, 2))
    out = matmul(x, w, jnp.bfloat16)
    assert out.dtype == jnp.float32
    # a bfloat16 accumulator could not hold 4096 * (1 + 2^-7) = 4128 (spacing 32 there)
    np.testing.assert_allclose(np.asarray(out), 4096 * (1 + 2 ** -7), rtol=1e-6)
    assert matmul(x, w).dtype == jnp.float32
    # its gradient: bfloat16 products (all three), float32 results close to float32's
    keys = jax.random.split(jax.random.key(0), 3)
    a, b = jax.random.normal(keys[0], (2, 5, 64)), jax.random.normal(keys[1], (64, 7))
    c = jax.random.normal(keys[2], (2, 5, 7))

    def loss(dtype):
        return lambda a, b: jnp.sum(c * jnp.tanh(matmul(a, b, dtype)))
    grad = jax.jit(jax.grad(loss(jnp.bfloat16), (0, 1)))
    dots = [line for line in grad.lower(a, b).as_text().splitlines() if "dot_general" in line]
    assert len(dots) == 3 and all(line.count("bf16>") == 2 for line in dots), dots
    for g16, g32 in zip(grad(a, b), jax.grad(loss(None), (0, 1))(a, b)):
        assert g16.dtype == jnp.float32 and g16.shape == g32.shape
        assert float(jnp.max(jnp.abs(g16 - g32))) <= 0.02 * float(jnp.max(jnp.abs(g32)))


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_params_opt_state_losses_and_grads_stay_float32(network):
    model = _model(network, "bfloat16")
    state, losses = _trained(network, "bfloat16")
    assert _dtypes(state.params) == {"float32"} and _dtypes(state.opt_state) == {"float32"}
    assert losses.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(losses)))
    x = _data(8)
    (loss, aux), grads = jax.jit(jax.value_and_grad(
        lambda p: make_elbo_loss(model)(p, jax.random.key(2), x), has_aux=True))(state.params)
    assert loss.dtype == jnp.float32 and {str(v.dtype) for v in aux.values()} == {"float32"}
    assert _dtypes(grads) == {"float32"}
    q = model.apply(state.params, x, method=VAE.encode)
    px = model.apply(state.params, q.mean(), method=VAE.decode)
    assert q.mean().dtype == q.stddev().dtype == jnp.float32
    assert px.log_prob(x).dtype == jnp.float32
    ll = importance_log_likelihood(model, state.params, jax.random.key(3), x, 4, 4)
    assert ll.dtype == jnp.float32 and ll.shape == (8,)


@pytest.mark.parametrize("network,posterior", [("mlp", "gaussian"), ("conv", "gaussian"),
                                               ("mlp", "iaf")])
def test_bfloat16_loss_and_gradient_are_close_to_float32(network, posterior):
    """Tolerance: the ELBO within 0.5% (bfloat16 keeps 8 significant bits, but each product
    accumulates in float32), the gradient within cosine 0.99 of float32's."""
    f32 = _model(network, "float32", posterior)
    bf16 = with_compute_dtype(f32, "bfloat16")
    x = _data(32, seed=1)
    params = init_params(f32, jax.random.key(0), x[:1])
    params_bf = init_params(bf16, jax.random.key(0), x[:1])
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params,
                                            params_bf)))      # the same initial parameters

    def value_and_grad(model):
        fn = jax.value_and_grad(lambda p: make_elbo_loss(model)(p, jax.random.key(5), x)[0])
        return jax.jit(fn)(params)

    (l32, g32), (l16, g16) = value_and_grad(f32), value_and_grad(bf16)
    assert float(l16) != float(l32)                      # bfloat16 did change something
    assert abs(float(l16) - float(l32)) <= 5e-3 * abs(float(l32))
    a = jnp.concatenate([v.ravel() for v in jax.tree.leaves(g32)])
    b = jnp.concatenate([v.ravel() for v in jax.tree.leaves(g16)])
    assert float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b))) > 0.99
    if network == "conv":
        return
    # the importance-weighted bound too (logsumexp of float32 weights)
    iw32 = make_iwae_loss(f32, num_samples=8)(params, jax.random.key(6), x)[0]
    iw16 = make_iwae_loss(bf16, num_samples=8)(params, jax.random.key(6), x)[0]
    assert iw16.dtype == jnp.float32 and abs(float(iw16 - iw32)) <= 5e-3 * abs(float(iw32))


def test_default_is_the_float32_program_bit_for_bit():
    for network in ("mlp", "conv"):
        absent, _ = _trained(network, None)
        explicit, _ = _trained(network, "float32")
        for a, b in zip(jax.tree.leaves(absent.params), jax.tree.leaves(explicit.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _model("mlp", None) == _model("mlp", "float32")


def test_checkpoints_restore_across_precisions(tmp_path):
    bf_state, _ = _trained("conv", "bfloat16")
    f32_state, _ = _trained("conv", "float32")
    assert jax.tree.structure(bf_state) == jax.tree.structure(f32_state)
    for name, saved, template in (("bf16", bf_state, f32_state), ("f32", f32_state, bf_state)):
        with Checkpointer(tmp_path / name) as ckpt:
            ckpt.save(1, saved)
            restored = ckpt.restore(template)
        for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(saved.params)):
            assert a.dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a bfloat16 run's parameters evaluate in float32 (and the other way) directly
    x = _data(8)
    loss = make_elbo_loss(_model("conv", "float32"))(bf_state.params, jax.random.key(0), x)[0]
    assert bool(jnp.isfinite(loss))


def test_estimator_references_stay_float32_and_float64_checks_keep_float64():
    """jvae.testing's exact references are float32 models, so its estimator checks run in
    float32 as before; and a float32 model fed float64 (the float64 finite-difference checks)
    is not rounded down by the precision code."""
    ref = testing.ppca_reference()
    parts = [ref.model.encoder, ref.model.posterior, ref.model.decoder, ref.model.likelihood]
    assert {p.compute_dtype for p in parts} == {"float32"}
    params, x = ref.params(0.7, 1.3), ref.sample(jax.random.key(1), 3)
    assert testing.exact_elbo(ref.model, params, x).dtype == jnp.float32
    assert make_elbo_loss(ref.model)(params, jax.random.key(2), x)[0].dtype == jnp.float32
    net, head = MLP((3,)), DiagGaussianHead(2)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        assert testing.exact_elbo(ref.model, p64, x64).dtype == jnp.float64
        h = jnp.ones((2, 5), jnp.float64)
        variables = net.init(jax.random.key(0), h)
        variables = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), variables)
        assert net.apply(variables, h).dtype == jnp.float64
        hv = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64),
                          head.init(jax.random.key(0), h))
        assert head.apply(hv, h).mean().dtype == jnp.float64


def test_evaluator_takes_a_compute_dtype():
    model = _model("mlp", "float32")
    x = _data(16)
    params = init_params(model, jax.random.key(0), x[:1])
    key = jax.random.key(4)
    ref = evaluate(model, params, key, x, ll_samples=8, ll_chunk=4, batch_size=16)
    bf = evaluate(model, params, key, x, ll_samples=8, ll_chunk=4, batch_size=16,
                  compute_dtype="bfloat16")
    same = evaluate(with_compute_dtype(model, "bfloat16"), params, key, x, ll_samples=8,
                    ll_chunk=4, batch_size=16)
    assert bf == same and bf["log_likelihood"] != ref["log_likelihood"]
    assert abs(bf["log_likelihood"] - ref["log_likelihood"]) <= 5e-3 * abs(ref["log_likelihood"])
    with pytest.raises(ValueError, match="did you mean 'bfloat16'"):
        make_evaluator(model, compute_dtype="bfloat")
