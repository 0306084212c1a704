"""Tests for jvae.training: the scanned epoch, dynamic binarisation, optimisers, NaN location.

A tiny VAE (2-D data, 16 hidden units) is compiled once per module; the optimiser and
binarisation checks use toy losses on hand-made parameter trees, which compile in moments.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae.runs import builders
from jvae.models.vae import init_params
from jvae.training import (
    NonFiniteLossError,
    TrainState,
    first_non_finite,
    make_optimizer,
    make_train_epoch,
)

BATCH = 64


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                      for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def tiny(small_g2d_config):
    """The small gaussian2d VAE (2-16-2 / 2-16-4) on 10500 correlated 2-D points.

    Built from the config exactly as a run builds it, so its compiled epoch is shared with
    test_experiment's runs.
    """
    cfg = small_g2d_config(**{"dataset.mode": "multivariate"})
    datasets = builders.load_data(cfg)
    model = builders.build_model(cfg, datasets.train.shape[1:])
    loss_fn = builders.build_loss(cfg, model)
    optimizer = builders.build_optimizer(cfg)
    params = init_params(model, jax.random.key(0), datasets.train[:1])
    state = TrainState.create(params, optimizer, jax.random.key(1))
    data = jax.device_put(jnp.asarray(datasets.train))
    epoch = make_train_epoch(loss_fn, optimizer, BATCH)
    assert cfg.batch_size == BATCH
    return types.SimpleNamespace(model=model, loss_fn=loss_fn, optimizer=optimizer, state=state,
                                 data=data, epoch=epoch, n=len(datasets.train),
                                 num_steps=len(datasets.train) // BATCH)


# ------------------------------------------------------------------------------ the epoch


def test_epoch_is_one_scan_over_n_div_b_steps(tiny):
    plain = make_train_epoch(tiny.loss_fn, tiny.optimizer, BATCH, jit=False)
    jaxpr = jax.make_jaxpr(plain)(tiny.state, tiny.data).jaxpr
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1, [e.primitive.name for e in jaxpr.eqns]
    assert scans[0].params["length"] == tiny.num_steps == tiny.n // BATCH == 164
    assert hasattr(tiny.epoch, "lower")                     # the default epoch is jitted


def test_epoch_checks_its_data_once_per_array_and_names_a_nan(tiny):
    tiny.epoch(tiny.state, tiny.data)                     # checked (and remembered) here
    # The same array again: no check, so not even the explicit fetch of its min/max.
    with jax.transfer_guard("disallow_explicit"):
        tiny.epoch(tiny.state, tiny.data)
    epoch = make_train_epoch(tiny.loss_fn, tiny.optimizer, BATCH, model=tiny.model)
    bad = tiny.data.at[7, 1].set(jnp.nan)
    with pytest.raises(ValueError, match=r"training data: 1 non-finite .*\(7, 1\)"):
        epoch(tiny.state, bad)
    with pytest.raises(ValueError, match=r"expected shape \[N, 2\]"):
        epoch(tiny.state, tiny.data[:, :1])


def test_epoch_advances_step_and_returns_per_step_losses(tiny):
    # Arguments already on the device: the compiled epoch needs no host transfer at all.
    with jax.transfer_guard("disallow"):
        state, metrics, losses = tiny.epoch(tiny.state, tiny.data)
    assert int(state.step) == int(tiny.state.step) + tiny.num_steps
    assert losses.shape == (tiny.num_steps,)
    assert {"loss", "elbo", "distortion", "rate"} <= set(metrics)
    np.testing.assert_allclose(float(metrics["loss"]), float(np.mean(losses)), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["elbo"]),
                               -(float(metrics["distortion"]) + float(metrics["rate"])),
                               rtol=1e-5)
    assert not np.array_equal(jax.random.key_data(state.key),
                              jax.random.key_data(tiny.state.key))   # next epoch, new key
    assert not _leaves_equal(state.params, tiny.state.params)


def test_loss_decreases_over_epochs(tiny):
    state, means = tiny.state, []
    for _ in range(3):
        state, metrics, _ = tiny.epoch(state, tiny.data)
        means.append(float(metrics["loss"]))
    assert int(state.step) == 3 * tiny.num_steps
    assert np.all(np.isfinite(means))
    assert means[-1] < means[0] - 0.5, means


def test_same_state_and_data_is_bit_identical_other_key_differs(tiny):
    a = tiny.epoch(tiny.state, tiny.data)
    b = tiny.epoch(tiny.state, tiny.data)
    assert _leaves_equal(a[0].params, b[0].params)
    assert _leaves_equal(a[0].opt_state, b[0].opt_state)
    np.testing.assert_array_equal(np.asarray(a[2]), np.asarray(b[2]))
    other = tiny.epoch(tiny.state._replace(key=jax.random.key(99)), tiny.data)
    assert not _leaves_equal(a[0].params, other[0].params)
    assert not np.array_equal(np.asarray(a[2]), np.asarray(other[2]))


def test_batch_size_validation(tiny):
    with pytest.raises(ValueError, match="larger than the training set"):
        make_train_epoch(tiny.loss_fn, tiny.optimizer, tiny.n + 1)(tiny.state, tiny.data)
    for bad in (0, -8):
        with pytest.raises(ValueError, match="batch_size"):
            make_train_epoch(tiny.loss_fn, tiny.optimizer, bad)


# ------------------------------------------------------------------- dynamic binarisation


def _probe_loss(params, key, x):
    """Least squares to the batch; aux records what the step saw."""
    del key
    loss = jnp.mean((x - params["w"]) ** 2)
    return loss, {"loss": loss, "max_x_1mx": jnp.max(x * (1 - x)), "mean_x": jnp.mean(x),
                  "sum_x": jnp.sum(x)}


@pytest.fixture(scope="module")
def grey():
    """512 grey 'images' [512, 2, 2, 1] with levels in (0.05, 0.95); 8 full batches."""
    x = np.random.default_rng(0).uniform(0.05, 0.95, size=(512, 2, 2, 1)).astype(np.float32)
    return jnp.asarray(x)


def _probe_state(key=0):
    return TrainState.create({"w": jnp.zeros((2, 2, 1))}, PROBE_OPT, jax.random.key(key))


PROBE_OPT = optax.sgd(0.1)


@pytest.fixture(scope="module")
def probe_epochs():
    """(dynamic, grey) epochs of the probe loss, compiled once for the module."""
    return (make_train_epoch(_probe_loss, PROBE_OPT, BATCH, dynamic_binarization=True),
            make_train_epoch(_probe_loss, PROBE_OPT, BATCH, dynamic_binarization=False))


def test_dynamic_binarization_feeds_binary_batches(grey, probe_epochs):
    dynamic, static = probe_epochs
    state = _probe_state()
    s1, m_dyn, _ = dynamic(state, grey)
    _, m_grey, _ = static(state, grey)
    assert float(m_dyn["max_x_1mx"]) == 0.0          # every element of every batch is 0 or 1
    assert float(m_grey["max_x_1mx"]) > 0.1          # control: grey data passes through as is
    # Bernoulli(x): the binarised mean matches the grey mean (2048 draws, sd ~ 0.01).
    assert abs(float(m_dyn["mean_x"]) - float(jnp.mean(grey))) < 0.05
    # 512 = 8 * 64, so each epoch sees every example once: the same binarisation in two
    # epochs would give the same total; a fresh draw per epoch does not.
    _, m_next, _ = dynamic(s1, grey)
    assert float(m_next["sum_x"]) != float(m_dyn["sum_x"])


def test_dynamic_binarization_is_reproducible_from_the_state_key(grey, probe_epochs):
    dynamic = probe_epochs[0]
    a = dynamic(_probe_state(key=3), grey)
    b = dynamic(_probe_state(key=3), grey)
    c = dynamic(_probe_state(key=4), grey)
    assert _leaves_equal(a[0].params, b[0].params)
    assert float(a[1]["sum_x"]) == float(b[1]["sum_x"])
    np.testing.assert_array_equal(np.asarray(a[2]), np.asarray(b[2]))
    assert not _leaves_equal(a[0].params, c[0].params)
    assert not np.array_equal(np.asarray(a[2]), np.asarray(c[2]))


# ------------------------------------------------------------------------- make_optimizer


def _flax_like_tree():
    """Nested {"params": {module: {layer: {kernel, bias}}}} like Flax's, all leaves 1.0."""
    layer = lambda: {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))}  # noqa: E731
    return {"params": {"encoder": {"dense_0": layer()}, "posterior": {"loc": layer()},
                       "decoder": {"dense_0": layer()}}}


