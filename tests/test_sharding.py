"""Tests for jvae.training.sharding: data parallelism and seeds spread over 8 (virtual) CPU devices.

``--xla_force_host_platform_device_count=8`` only takes effect before JAX initialises, and
pytest's process already runs JAX on one CPU device, so the multi-device checks run once in a
subprocess (``_SCRIPT`` below) that prints a JSON report; the tests assert on that report.
The argument checks run in-process on the single device. Observed: data-parallel and
seed-sharded parameters agree with single-device ones to ~1e-7 (relative) after 32 steps.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.training.sharding import (
    batch_sharding,
    check_batch_divisible,
    make_mesh,
    replicate,
    replicated,
    shard_leading_axis,
)
from jvae.training import TrainState

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_DEVICES = 8
TOL = 1e-4          # max |sharded - unsharded| relative to the largest |parameter|

_SCRIPT = r'''
import json
import jax, jax.numpy as jnp, numpy as np, optax
from jvae import MLP, VAE, DiagGaussianHead, GaussianHead, StandardNormalPrior
from jvae import init_params, make_elbo_loss, make_train_epoch, TrainState
from jvae.training.sharding import batch_sharding, make_mesh, replicate, shard_leading_axis

BATCH, N, D, SEEDS = 64, 1024, 8, 8
out = {"num_devices": len(jax.devices())}

# Correlated 8-D Gaussian data (rank-2 signal plus noise): 16 steps per epoch.
rng = np.random.default_rng(0)
w = rng.normal(size=(2, D))
data = (rng.normal(size=(N, 2)) @ w + 0.3 * rng.normal(size=(N, D))).astype(np.float32)
model = VAE((D,), StandardNormalPrior(2), MLP((32,)), DiagGaussianHead(2), MLP((32,)),
            GaussianHead((D,), scale="learned"))
loss_fn = make_elbo_loss(model)
opt = optax.adam(3e-3)
order_key = jax.random.key(7)

@jax.jit
def new_state(seed):
    params = init_params(model, jax.random.key(seed), data[:1])
    return TrainState.create(params, opt, jax.random.fold_in(jax.random.key(1000), seed))

def max_diff(a, b):
    """(max |a - b|, that divided by max |b|) over all leaves, in NumPy (nothing to compile)."""
    la = [np.asarray(x) for x in jax.tree.leaves(a)]
    lb = [np.asarray(x) for x in jax.tree.leaves(b)]
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(la, lb))
    return diff, diff / max(float(np.max(np.abs(y))) for y in lb)

def two_epochs(epoch, state, x):
    """Compile ``epoch`` once for these arguments, run two epochs; also return the HLO."""
    compiled = epoch.lower(state, x, order_key).compile()
    for _ in range(2):
        state, metrics, _ = compiled(state, x, order_key)
    return state, float(np.mean(np.asarray(metrics["loss"]))), compiled.as_text()

# (a) one device, (b) batch split over the 8 devices, state and data replicated.
mesh = make_mesh()
plain = make_train_epoch(loss_fn, opt, BATCH)
sharded = make_train_epoch(loss_fn, opt, BATCH, batch_sharding=batch_sharding(mesh))
state0 = new_state(0)
s_plain, loss_plain, _ = two_epochs(plain, state0, jnp.asarray(data))
state_r, data_r = replicate((state0, data), mesh)
out["key_replicated"] = state_r.key.sharding.is_fully_replicated
out["key_num_devices"] = len(state_r.key.sharding.device_set)
s_shard, loss_shard, hlo = two_epochs(sharded, state_r, data_r)
out["dp_hlo_all_reduce"] = "all-reduce" in hlo
# Each device sees an [8, 8] slice of the [64, 8] batch inside the step.
out["dp_hlo_local_batch"] = f"f32[{BATCH // mesh.size},{D}]" in hlo
leaf = jax.tree.leaves(s_shard.params)[0]
out["dp_params_replicated"] = leaf.sharding.is_fully_replicated
out["dp_params_num_devices"] = len(leaf.sharding.device_set)
out["dp_max_abs_diff"], out["dp_max_rel_diff"] = max_diff(s_shard.params, s_plain.params)
out["dp_loss"] = [loss_plain, loss_shard]

# Seeds: a stack of 8 states, one per device, trained by a vmapped epoch.
stack = jax.jit(jax.vmap(new_state))(jnp.arange(SEEDS))
spread = shard_leading_axis(stack, mesh)
shards = jax.tree.leaves(spread.params)[0].addressable_shards
out["seed_shard_devices"] = sorted(s.device.id for s in shards)
out["seed_shard_rows"] = sorted(s.index[0].start for s in shards)
out["seed_shard_shape"] = list(shards[0].data.shape[:1])
out["seed_key_sharded"] = not spread.key.sharding.is_fully_replicated
vepoch = jax.jit(jax.vmap(make_train_epoch(loss_fn, opt, BATCH, jit=False),
                          in_axes=(0, None, None)))
v_plain, _, _ = two_epochs(vepoch, stack, jnp.asarray(data))
v_shard, _, vhlo = two_epochs(vepoch, spread, data_r)
vleaf = jax.tree.leaves(v_shard.params)[0]
out["seed_out_spec"] = list(vleaf.sharding.spec)
out["seed_out_num_devices"] = len(vleaf.sharding.device_set)
out["seed_hlo_all_reduce"] = "all-reduce" in vhlo
out["seed_max_abs_diff"], out["seed_max_rel_diff"] = max_diff(v_shard.params, v_plain.params)
print("JSON" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    script = tmp_path_factory.mktemp("sharding") / "check_sharding.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ)
    # Level-0 backend optimisation halves the compile time of the four epochs on CPU; both
    # sides of every comparison are compiled with the same flags.
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={NUM_DEVICES}"
                        " --xla_backend_optimization_level=0").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1]
    return json.loads(line[len("JSON"):])


def test_subprocess_has_eight_devices(report):
    assert report["num_devices"] == NUM_DEVICES


def test_replicate_handles_typed_keys(report):
    assert report["key_replicated"]
    assert report["key_num_devices"] == NUM_DEVICES


def test_data_parallel_epoch_splits_batch_and_all_reduces(report):
    assert report["dp_hlo_all_reduce"]
    assert report["dp_hlo_local_batch"]
    assert report["dp_params_replicated"]
    assert report["dp_params_num_devices"] == NUM_DEVICES


def test_data_parallel_matches_single_device(report):
    assert report["dp_max_rel_diff"] < TOL, report["dp_max_abs_diff"]
    loss_plain, loss_shard = report["dp_loss"]
    assert abs(loss_plain - loss_shard) < 1e-3 * max(1.0, abs(loss_plain))


def test_shard_leading_axis_puts_one_seed_per_device(report):
    assert report["seed_shard_devices"] == list(range(NUM_DEVICES))
    assert report["seed_shard_rows"] == list(range(NUM_DEVICES))
    assert report["seed_shard_shape"] == [1]
    assert report["seed_key_sharded"]


def test_vmapped_seeds_sharded_match_unsharded(report):
    assert report["seed_out_num_devices"] == NUM_DEVICES
    assert report["seed_out_spec"][:1] == ["data"]
    assert not report["seed_hlo_all_reduce"]       # independent seeds never communicate
    assert report["seed_max_rel_diff"] < TOL, report["seed_max_abs_diff"]


# ----------------------------------------------------------- single device, in-process


def test_make_mesh_rejects_bad_counts():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"only {n} are available"):
        make_mesh(n + 1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="positive integer"):
            make_mesh(bad)


def test_single_device_mesh_is_a_no_op():
    mesh = make_mesh(1, axis_name="batch")
    assert mesh.shape == {"batch": 1}
    state = TrainState({"w": jnp.ones((3, 2))}, (), jnp.zeros((), jnp.int32),
                       jax.random.key(0))
    rep = replicate(state, mesh)
    assert rep.key.dtype == state.key.dtype
    assert jnp.array_equal(jax.random.key_data(rep.key), jax.random.key_data(state.key))
    assert rep.params["w"].sharding == replicated(mesh)
    stacked = shard_leading_axis({"w": jnp.ones((3, 2))}, mesh, "batch")
    assert stacked["w"].sharding == batch_sharding(mesh, "batch")
    check_batch_divisible(7, mesh, "batch")


def test_shard_leading_axis_and_batch_errors():
    mesh = make_mesh(1)
    with pytest.raises(ValueError, match="scalar"):
        shard_leading_axis({"step": jnp.zeros(())}, mesh)
    # Divisibility is checked against the mesh axis size; fake a 3-device axis.
    fake = type("FakeMesh", (), {"shape": {"data": 3}})()
    with pytest.raises(ValueError, match=r"\['w'\].*size 4.*3 devices"):
        shard_leading_axis({"w": jnp.ones((4, 2))}, fake)
    with pytest.raises(ValueError, match="batch_size 64 is not divisible by the 3 devices"):
        check_batch_divisible(64, fake)


def test_multi_process_path_keeps_typed_keys(monkeypatch):
    """The route used with several processes (host values, raw key data) gives the same tree."""
    import jvae.training.sharding as jsh

    monkeypatch.setattr(jsh, "_multi_process", lambda: True)
    mesh = make_mesh(1)
    key = jax.random.key(3, impl="rbg")
    state = TrainState({"w": jnp.arange(6.0).reshape(3, 2)}, (), jnp.zeros((), jnp.int32), key)
    rep = replicate(state, mesh)
    assert jax.random.key_impl(rep.key) == jax.random.key_impl(key)
    assert jnp.array_equal(jax.random.key_data(rep.key), jax.random.key_data(key))
    assert jnp.array_equal(rep.params["w"], state.params["w"])
    assert rep.key.sharding == replicated(mesh)
    keys = shard_leading_axis(jax.random.split(key, 2), mesh)
    assert keys.shape == (2,) and keys.sharding == batch_sharding(mesh)


def test_runner_sharding_options_on_one_device(small_g2d_config, tmp_path):
    # On one device both options must run and give the unsharded result; on several devices
    # the library functions they use are checked by the 8-device subprocess test above.
    import jax as _jax

    from jvae.runs import restore_run, train_and_evaluate

    runs = {}
    for name, changes in (("plain", {}), ("data_parallel", {"data_parallel": True})):
        config = small_g2d_config(num_epochs=1, checkpoint_every=0, **changes)
        train_and_evaluate(config, tmp_path / name, progress=False)
        runs[name] = _jax.tree.leaves(restore_run(tmp_path / name)[3].params)
    for a, b in zip(runs["plain"], runs["data_parallel"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    seeds = small_g2d_config(num_epochs=1, checkpoint_every=0, num_seeds=2, shard_seeds=True)
    assert "train/loss_mean" in train_and_evaluate(seeds, tmp_path / "seeds", progress=False)
    with pytest.raises(ValueError, match="num_seeds > 1"):
        train_and_evaluate(small_g2d_config(shard_seeds=True), tmp_path / "bad", progress=False)
