"""Stateful objectives through the jitted epoch, the runner, checkpoints and vmapped seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.runs import builders

from jvae.runs import schema
from jvae.runs import read_metrics, restore_run, train_and_evaluate
from jvae.models.vae import init_params
from jvae.objectives import (as_objective, centred_reward, learned_baseline, make_elbo_loss,
                             make_sfe_objective,
                             scaled_reward, self_critic)
from jvae.training import TrainState, make_optimizer, make_train_epoch


def _tiny(small_g2d_config, **changes):
    cfg = small_g2d_config(**changes)
    cfg.dataset.count = 1500
    return cfg


@pytest.fixture(scope="module")
def sfe_setup(small_g2d_config):
    cfg = _tiny(small_g2d_config)
    data = builders.load_data(cfg)
    model = builders.build_model(cfg, data.train.shape[1:])
    obj = make_sfe_objective(model, control_variates=(self_critic(), centred_reward(0.5),
                                                      scaled_reward(0.5),
                                                      learned_baseline((8,))))
    return model, obj, jnp.asarray(data.train)


def _state(model, obj, train, optimizer):
    key = jax.random.key(0)
    return TrainState.create(init_params(model, key, train[:1]), optimizer, key,
                             obj.init(jax.random.key(1), train[:1]))


def test_estimator_state_is_threaded_through_the_epoch_with_and_without_jit(sfe_setup):
    model, obj, train = sfe_setup
    train = train[:640]          # 10 steps: the eager epoch runs every op on its own
    opt = make_optimizer(1e-3)
    state = _state(model, obj, train, opt)
    steps = len(train) // 64
    jitted, metrics, losses = make_train_epoch(obj, opt, 64)(state, train)
    eager, _, _ = make_train_epoch(obj, opt, 64, jit=False)(state, train)
    for a, b in zip(jax.tree.leaves(jitted._replace(key=0)), jax.tree.leaves(eager._replace(key=0))):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=2e-4, atol=1e-5)
    _, running_mean, running_std, _ = jitted.estimator.state
    assert int(running_mean.count) == steps and int(running_std.count) == steps
    assert float(running_mean.mean) != 0.0 and float(running_std.std) >= 1.0
    # The learned baseline is trained (its parameters moved) by the same optimiser.
    before = jax.tree.leaves(state.estimator.params)
    after = jax.tree.leaves(jitted.estimator.params)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    for key in ("signal_mean", "signal_std", "centred_signal_std", "cv/baseline_loss",
                "cv/running_mean", "cv/running_std", "elbo", "distortion", "rate"):
        assert np.isfinite(float(metrics[key])), key
    assert losses.shape == (steps,)


def test_baseline_learning_rate_is_its_own_parameter_group(sfe_setup):
    model, obj, train = sfe_setup
    opt = make_optimizer(1e-2, param_groups={"baseline": 1e-9})
    state = _state(model, obj, train, opt)
    new, _, _ = make_train_epoch(obj, opt, 64)(state, train)
    for a, b in zip(jax.tree.leaves(state.estimator.params), jax.tree.leaves(new.estimator.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)          # lr 1e-9: frozen in effect
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.params),
                                                   jax.tree.leaves(new.params))]
    assert any(moved)


def test_plain_losses_still_train_as_objectives(sfe_setup):
    model, _, train = sfe_setup
    loss = make_elbo_loss(model)
    opt = make_optimizer(1e-3)
    key = jax.random.key(0)
    state = TrainState.create(init_params(model, key, train[:1]), opt, key)
    a, _, _ = make_train_epoch(loss, opt, 64)(state, train)
    b, _, _ = make_train_epoch(as_objective(loss), opt, 64)(state, train)
    for x, y in zip(jax.tree.leaves(a._replace(key=0)), jax.tree.leaves(b._replace(key=0))):
        np.testing.assert_array_equal(x, y)


SFE_CHANGES = {"objective.name": "sfe",
               "objective.control_variates": ("self_critic", "centred", "baseline"),
               "objective.baseline_hidden": (8,), "objective.baseline_learning_rate": 3e-3}


def test_sfe_run_resumes_exactly_with_its_estimator_state(small_g2d_config, tmp_path):
    full = _tiny(small_g2d_config, num_epochs=3, checkpoint_every=1, **SFE_CHANGES)
    train_and_evaluate(full, tmp_path / "full", progress=False)
    part = _tiny(small_g2d_config, num_epochs=2, checkpoint_every=1, **SFE_CHANGES)
    train_and_evaluate(part, tmp_path / "part", progress=False)
    train_and_evaluate(full, tmp_path / "part", resume=True, progress=False)
    a, b = restore_run(tmp_path / "full")[3], restore_run(tmp_path / "part")[3]
    assert int(a.estimator.state[1].count) == int(a.step)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    record = read_metrics(tmp_path / "full")[-1]
    for key in ("train/signal_std", "train/cv/baseline_loss", "train/cv/running_mean",
                "eval/elbo"):
        assert np.isfinite(record[key]), key


def test_vmapped_seeds_carry_their_own_estimator_state(small_g2d_config, tmp_path):
    multi = _tiny(small_g2d_config, num_epochs=2, num_seeds=2, seed=3, checkpoint_every=0,
                  **SFE_CHANGES)
    train_and_evaluate(multi, tmp_path / "multi", progress=False)
    stacked = restore_run(tmp_path / "multi")[3]
    single = _tiny(small_g2d_config, num_epochs=2, seed=4, checkpoint_every=0,
                   **{"dataset.order_seed": 3}, **SFE_CHANGES)
    train_and_evaluate(single, tmp_path / "single", progress=False)
    own = restore_run(tmp_path / "single")[3]
    for tree_a, tree_b in ((own.params, stacked.params), (own.estimator, stacked.estimator)):
        for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[1], rtol=2e-4, atol=2e-5)
    means = np.asarray(stacked.estimator.state[1].mean)
    assert means.shape == (2,) and means[0] != means[1]


@pytest.mark.parametrize("changes", [
    {"objective.name": "iwae", "objective.num_samples": 5, "objective.estimator": "dreg"},
    {"objective.name": "iwae", "objective.num_samples": 3, "objective.estimator": "stl"},
    {"objective.name": "vimco", "objective.num_samples": 4},
    {"objective.name": "mixture", "model.posterior": "mixture",
     "objective.control_variates": ("self_critic", "centred")},
    {"objective.name": "sfe", "model.posterior": "mixture", "objective.num_samples": 2,
     "objective.control_variates": ("leave_one_out", "scaled")},
    {"objective.name": "sfe", "objective.kl": "analytic"},
])
def test_every_objective_trains_from_the_config(small_g2d_config, tmp_path, changes):
    cfg = _tiny(small_g2d_config, num_epochs=1, checkpoint_every=0, **changes)
    record = train_and_evaluate(cfg, tmp_path, progress=False)
    for key in ("train/loss", "eval/elbo", "eval/rate"):
        assert np.isfinite(record[key]), key


@pytest.mark.parametrize("changes, match", [
    ({"objective.name": "elbo", "model.posterior": "mixture"}, "reparameterisable"),
    ({"objective.name": "iwae", "model.posterior": "mixture"}, "reparameterisable"),
    ({"objective.name": "mixture"}, "posterior='mixture'"),
    ({"objective.name": "sfe", "objective.control_variates": ("centered",)}, "control variate"),
    ({"objective.name": "elbo", "objective.control_variates": ("centred",)}, "score-function"),
    ({"objective.name": "vimco", "objective.num_samples": 1}, "num_samples >= 2"),
    ({"objective.name": "sfe", "objective.control_variates": ("leave_one_out",)},
     "num_samples >= 2"),
    ({"objective.name": "iwae", "objective.estimator": "drg"}, "IWAE estimator"),
    ({"objective.name": "sfe", "objective.cv_decay": 1.0}, "cv_decay"),
    ({"objective.name": "mixture", "model.posterior": "mixture",
      "objective.control_variates": ("scaled",)}, "does not apply"),
    ({"objective.name": "vimco", "objective.num_samples": 3,
      "objective.control_variates": ("vimco", "scaled")}, "does not apply"),
    ({"objective.name": "sfe", "objective.kl": "analytic",
      "objective.control_variates": ("scaled",)}, "kl='mc'"),
    ({"objective.name": "reinforce"}, "objective"),
])
def test_invalid_objective_configs_are_rejected(small_g2d_config, changes, match):
    with pytest.raises(ValueError, match=match):
        schema.validate_config(small_g2d_config(**changes))


def test_iwae_schedule_stages():
    schedule = builders.iwae_schedule(steps_per_epoch=10, num_stages=4)
    # Stage i covers 3^i epochs: epochs [0,1), [1,4), [4,13), [13,40).
    for epoch, stage in ((0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (100, 3)):
        np.testing.assert_allclose(schedule(jnp.asarray(epoch * 10)), 10 ** (-stage / 7),
                                   rtol=1e-6)
    assert builders.iwae_epochs(8) == 3280


def test_log_likelihood_only_every_ll_every_epochs(small_g2d_config, tmp_path):
    cfg = _tiny(small_g2d_config, num_epochs=3, checkpoint_every=0,
                **{"eval.ll_samples": 5, "eval.ll_every": 2})
    train_and_evaluate(cfg, tmp_path, progress=False)
    records = read_metrics(tmp_path)
    assert ["eval/log_likelihood" in r for r in records] == [False, True, True]
    assert all("eval/elbo" in r for r in records)


def test_weight_decay_and_rmsprop_decay_options():
    params = {"w": jnp.ones(3)}
    zero = {"w": jnp.zeros(3)}
    opt = make_optimizer(0.1, name="sgd", weight_decay=0.5)
    updates, _ = opt.update(zero, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * np.ones(3), rtol=1e-6)
    grads = {"w": jnp.full(3, 2.0)}
    for decay in (0.9, 0.99):
        opt = make_optimizer(0.1, name="rmsprop", rmsprop_decay=decay, eps=1e-12)
        updates, _ = opt.update(grads, opt.init(params), params)
        # First step: nu = (1 - decay) g^2, update = -lr g / sqrt(nu).
        np.testing.assert_allclose(updates["w"], -0.1 / np.sqrt(1 - decay) * np.ones(3),
                                   rtol=1e-4)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer(0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="rmsprop_decay"):
        make_optimizer(0.1, name="rmsprop", rmsprop_decay=1.0)
