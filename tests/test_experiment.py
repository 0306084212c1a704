"""Tests for jvae.runs.loop: resume, non-finite losses, metrics.jsonl, figures, collapse.

Everything runs on the synthetic 2-D Gaussian data (no files needed) with a 16-unit network.
The runs share their shapes, so XLA compiles each program once per session (see conftest).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

from jvae.runs import builders, loop as experiment
from jvae import training
from jvae.runs.checkpoints import Checkpointer
from jvae.runs import read_metrics, restore_run, train_and_evaluate
from jvae.training import NonFiniteLossError

STEPS_PER_EPOCH = 10500 // 64          # gaussian2d: 70% of 15000 points, batch 64


def _read_png(path: pathlib.Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 1000, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    rgb = np.round(img[..., :3] * 255).astype(np.int64) @ np.array([65536, 256, 1])
    assert len(np.unique(rgb)) > 3                                    # not a blank page
    return img


def _assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------- a 4-epoch run and its resume


@pytest.fixture(scope="module")
def run_config(small_g2d_config):
    """``num_epochs -> config`` of the resume test: checkpoints every 2 epochs, K=16."""
    return lambda num_epochs, **changes: small_g2d_config(
        num_epochs=num_epochs, checkpoint_every=2,
        **{"eval.ll_samples": 16, "eval.ll_chunk": 8, **changes})


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, run_config):
    """Four uninterrupted epochs, checkpoints every 2, log-likelihood and figures on."""
    workdir = tmp_path_factory.mktemp("run_a")
    record = train_and_evaluate(run_config(4, figures=True), workdir, progress=False)
    return workdir, record


@pytest.fixture(scope="module")
def run_b(tmp_path_factory, run_config):
    """The same run stopped after epoch 2, then resumed to epoch 4."""
    workdir = tmp_path_factory.mktemp("run_b")
    train_and_evaluate(run_config(2), workdir, progress=False)
    first = read_metrics(workdir)
    record = train_and_evaluate(run_config(4), workdir, resume=True, progress=False)
    return workdir, record, first


def test_resume_gives_bitwise_identical_state(run_a, run_b):
    _, _, _, state_a = restore_run(run_a[0])
    _, _, _, state_b = restore_run(run_b[0])
    assert int(state_a.step) == int(state_b.step) == 4 * STEPS_PER_EPOCH
    _assert_trees_equal(state_a.params, state_b.params)
    _assert_trees_equal(state_a.opt_state, state_b.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(state_a.key),
                                  jax.random.key_data(state_b.key))
    assert Checkpointer(run_b[0] / "checkpoints").all_epochs() == [2, 4]


def test_resume_metrics_have_each_epoch_once_matching_the_uninterrupted_run(run_a, run_b):
    metrics_a, metrics_b = read_metrics(run_a[0]), read_metrics(run_b[0])
    assert [r["epoch"] for r in run_b[2]] == [1, 2]
    assert [r["epoch"] for r in metrics_b] == [1, 2, 3, 4]
    for ra, rb in zip(metrics_a, metrics_b):
        assert ra["step"] == rb["step"]
        assert ra["train/loss"] == rb["train/loss"]
        # Evaluation keys come from the epoch number, so evaluation matches too.
        assert ra["eval/elbo"] == rb["eval/elbo"]
    assert run_b[1]["epoch"] == 4 and run_b[1]["train/loss"] == metrics_a[-1]["train/loss"]


def test_resume_after_a_crash_between_metrics_and_checkpoint(run_a, run_config, tmp_path,
                                                             monkeypatch):
    """Killed while saving epoch 4: metrics.jsonl already has epochs 1-4, the newest
    checkpoint is epoch 2. Resuming redoes epochs 3 and 4, each recorded once."""
    real_save = Checkpointer.save

    def crashing_save(self, epoch, state):
        if epoch == 4:
            raise RuntimeError("simulated crash")
        real_save(self, epoch, state)

    monkeypatch.setattr(Checkpointer, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_and_evaluate(run_config(4), tmp_path, progress=False)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    monkeypatch.setattr(Checkpointer, "save", real_save)
    train_and_evaluate(run_config(4), tmp_path, resume=True, progress=False)
    metrics_a = read_metrics(run_a[0])
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert ([r["train/loss"] for r in read_metrics(tmp_path)]
            == [r["train/loss"] for r in metrics_a])
    _assert_trees_equal(restore_run(tmp_path)[3].params, restore_run(run_a[0])[3].params)


def test_existing_checkpoints_without_resume_raise_and_change_nothing(run_a, run_config):
    workdir = run_a[0]
    before = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="resume"):
        train_and_evaluate(run_config(4), workdir, progress=False)
    assert (workdir / "metrics.jsonl").read_text() == before
    assert Checkpointer(workdir / "checkpoints").all_epochs() == [2, 4]


def test_restore_run_loads_a_given_epoch(run_a):
    config, datasets, _, state = restore_run(run_a[0], epoch=2)
    assert int(state.step) == 2 * STEPS_PER_EPOCH
    assert config.num_epochs == 4 and datasets.train.shape == (10500, 2)


def test_restore_run_without_config_or_checkpoint_is_a_clear_error(tmp_path, small_g2d_config):
    with pytest.raises(FileNotFoundError, match="config.json"):
        restore_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(small_g2d_config().to_dict()))
    with pytest.raises(FileNotFoundError, match="[Nn]o checkpoint"):
        restore_run(tmp_path)


# ------------------------------------------------------------------ metrics.jsonl and figures


def test_metrics_jsonl_has_one_complete_record_per_epoch(run_a):
    workdir, record = run_a
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records == read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert record == records[-1]
    required = {"epoch", "step", "train/loss", "train/seconds", "eval/elbo", "eval/distortion",
                "eval/rate", "eval/log_likelihood"}
    for r in records:
        assert required <= set(r), required - set(r)
        assert r["step"] == r["epoch"] * STEPS_PER_EPOCH
        assert r["train/seconds"] > 0
        assert all(np.isfinite(v) for v in r.values() if isinstance(v, float))
        np.testing.assert_allclose(r["eval/elbo"], -(r["eval/distortion"] + r["eval/rate"]),
                                   rtol=1e-5, atol=1e-5)
        # log p(x) estimated with K=16 importance samples is at least the ELBO on average.
        assert r["eval/log_likelihood"] >= r["eval/elbo"] - 0.05
        assert r["eval/rate"] >= 0
    assert "train/compile_seconds" in records[0]
    assert records[-1]["train/loss"] < records[0]["train/loss"]


def test_config_json_is_the_run_config(run_a, run_config):
    saved = json.loads((run_a[0] / "config.json").read_text())
    assert saved == json.loads(json.dumps(run_config(4, figures=True).to_dict()))


def test_figures_of_2d_data_are_written(run_a):
    workdir = run_a[0]
    for name in ("curves.png", "samples_2d.png", "latents.png"):
        _read_png(workdir / name)
    assert not (workdir / "samples.png").exists()          # image grids are for images only


# --------------------------------------------------------------------- non-finite training loss


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch, small_g2d_config):
    """From global step T on, the epoch reports NaN losses and NaN parameters: T falls in
    epoch 3, step 5 of that epoch. (A cheap linear loss keeps the compilation short; Adam
    moves every parameter by about lr per step, so checkpoints differ from the init.)"""
    fail_at = 2 * STEPS_PER_EPOCH + 5

    def cheap_loss(config, model):
        def loss_fn(params, key, x):
            loss = jnp.mean(x) + sum(jnp.mean(p) for p in jax.tree.leaves(params))
            return loss, {"loss": loss}
        return loss_fn

    def poisoned_train_epoch(loss_fn, optimizer, batch_size, **kwargs):
        real = training.make_train_epoch(loss_fn, optimizer, batch_size, **kwargs)

        def epoch(state, data, order_key=None):
            new, metrics, aux = real(state, data, order_key)     # step_metrics=True: a dict
            losses = aux["loss"]
            bad = state.step + jnp.arange(losses.shape[0]) >= fail_at
            nan_if = lambda v: jnp.where(bad.any(), jnp.nan, v)  # noqa: E731
            return (new._replace(params=jax.tree.map(nan_if, new.params)),
                    dict(metrics, loss=nan_if(metrics["loss"])),
                    dict(aux, loss=jnp.where(bad, jnp.nan, losses)))

        return epoch

    monkeypatch.setattr(builders, "build_loss", cheap_loss)
    monkeypatch.setattr(experiment, "make_train_epoch", poisoned_train_epoch)
    config = small_g2d_config(num_epochs=5, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError) as info:
        train_and_evaluate(config, tmp_path, progress=False)
    err = info.value
    assert (err.epoch, err.step_in_epoch, err.global_step) == (3, 5, fail_at)
    assert err.global_step == (err.epoch - 1) * STEPS_PER_EPOCH + err.step_in_epoch
    msg = str(err)
    assert "epoch 3" in msg and "step 5" in msg and f"global step {fail_at}" in msg
    assert "epoch 2" in msg                                  # names the last good checkpoint

    assert Checkpointer(tmp_path / "checkpoints").all_epochs() == [1, 2]
    _, _, _, state = restore_run(tmp_path)
    assert int(state.step) == 2 * STEPS_PER_EPOCH
    leaves = jax.tree.leaves(state.params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    # Between the checkpoints of epochs 1 and 2, 164 Adam steps of about lr = 3e-3 each.
    _, _, _, first = restore_run(tmp_path, epoch=1)
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(leaves, jax.tree.leaves(first.params))]
    np.testing.assert_allclose(moved, STEPS_PER_EPOCH * 3e-3, rtol=0.05)
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    # eval.ll_samples = 0: no log-likelihood is estimated or recorded.
    assert all("eval/log_likelihood" not in r for r in records)
    assert all("eval/elbo" in r for r in records)


# ------------------------------------------------------------------ posterior collapse (HW2)


def test_posterior_collapses_on_univariate_but_not_multivariate_data(tmp_path,
                                                                    small_g2d_config):
    """Homework 2: axis-aligned data needs no latent (rate -> 0); rotated data does."""
    rates = {}
    for mode in ("univariate", "multivariate"):
        config = small_g2d_config(num_epochs=30, checkpoint_every=0,
                            **{"dataset.mode": mode, "eval.every": 30})
        record = train_and_evaluate(config, tmp_path / mode, progress=False)
        assert record["epoch"] == 30
        rates[mode] = record["eval/rate"]
    assert rates["univariate"] < 0.5, rates
    assert rates["multivariate"] > 0.6, rates
    assert rates["multivariate"] > 3 * rates["univariate"], rates