def _run_steps(opt, params, num_steps=5, target=5.0):
    """``num_steps`` optimiser steps on ``sum (p - target)^2``; returns the final params."""

    @jax.jit
    def run(params):
        def body(_, carry):
            p, s = carry
            g = jax.grad(lambda q: sum(jnp.sum((v - target) ** 2)
                                       for v in jax.tree.leaves(q)))(p)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s
        return jax.lax.fori_loop(0, num_steps, body, (params, opt.init(params)))[0]

    return run(params)


def _moved(before, after, module):
    return np.array([np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(
        jax.tree.leaves(before["params"][module]), jax.tree.leaves(after["params"][module]))])


def test_param_groups_get_their_own_learning_rates():
    params = _flax_like_tree()
    opt = make_optimizer(0.1, param_groups={"enc.*": 1e-7, "decoder": 0.3})
    new = _run_steps(opt, params)
    # Adam moves each parameter by about lr per step while the gradient keeps its sign
    # (float32 spacing near 1.0 is 1.2e-7, hence the loose bound on the tiny group).
    assert np.all(_moved(params, new, "encoder") < 1e-5)
    np.testing.assert_allclose(_moved(params, new, "posterior"), 5 * 0.1, rtol=0.02)
    np.testing.assert_allclose(_moved(params, new, "decoder"), 5 * 0.3, rtol=0.02)


