"""The training programs' compiler option (``jvae.training.compiler``): XLA's region analysis
on the CPU, per program. It only drops copies: the epoch compiled with it equals the epoch
compiled without it bit for bit, and the epoch run op by op (compiled against eager)."""

import jax
import numpy as np
import pytest

import jvae
from experiments.configs import pytorch_example
from jvae.training import TrainState, make_train_epoch
from jvae.training import compiler


@pytest.fixture
def fresh_options():
    compiler.training_compiler_options.cache_clear()
    yield compiler.training_compiler_options
    compiler.training_compiler_options.cache_clear()


def test_the_option_is_set_on_the_cpu_and_can_be_turned_off(fresh_options, monkeypatch):
    assert jax.default_backend() == "cpu"
    assert fresh_options() == {compiler.REGION_ANALYSIS: True}
    fresh_options.cache_clear()
    monkeypatch.setenv("JVAE_XLA_REGION_ANALYSIS", "0")
    assert fresh_options() == {}


def test_the_epoch_is_the_same_with_and_without_it_and_op_by_op():
    x = np.random.default_rng(0).random((32, 28, 28, 1)).astype(np.float32)
    config = pytorch_example.get_config()
    model = jvae.build_model(config, x.shape[1:])
    optimizer = jvae.build_optimizer(config)
    loss = jvae.build_loss(config, model)
    state = TrainState.create(jvae.init_params(model, jax.random.key(0), x[:1]), optimizer,
                              jax.random.key(1))
    raw = make_train_epoch(loss, optimizer, 16, model=model, jit=False).epoch
    with_option = jax.jit(raw, compiler_options={compiler.REGION_ANALYSIS: True})
    runs = {"with": with_option(state, x), "without": jax.jit(raw)(state, x)}
    with jax.disable_jit():
        runs["eager"] = raw(state, x)
    leaves = {k: jax.tree.leaves(v[0].params) + [v[1]["loss"]] for k, v in runs.items()}
    assert all(np.array_equal(a, b) for a, b in zip(leaves["with"], leaves["without"]))
    for a, b in zip(leaves["with"], leaves["eager"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the option is what make_train_epoch's compiled epoch gets
    assert compiler.training_compiler_options() == {compiler.REGION_ANALYSIS: True}
