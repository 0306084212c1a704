"""Keeping an epoch's last partial batch (drop_last=False): padded, masked, never recompiled.

The reference is the PyTorch ``DataLoader(drop_last=False)`` epoch: ``ceil(N / B)`` steps,
the last one over the ``N mod B`` remaining examples alone. A masked step over the padded
batch must be that step: the same loss value, the same gradient, the same control-variate
statistics, and the plan must visit every example exactly once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae.models import MLP, BernoulliHead, DiagGaussianHead, StandardNormalPrior, VAE
from jvae.models.vae import init_params
from jvae.objectives import (CVContext, accepts_mask, batch_mean, batch_std, centred_reward,
                             chain, learned_baseline, make_autoencoder_loss, make_elbo_loss,
                             make_nvil_objective, make_sfe_objective, scaled_reward,
                             self_critic)
from jvae.models.autoencoder import make_autoencoder
from jvae.runs import read_metrics, train_and_evaluate
from jvae.runs.steplog import DEV_FILE, STEPS_FILE, read_jsonl
from jvae.training import TrainState, make_train_epoch, steps_per_epoch


def test_steps_per_epoch_is_the_dataloader_length():
    assert steps_per_epoch(59000, 256) == 230                     # 120 examples dropped
    assert steps_per_epoch(59000, 256, drop_last=False) == 231    # PyTorch's len(loader)
    assert steps_per_epoch(512, 256, drop_last=False) == 2
    assert steps_per_epoch(10, 64, drop_last=False) == 1
    with pytest.raises(ValueError, match="drop_last=False"):
        steps_per_epoch(10, 64)
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        steps_per_epoch(10, 0, drop_last=False)


def test_batch_mean_and_std_count_only_the_real_examples():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 8)).astype(np.float32)          # [S, B]
    mask = np.array([1, 1, 0, 1, 1, 0, 0, 1], np.float32)
    real = values[:, mask > 0]
    np.testing.assert_allclose(batch_mean(jnp.asarray(values), jnp.asarray(mask)),
                               real.mean(), rtol=1e-6)
    np.testing.assert_allclose(batch_std(jnp.asarray(values), jnp.asarray(mask)), real.std(),
                               rtol=1e-5)
    poisoned = values.copy()
    poisoned[:, mask == 0] = np.nan                               # padding never leaks in
    assert np.isfinite(batch_mean(jnp.asarray(poisoned), jnp.asarray(mask)))
    g = jax.grad(lambda v: batch_mean(v, jnp.asarray(mask)))(jnp.asarray(poisoned))
    assert np.all(np.asarray(g)[:, mask == 0] == 0) and np.all(np.isfinite(g))
    # without a mask they are jnp.mean / jnp.std themselves
    assert batch_mean(jnp.asarray(values)) == jnp.mean(jnp.asarray(values))
    assert batch_std(jnp.asarray(values)) == jnp.std(jnp.asarray(values))


def test_masked_control_variates_see_only_the_real_examples():
    rng = np.random.default_rng(1)
    r = jnp.asarray(rng.normal(-50.0, 7.0, size=(1, 6)).astype(np.float32))
    x = jnp.asarray(rng.random((6, 4)).astype(np.float32))
    mask = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
    cv = chain(centred_reward(0.1), learned_baseline((5,)), scaled_reward(0.1))
    params, state = cv.init(jax.random.key(0), x)
    masked = cv.apply(params, state, r, CVContext(x=x, mask=mask))
    alone = cv.apply(params, state, r[:, :4], CVContext(x=x[:4]))
    np.testing.assert_allclose(masked[0][:, :4], alone[0], rtol=1e-6)       # signals
    for a, b in zip(jax.tree.leaves(masked[1]), jax.tree.leaves(alone[1])):  # running stats
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(masked[2], alone[2], rtol=1e-5)              # baseline loss
    for k in alone[3]:
        np.testing.assert_allclose(masked[3][k], alone[3][k], rtol=1e-5)


def _autoencoder():
    model = make_autoencoder((6,), latent_dim=2, hidden=(5,))
    data = jax.random.uniform(jax.random.key(1), (10, 6))
    params = init_params(model, jax.random.key(0), data[:1])
    return model, params, data


def test_a_masked_padded_batch_is_the_partial_batch_alone():
    model, params, data = _autoencoder()
    loss = make_autoencoder_loss(model)
    padded = jnp.concatenate([data[:3], data[:1]])               # 3 real rows + 1 padding
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    (v1, a1), g1 = jax.value_and_grad(loss, has_aux=True)(params, jax.random.key(2), padded,
                                                          mask=mask)
    (v2, a2), g2 = jax.value_and_grad(loss, has_aux=True)(params, jax.random.key(2), data[:3])
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(a1["squared_error"], a2["squared_error"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_an_epoch_keeping_the_last_batch_is_the_dataloader_epoch():
    """10 examples, batch 4, SGD: the jitted epoch with drop_last=False equals three plain
    steps over the plan's batches of 4, 4 and 2 real examples."""
    model, params, data = _autoencoder()
    loss = make_autoencoder_loss(model)
    opt = optax.sgd(0.5)
    epoch = make_train_epoch(loss, opt, 4, drop_last=False, step_metrics=True)
    state = TrainState.create(params, opt, jax.random.key(3))
    plan = epoch.plan(state, data)
    assert plan.batches.shape == (3, 4) and plan.mask.shape == (3, 4)
    np.testing.assert_array_equal(plan.mask.sum(axis=1), [4, 4, 2])
    seen = np.asarray(plan.batches)[np.asarray(plan.mask) > 0]
    assert sorted(seen.tolist()) == list(range(10))              # each example once
    new, metrics, aux = epoch(state, data)
    assert int(new.step) == 3 and aux["loss"].shape == (3,)
    p, opt_state = params, opt.init(params)
    for i in range(3):
        rows = np.asarray(plan.batches[i])[np.asarray(plan.mask[i]) > 0]
        (value, _), g = jax.value_and_grad(loss, has_aux=True)(p, plan.loss_keys[i], data[rows])
        np.testing.assert_allclose(aux["loss"][i], value, rtol=1e-5)
        updates, opt_state = opt.update(g, opt_state, p)
        p = optax.apply_updates(p, updates)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    epoch(new, data)                                             # a second epoch
    assert epoch.epoch._cache_size() == 1                        # compiled once