def test_param_groups_match_module_names_of_a_real_vae(tiny):
    params = tiny.state.params
    assert set(params["params"]) >= {"encoder", "posterior", "decoder", "likelihood"}
    new = _run_steps(make_optimizer(1e-2, param_groups={"posterior": 1e-9}), params)
    for module in params["params"]:
        moved = _moved(params, new, module)
        if module == "posterior":
            assert np.all(moved < 1e-5), moved
        else:
            np.testing.assert_allclose(moved, 5 * 1e-2, rtol=0.05, err_msg=module)


def test_grad_clip_bounds_the_update():
    params = {"w": jnp.zeros(4)}
    big = {"w": jnp.array([30.0, -40.0, 0.0, 0.0])}          # global norm 50
    small = {"w": jnp.array([0.03, -0.04, 0.0, 0.0])}        # global norm 0.05
    clipped = make_optimizer(1.0, name="sgd", grad_clip=0.5)
    unclipped = make_optimizer(1.0, name="sgd")
    u, _ = clipped.update(big, clipped.init(params), params)
    np.testing.assert_allclose(float(optax.tree.norm(u)), 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.01 * np.asarray(big["w"]), rtol=1e-5)
    u, _ = unclipped.update(big, unclipped.init(params), params)
    np.testing.assert_allclose(float(optax.tree.norm(u)), 50.0, rtol=1e-5)
    u, _ = clipped.update(small, clipped.init(params), params)   # below the bound: untouched
    np.testing.assert_allclose(np.asarray(u["w"]), -np.asarray(small["w"]), rtol=1e-6)


def test_schedule_multiplies_the_learning_rate():
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([1.0, -2.0, 3.0])}
    opt = make_optimizer(0.1, name="sgd", schedule=lambda count: 0.25)
    u, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.025 * np.asarray(grads["w"]), rtol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "adagrad", "sgd"])
def test_every_named_optimizer_takes_a_step(name):
    params = {"w": jnp.ones(3)}
    opt = make_optimizer(1e-2, name=name)
    u, _ = opt.update({"w": jnp.ones(3)}, opt.init(params), params)
    assert np.all(np.asarray(u["w"]) < 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(learning_rate=1e-3, name="lamb"), "adagrad"),          # lists the valid names
    (dict(learning_rate=0.0), "positive"),
    (dict(learning_rate=-1e-3), "positive"),
    (dict(learning_rate=float("nan")), "positive"),
    (dict(learning_rate=1e-3, param_groups={"encoder": 0.0}), "encoder"),
    (dict(learning_rate=1e-3, grad_clip=-1.0), "grad_clip"),
])
def test_make_optimizer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(**kwargs)


# -------------------------------------------------------------------- non-finite losses


def test_first_non_finite():
    assert first_non_finite([1.0, 2.0, np.nan, np.inf]) == 2
    assert first_non_finite(np.array([np.inf, 1.0])) == 0
    assert first_non_finite(jnp.array([0.0, -jnp.inf])) == 1
    assert first_non_finite([1.0, 2.0]) is None
    assert first_non_finite([]) is None


def test_non_finite_loss_error_names_epoch_and_step():
    err = NonFiniteLossError(3, 5, 37, "detail here.")
    assert isinstance(err, FloatingPointError)
    assert (err.epoch, err.step_in_epoch, err.global_step) == (3, 5, 37)
    msg = str(err)
    assert "epoch 3" in msg and "step 5" in msg and "global step 37" in msg
    assert "detail here." in msg


def test_diverging_epoch_reports_the_first_non_finite_step():
    """SGD with lr 1e10 on w^2: w grows by 2e10 per step, so the loss is 1, 4e20, then
    1.6e41, which overflows float32: step 2 is the first non-finite one."""
    def loss_fn(params, key, x):
        loss = jnp.sum(params["w"] ** 2)
        return loss, {"loss": loss}

    opt = optax.sgd(1e10)
    state = TrainState.create({"w": jnp.ones(())}, opt, jax.random.key(0))
    _, _, losses = make_train_epoch(loss_fn, opt, 8)(state, jnp.zeros((64, 1)))
    losses = np.asarray(losses)
    assert losses.shape == (8,)
    assert np.all(np.isfinite(losses[:2])) and not np.isfinite(losses[2])
    assert first_non_finite(losses) == 2
