"""KL warm-up schedules and free bits (jvae.objectives.kl_schedule) through the ELBO, the
trainer, the run loop and the config.

Checked: the schedules' values at given steps; a scheduled loss equals the constant-beta loss
at the scheduled beta, jitted; the trainer hands each step its optimiser step number (so an
epoch with a warm-up equals the steps run one by one with explicit betas); a constant
schedule trains bit for bit as the plain loss; free bits give no gradient to the dimensions
under the floor and leave the reported ELBO true; a run with a warm-up resumes bit for bit;
bad settings are refused in one line naming the field.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jvae
from jvae.objectives import free_bits_rate, kl_warmup, make_elbo_loss, per_dimension_kl
from jvae.runs import builders, restore_run, schema, train_and_evaluate, read_metrics
from jvae.runs.defaults import default_config
from jvae.training import TrainState, make_train_epoch

SHAPE = (6,)
N, BATCH = 32, 8


def _data(n=N, seed=1):
    return (jax.random.uniform(jax.random.key(seed), (n,) + SHAPE) > 0.5).astype(jnp.float32)


def _config(**changes):
    c = default_config()
    c.latent_dim = 3
    c.model.encoder_hidden = (8,)
    c.model.decoder_hidden = (8,)
    for dotted, value in changes.items():
        group, field = dotted.split(".")
        c[group][field] = value
    schema.validate_config(c)
    return c


@pytest.fixture(scope="module")
def model_params():
    model = builders.build_model(_config(), SHAPE)
    return model, jvae.init_params(model, jax.random.key(0), _data()[:1])


# --- schedules ---------------------------------------------------------------------------

def test_linear_warmup_values_at_given_steps():
    s = kl_warmup(beta=2.0, steps=100, start=0.5, kind="linear")
    got = np.asarray(s(jnp.array([0, 25, 50, 100, 101, 10_000])))
    np.testing.assert_allclose(got, [0.5, 0.875, 1.25, 2.0, 2.0, 2.0], rtol=1e-6)
    assert got.dtype == np.float32


def test_cosine_warmup_values_and_constant_schedule():
    s = kl_warmup(beta=1.0, steps=10, start=0.0, kind="cosine")
    got = np.asarray(s(jnp.array([0, 5, 10, 20])))
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    assert float(s(jnp.int32(2))) < 0.2   # slower than linear (0.2) at the start
    c = kl_warmup(beta=0.7, kind="constant")
    np.testing.assert_allclose(np.asarray(c(jnp.array([0, 3, 999]))), [0.7] * 3, rtol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "exp", "steps": 3}, "Unknown beta schedule 'exp'"),
    ({"steps": 0}, "steps > 0"),
    ({"steps": 2.5}, "steps > 0"),
    ({"steps": 3, "start": -1.0}, "start must be a non-negative finite"),
    ({"steps": 3, "beta": float("nan")}, "beta must be a non-negative finite"),
])
def test_bad_schedules_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kl_warmup(**kwargs)


# --- the loss ----------------------------------------------------------------------------

def test_jitted_warmup_loss_equals_the_loss_with_the_explicit_beta(model_params):
    model, params = model_params
    schedule = kl_warmup(beta=1.0, steps=40, kind="linear")
    scheduled = jax.jit(make_elbo_loss(model, beta=schedule))
    x, key = _data()[:BATCH], jax.random.key(5)
    for step in (0, 10, 33, 40, 77):
        loss, aux = scheduled(params, key, x, step=jnp.int32(step))
        beta = min(step / 40, 1.0)
        ref_loss, ref_aux = jax.jit(make_elbo_loss(model, beta=beta))(params, key, x)
        np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
        np.testing.assert_allclose(float(aux["beta"]), beta, rtol=1e-6)
        for k in ("elbo", "rate", "distortion"):
            assert float(aux[k]) == float(ref_aux[k]), k
    with pytest.raises(TypeError, match="step"):
        make_elbo_loss(model, beta=schedule)(params, key, x)
    assert jvae.accepts_step(make_elbo_loss(model, beta=schedule))
    assert not jvae.accepts_step(make_elbo_loss(model))


def test_epoch_passes_each_step_its_optimiser_step(model_params):
    """One epoch with a warm-up (started mid-schedule) equals its steps run by hand, each
    with the constant beta of its step number."""
    model, params = model_params
    optimizer = optax.adam(1e-2)
    schedule = kl_warmup(beta=1.0, steps=6, kind="linear")
    data = _data()
    epoch = make_train_epoch(make_elbo_loss(model, beta=schedule), optimizer, BATCH,
                             step_metrics=True)
    state = TrainState.create(params, optimizer, jax.random.key(2))._replace(
        step=jnp.int32(3))
    new, _, aux = epoch(state, data)
    np.testing.assert_allclose(np.asarray(aux["beta"]), [0.5, 4 / 6, 5 / 6, 1.0], rtol=1e-6)
    assert int(new.step) == 3 + N // BATCH

    plan = epoch.plan(state, data)
    p, opt_state = state.params, state.opt_state
    for i in range(N // BATCH):
        loss = make_elbo_loss(model, beta=float(schedule(jnp.int32(3 + i))))
        x = data[plan.batches[i]]
        grads = jax.grad(lambda q: loss(q, plan.loss_keys[i], x)[0])(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        p = optax.apply_updates(p, updates)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(p)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def test_constant_schedule_trains_bit_for_bit_as_the_plain_loss(model_params):
    model, params = model_params
    optimizer = optax.adam(1e-2)
    data = _data()
    state = TrainState.create(params, optimizer, jax.random.key(4))
    plain = make_train_epoch(make_elbo_loss(model, beta=1.0), optimizer, BATCH)(state, data)[0]
    const = make_train_epoch(make_elbo_loss(model, beta=kl_warmup(1.0, kind="constant")),
                             optimizer, BATCH)(state, data)[0]
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(const.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("factory", ["nvil", "sfe"])
def test_score_function_objectives_take_a_schedule(model_params, factory):
    model, params = model_params
    make = {"nvil": jvae.make_nvil_objective, "sfe": jvae.make_sfe_objective}[factory]
    schedule = kl_warmup(beta=1.0, steps=8, kind="cosine")
    obj = make(model, beta=schedule)
    assert jvae.accepts_step(obj) and not jvae.accepts_step(make(model))
    x, key = _data()[:BATCH], jax.random.key(9)
    est = obj.init(key, x)
    loss, (aux, _) = jax.jit(obj.loss)(params, est, key, x, step=jnp.int32(2))
    beta = float(schedule(jnp.int32(2)))
    ref, (ref_aux, _) = jax.jit(make(model, beta=beta).loss)(params, est, key, x)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-6)
    np.testing.assert_allclose(float(aux["beta"]), beta, rtol=1e-6)
    assert float(aux["elbo"]) == float(ref_aux["elbo"])


# --- free bits ---------------------------------------------------------------------------

def test_free_bits_rate_has_no_gradient_under_the_floor():
    kl = jnp.array([[0.1, 2.0, 0.4], [0.3, 1.0, 0.8]])     # batch means 0.2, 1.5, 0.6
    value, grad = jax.value_and_grad(free_bits_rate)(kl, 0.5)
    np.testing.assert_allclose(float(value), 0.5 + 1.5 + 0.6, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(grad), [[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    masked = free_bits_rate(kl, 0.0, mask=jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(float(masked), 0.1 + 2.0 + 0.4, rtol=1e-6)


def test_per_dimension_kl_sums_to_the_analytic_kl(model_params):
    model, params = model_params
    x = _data()[:BATCH]
    q = model.apply(params, x, method=jvae.VAE.encode)
    pz = model.apply(params, method=jvae.VAE.prior_distribution)
    per = per_dimension_kl(q, pz)
    assert per.shape == (BATCH, 3)
    np.testing.assert_allclose(np.asarray(per.sum(-1)), np.asarray(q.kl_divergence(pz)),
                               rtol=1e-5, atol=1e-6)


def test_free_bits_loss_value_gradient_and_true_elbo(model_params):
    model, params = model_params
    x, key = _data()[:BATCH], jax.random.key(7)
    plain = make_elbo_loss(model)
    lam = 0.05
    loss, aux = make_elbo_loss(model, free_bits=lam)(params, key, x)
    _, ref_aux = plain(params, key, x)
    np.testing.assert_allclose(float(aux["elbo"]), float(ref_aux["elbo"]), rtol=1e-5)
    q = model.apply(params, x, method=jvae.VAE.encode)
    pz = model.apply(params, method=jvae.VAE.prior_distribution)
    floor = jnp.sum(jnp.maximum(per_dimension_kl(q, pz).mean(0), lam))
    np.testing.assert_allclose(float(loss), float(ref_aux["distortion"] + floor), rtol=1e-5)
    # A floor above every dimension's KL: the rate gives no gradient at all, so the loss's
    # gradient is the distortion's (beta = 0).
    big = make_elbo_loss(model, free_bits=1e6)
    g_big = jax.grad(lambda p: big(p, key, x)[0])(params)
    g_d = jax.grad(lambda p: make_elbo_loss(model, beta=0.0)(p, key, x)[0])(params)
    for a, b in zip(jax.tree.leaves(g_big), jax.tree.leaves(g_d)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    g_plain = jax.grad(lambda p: plain(p, key, x)[0])(params)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(g_big),
                                                      jax.tree.leaves(g_plain)))


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan"), "1"])
def test_bad_free_bits_are_refused(model_params, value):
    with pytest.raises(ValueError, match="free_bits must be a non-negative finite"):
        make_elbo_loss(model_params[0], free_bits=value)


def test_free_bits_refuse_a_rate_that_does_not_split(model_params):
    with pytest.raises(ValueError, match="kl='mc'"):
        make_elbo_loss(model_params[0], free_bits=0.1, kl="mc")
    c = _config(**{"model.prior": "vamp"})
    model = builders.build_model(c, SHAPE)
    params = jvae.init_params(model, jax.random.key(0), _data()[:1])
    with pytest.raises(ValueError, match="splits per latent dimension"):
        make_elbo_loss(model, free_bits=0.1)(params, jax.random.key(0), _data()[:BATCH])


# --- config ------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, match", [
    ({"objective.beta_schedule": "linear"}, "kl_warmup_steps > 0"),
    ({"objective.beta_schedule": "sigmoid", "objective.kl_warmup_steps": 5},
     "Unknown beta schedule"),
    ({"objective.kl_warmup_steps": 5}, "objective.kl_warmup_steps = 5 would be ignored"),
    ({"objective.name": "iwae", "objective.beta_schedule": "linear",
      "objective.kl_warmup_steps": 5}, "objective.beta_schedule = 'linear' would be ignored"),
    ({"objective.free_bits": -1.0}, "free_bits must be finite and >= 0"),
    ({"objective.free_bits": float("inf")}, "objective.free_bits must be a finite"),
    ({"objective.free_bits": 0.5, "model.prior": "vamp"},
     "objective.free_bits = 0.5 would be ignored"),
    ({"objective.beta_schedule": "linear", "objective.kl_warmup_steps": 5,
      "objective.kl_warmup_start": -0.5}, "kl_warmup_start must be finite and >= 0"),
])
def test_config_refuses_bad_or_meaningless_settings(changes, match):
    with pytest.raises(ValueError, match=match) as err:
        _config(**changes)
    assert "\n" not in str(err.value)


def test_default_config_builds_the_plain_loss(model_params):
    c = default_config()
    assert (c.objective.beta_schedule, c.objective.free_bits) == ("constant", 0.0)
    loss = builders.build_loss(_config(), model_params[0])
    assert not jvae.accepts_step(loss)


WARM = {"objective.beta_schedule": "linear", "objective.kl_warmup_steps": 250}


def test_warmup_run_resumes_bit_for_bit(small_g2d_config, tmp_path):
    def cfg(epochs):
        c = small_g2d_config(num_epochs=epochs, checkpoint_every=1, **WARM)
        c.dataset.count = 1500    # 1050 training points: 16 steps per epoch
        return c

    train_and_evaluate(cfg(3), tmp_path / "full", progress=False)
    train_and_evaluate(cfg(2), tmp_path / "part", progress=False)
    train_and_evaluate(cfg(3), tmp_path / "part", resume=True, progress=False)
    a, b = restore_run(tmp_path / "full")[3], restore_run(tmp_path / "part")[3]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    betas = [r["train/beta"] for r in read_metrics(tmp_path / "full") if "train/beta" in r]
    resumed = [r["train/beta"] for r in read_metrics(tmp_path / "part") if "train/beta" in r]
    assert betas == resumed and len(betas) == 3 and betas[0] < betas[1] < betas[2] < 1.0
