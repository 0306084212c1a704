"""Step-level logging, dev splits and dev assessments between compiled chunks of steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.runs import builders, figures as run_figures

from jvae.runs import schema
from jvae.runs import read_metrics, restore_run, train_and_evaluate
from jvae.runs.steplog import DEV_FILE, STEPS_FILE, chunks, read_jsonl
from jvae.training import TrainState, make_optimizer, make_train_epoch

TRAIN = 2000                            # the small gaussian2d run cut to 2000 points, batch 64


def _tiny_epoch():
    def loss_fn(params, key, x):
        noise = jax.random.normal(key, x.shape)
        err = jnp.mean((x @ params["w"] + params["b"] + 0.1 * noise - x) ** 2)
        return err, {"loss": err, "noise": jnp.mean(noise)}
    opt = make_optimizer(1e-2)
    params = {"w": jnp.eye(3) * 0.5, "b": jnp.zeros(3)}
    state = TrainState.create(params, opt, jax.random.key(0))
    data = jax.random.normal(jax.random.key(1), (70, 3))
    return make_train_epoch(loss_fn, opt, 8, step_metrics=True), state, data


def test_plan_and_chunks_of_run_steps_are_the_epoch():
    epoch, state, data = _tiny_epoch()
    whole, metrics, aux = epoch(state, data)
    plan = epoch.plan(state, data)
    assert plan.batches.shape == (8, 8) and plan.loss_keys.shape == (8,)
    st, parts = state, []
    for a, b in chunks(8, 3):                      # 3 + 3 + 2 steps
        st, part = epoch.run_steps(st, data, plan.batches[a:b], plan.loss_keys[a:b],
                                   plan.bin_keys[a:b])
        parts.append(part)
    st = st._replace(key=plan.next_key)
    for x, y in zip(jax.tree.leaves(whole.params), jax.tree.leaves(st.params)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert int(st.step) == int(whole.step) == 8
    assert jax.random.key_data(st.key).tolist() == jax.random.key_data(whole.key).tolist()
    np.testing.assert_allclose(np.concatenate([p["loss"] for p in parts]), aux["loss"],
                               rtol=1e-6)
    assert set(aux) == {"loss", "noise"} and aux["loss"].shape == (8,)
    np.testing.assert_allclose(metrics["loss"], aux["loss"].mean(), rtol=1e-6)


def test_chunks_cover_the_epoch():
    assert chunks(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunks(6, 3) == [(0, 3), (3, 6)]
    assert chunks(2, 5) == [(0, 2)]


def test_dev_split_is_random_disjoint_and_seeded():
    train = np.arange(50, dtype=np.float32)[:, None]
    rest, dev = builders.split_dev(train, 10, seed=3)
    assert rest.shape == (40, 1) and dev.shape == (10, 1)
    assert sorted(np.concatenate([rest, dev])[:, 0].tolist()) == list(range(50))
    assert np.all(np.diff(rest[:, 0]) > 0)                 # the rest keeps its order
    again, dev2 = builders.split_dev(train, 10, seed=3)
    np.testing.assert_array_equal(dev, dev2)
    assert not np.array_equal(builders.split_dev(train, 10, seed=4)[1], dev)
    assert dev[:, 0].tolist() != list(range(10))            # not simply the first examples
    assert builders.split_dev(train, 0, 0)[1] is None
    with pytest.raises(ValueError, match="dev_size 50 must be smaller"):
        builders.split_dev(train, 50, 0)


def test_bad_dev_options_are_named(small_g2d_config):
    with pytest.raises(ValueError, match="dataset.dev_size is 0"):
        schema.validate_config(small_g2d_config(**{"eval.every_steps": 100}))
    with pytest.raises(ValueError, match="every_steps"):
        schema.validate_config(small_g2d_config(**{"eval.every_steps": -1,
                                                     "dataset.dev_size": 10}))
    with pytest.raises(ValueError, match="dev_final_ll_samples"):
        schema.validate_config(small_g2d_config(**{"eval.dev_final_ll_samples": -2}))


def test_steps_and_dev_logs_chunked_training_equals_plain_and_resume(tmp_path,
                                                                      small_g2d_config):
    STEPS = (TRAIN - 500) // 64         # 23: the dev split leaves the rest to train on
    common = {"num_epochs": 2, "dataset.dev_size": 500, "dataset.dev_seed": 1,
              "eval.dev_final_ll_samples": 5, "dataset.limit_train": TRAIN}
    plain = train_and_evaluate(small_g2d_config(**common), tmp_path / "plain", progress=False)
    # The chunked run trains one epoch, gets a step line its checkpoint never saw, resumes.
    config = small_g2d_config(**common, **{"eval.every_steps": 10})
    config.num_epochs = 1
    train_and_evaluate(config, tmp_path / "chunked", progress=False)
    with open(tmp_path / "chunked" / STEPS_FILE, "a") as f:
        f.write('{"step": 9999, "epoch": 2}\n')
    config.num_epochs = 2
    chunked = train_and_evaluate(config, tmp_path / "chunked", resume=True, progress=False)
    # Training is the same arithmetic in chunks.
    a = restore_run(tmp_path / "plain")[-1]
    _, datasets, model, b = restore_run(tmp_path / "chunked")
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert plain["train/loss"] == pytest.approx(chunked["train/loss"], rel=1e-5)
    # Every step's metrics, numbered by the updates made, one line per step after the resume.
    steps = read_jsonl(tmp_path / "chunked" / STEPS_FILE)
    assert [r["step"] for r in steps] == list(range(1, 2 * STEPS + 1))
    assert {"train/loss", "train/elbo", "train/distortion", "train/rate"} <= set(steps[0])
    np.testing.assert_allclose(np.mean([r["train/loss"] for r in steps[STEPS:]]),
                               chunked["train/loss"], rtol=1e-5)
    assert [r["epoch"] for r in read_metrics(tmp_path / "chunked")] == [1, 2]
    # Dev assessments: step 0, every 10 steps of each epoch, after each epoch's last step.
    dev = read_jsonl(tmp_path / "chunked" / DEV_FILE)
    per_epoch = [10, 20, STEPS]
    assert [r["step"] for r in dev] == [0] + per_epoch + [STEPS + s for s in per_epoch]
    assert "dev/log_likelihood" not in dev[1] and "dev/log_likelihood" in dev[-1]
    assert dev[-1]["dev/elbo"] <= dev[-1]["dev/log_likelihood"] + 0.05
    assert dev[0]["dev/elbo"] < dev[-1]["dev/elbo"]          # training helped on held-out data
    assert chunked["dev/elbo"] == dev[-1]["dev/elbo"]        # the last record carries them
    plain_dev = read_jsonl(tmp_path / "plain" / DEV_FILE)
    assert [r["step"] for r in plain_dev] == [0, 2 * STEPS]
    assert "dev/log_likelihood" in plain_dev[-1]          # the final assessment has its L too
    assert plain_dev[-1]["dev/elbo"] == pytest.approx(dev[-1]["dev/elbo"], abs=1e-4)
    assert chunked["train/seconds"] > 0 and chunked["dev/seconds_in_epoch"] > 0
    # The run's figures of both logs (write_figures' step part; 2-D data: no image panels).
    paths = run_figures._step_and_inspection_figures(model, b.params, jax.random.key(0),
                                                    datasets.eval, tmp_path / "chunked",
                                                    False, 0)
    assert [p.name for p in paths] == ["steps.png", "dev.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_append_lines_is_all_or_nothing_on_a_full_disk(tmp_path, monkeypatch):
    import errno
    import os

    from jvae.runs import steplog

    path = tmp_path / "steps.jsonl"
    steplog.append_lines(path, '{"step": 1}\n')
    real_write = os.write

    def half_then_full(fd, data):                 # the disk fills in the middle of a write
        if len(data) > 4:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(steplog.os, "write", half_then_full)
    with pytest.raises(OSError, match=r"Could not append to .*steps.jsonl: no space left"):
        steplog.append_lines(path, '{"step": 2}\n{"step": 3}\n')
    monkeypatch.undo()
    assert path.read_text() == '{"step": 1}\n'                 # no half line left
    assert read_jsonl(path) == [{"step": 1}]
