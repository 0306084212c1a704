"""``experiments/precision_seeds.py``'s summary: the median epoch leaves every run's first
(compiling) epoch out, the gaps are per seed, and the table shows both."""

from experiments import precision_seeds


def _run(seed, dtype, loss, seconds):
    return {"seed": seed, "dtype": dtype, "test_loss": loss, "epoch_seconds": seconds}


def test_the_summary_takes_medians_without_first_epochs_and_gaps_per_seed():
    runs = [_run(1, "float32", 105.0, [9.0, 1.0, 1.2]), _run(1, "bfloat16", 105.1, [9.0, 0.7, 0.8]),
            _run(2, "bfloat16", 104.9, [9.0, 0.6, 0.9]), _run(2, "float32", 105.2, [9.0, 1.1, 1.0])]
    s = precision_seeds.summarise(runs)
    assert s["float32"]["median_epoch_s"] == 1.05 and s["bfloat16"]["median_epoch_s"] == 0.75
    assert abs(s["bfloat16_over_float32_epoch"] - 0.75 / 1.05) < 1e-12
    assert {k: round(v, 6) for k, v in s["test_loss_gap"].items()} == {"1": 0.1, "2": -0.3}
    text = precision_seeds.table({"jax": "0.0", "epochs": 3, **s})
    assert "| test loss, seed 2 | 105.200 | 104.900 | -0.300 |" in text
    assert "| median epoch (s) | 1.050 | 0.750 | ratio 0.71 |" in text
