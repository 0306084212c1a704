"""Many seeds as one vmapped program: each seed equals its own single-seed run."""

import json

import jax
import numpy as np

from jvae.runs import read_metrics, restore_run, train_and_evaluate


def _params_of(workdir):
    return restore_run(workdir)[3].params


def test_seed_i_of_a_vmapped_run_equals_the_single_seed_run(small_g2d_config, tmp_path):
    multi = small_g2d_config(num_epochs=2, num_seeds=3, seed=5, checkpoint_every=0)
    train_and_evaluate(multi, tmp_path / "multi", progress=False)
    stacked = _params_of(tmp_path / "multi")
    assert {leaf.shape[0] for leaf in jax.tree.leaves(stacked)} == {3}

    for index, seed in ((0, 5), (2, 7)):
        # Same data order as the multi-seed run (order_seed = its base seed).
        single = small_g2d_config(num_epochs=2, seed=seed, checkpoint_every=0,
                                  **{"dataset.order_seed": 5})
        train_and_evaluate(single, tmp_path / f"single{seed}", progress=False)
        own = _params_of(tmp_path / f"single{seed}")
        for a, b in zip(jax.tree.leaves(own), jax.tree.leaves(stacked)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[index], rtol=1e-4,
                                       atol=1e-5)

    # The seeds really differ from each other.
    first = jax.tree.leaves(stacked)[0]
    assert not np.allclose(np.asarray(first)[0], np.asarray(first)[1])


def test_multi_seed_metrics_and_figures(small_g2d_config, tmp_path):
    config = small_g2d_config(num_epochs=2, num_seeds=4, seed=0, checkpoint_every=1)
    config.figures = True
    last = train_and_evaluate(config, tmp_path, progress=False)
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["seeds"] == [0, 1, 2, 3]
        for key in ("train/loss", "eval/elbo", "eval/rate", "eval/distortion"):
            values = np.asarray(r[key])
            assert values.shape == (4,)
            np.testing.assert_allclose(r[f"{key}_mean"], values.mean(), rtol=1e-6)
            np.testing.assert_allclose(r[f"{key}_std"], values.std(), rtol=1e-6)
        assert r["eval/elbo_std"] > 0                         # independent seeds differ
    json.dumps(last)
    assert (tmp_path / "curves.png").stat().st_size > 0
    # A multi-seed run resumes from its stacked checkpoint.
    config.num_epochs = 3
    train_and_evaluate(config, tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_num_seeds_must_be_positive(small_g2d_config, tmp_path):
    import pytest

    with pytest.raises(ValueError, match="num_seeds"):
        train_and_evaluate(small_g2d_config(num_seeds=0), tmp_path, progress=False)


def test_beta_and_learning_rate_sweep_elements_equal_single_runs(small_g2d_config, tmp_path):
    sweep = small_g2d_config(num_epochs=2, seed=3, checkpoint_every=0,
                             **{"sweep.beta": (0.5, 1.0, 4.0),
                                "sweep.learning_rate": (1e-3, 3e-3, 1e-2)})
    train_and_evaluate(sweep, tmp_path / "sweep", progress=False)
    stacked = _params_of(tmp_path / "sweep")
    record = read_metrics(tmp_path / "sweep")[-1]
    assert record["sweep/beta"] == [0.5, 1.0, 4.0]
    np.testing.assert_allclose(record["sweep/learning_rate"], [1e-3, 3e-3, 1e-2], rtol=1e-6)
    # More weight on the rate term gives a lower rate (the R-D trade-off).
    rates = record["eval/rate"]
    assert rates[0] > rates[1] > rates[2]

    single = small_g2d_config(num_epochs=2, seed=3, checkpoint_every=0, learning_rate=1e-2,
                              **{"objective.beta": 4.0})
    train_and_evaluate(single, tmp_path / "single", progress=False)
    for a, b in zip(jax.tree.leaves(_params_of(tmp_path / "single")), jax.tree.leaves(stacked)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b)[2], rtol=1e-4, atol=1e-5)


def test_sweep_validation(small_g2d_config, tmp_path):
    import pytest

    with pytest.raises(ValueError, match="equal lengths"):
        train_and_evaluate(small_g2d_config(**{"sweep.beta": (1.0, 2.0),
                                               "sweep.learning_rate": (1e-3,)}),
                           tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="beta"):
        train_and_evaluate(small_g2d_config(**{"sweep.beta": (-1.0, 2.0)}), tmp_path / "b",
                           progress=False)


def test_evaluate_cli_evaluates_every_seed_of_a_multi_seed_run(small_g2d_config, tmp_path):
    from jvae.cli import evaluate as evaluate_cli

    config = small_g2d_config(num_epochs=1, num_seeds=2, seed=0, checkpoint_every=0)
    config.dataset.count = 1500
    train_and_evaluate(config, tmp_path, progress=False)
    result = evaluate_cli.main([f"--workdir={tmp_path}", "--num-samples=10", "--limit=200"])
    assert len(result["log_likelihood"]) == 2 and len(result["elbo"]) == 2
    assert result["log_likelihood"][0] != result["log_likelihood"][1]
    for ll, elbo in zip(result["log_likelihood"], result["elbo"]):
        assert ll >= elbo - 0.5