def test_drop_last_false_needs_a_loss_taking_a_mask():
    def plain(params, key, x):
        return jnp.mean(x), {"loss": jnp.mean(x)}
    assert not accepts_mask(plain)
    with pytest.raises(ValueError, match="drop_last=False pads the last batch.*plain"):
        make_train_epoch(plain, optax.sgd(0.1), 4, drop_last=False)
    model, _, _ = _autoencoder()
    vae = VAE((6,), StandardNormalPrior(2), MLP((5,)), DiagGaussianHead(2), MLP((5,)),
              BernoulliHead((6,)))
    for objective in (make_elbo_loss(vae), make_sfe_objective(vae), make_nvil_objective(vae),
                      make_autoencoder_loss(model)):
        assert accepts_mask(objective)


def test_sfe_with_self_critic_on_a_masked_batch_matches_its_aux_means():
    """The score-function objective's reported means cover the real rows only."""
    vae = VAE((6,), StandardNormalPrior(2), MLP((5,)), DiagGaussianHead(2), MLP((5,)),
              BernoulliHead((6,)))
    x = (jax.random.uniform(jax.random.key(1), (4, 6)) > 0.5).astype(jnp.float32)
    params = init_params(vae, jax.random.key(0), x)
    obj = make_sfe_objective(vae, control_variates=(self_critic(), centred_reward()))
    est = obj.init(jax.random.key(2), x)
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    _, (aux, new) = obj.loss(params, est, jax.random.key(3), x, mask=mask)
    _, (aux_all, _) = obj.loss(params, est, jax.random.key(3), x)
    # the same draws: the signal of the first two rows, averaged over them alone; the
    # running mean (decay 0.9, starting at 0) takes a tenth of the masked mean of what the
    # self-critic leaves
    assert aux["signal_mean"] != aux_all["signal_mean"]
    np.testing.assert_allclose(new.state[1].mean, 0.1 * aux["centred_signal_mean"], rtol=1e-5)


def test_a_run_with_drop_last_false_takes_the_dataloader_steps(tmp_path, small_g2d_config):
    """gaussian2d cut to 1000 points, 500 of them a dev split, batch 64: 8 steps an epoch
    (7 full + 52 examples), chunked by dev assessments every 3 steps."""
    config = small_g2d_config(**{"num_epochs": 2, "dataset.limit_train": 1000,
                                 "dataset.dev_size": 500, "eval.every_steps": 3,
                                 "eval.dev_final_ll_samples": 0, "drop_last": False})
    train_and_evaluate(config, tmp_path / "run", progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [8, 16]
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / STEPS_FILE)] == list(range(1, 17))
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / DEV_FILE)] == [0, 3, 6, 8, 11,
                                                                          14, 16]
