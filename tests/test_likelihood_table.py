"""The binarised-MNIST likelihood table command on the CPU with a tiny budget, its configs
and its budget arithmetic."""

import json
import math

import pytest

from experiments import likelihood_table
from experiments.configs import binarized_mnist_table as table_config
from jvae.runs import schema

TINY = ["--limit-train", "100", "--eval-limit", "10", "--eval-block", "10", "--ll-samples",
        "4", "--ll-chunk", "4", "--no-progress"]


@pytest.mark.slow   # ~25 s of CPU time: four rows compiled and trained, then scored
def test_tiny_budget_table_has_every_row(tmp_path):
    out = tmp_path / "table.json"
    data = likelihood_table.main(["--workdir", str(tmp_path / "runs"), "--budget", "0.0003",
                                  "--json", str(out), *TINY])
    assert json.loads(out.read_text()) == json.loads(json.dumps(data))
    assert [r["row"] for r in data["rows"]] == list(table_config.ROWS)
    assert not data["full_schedules"] and not data["all_test_images"]
    for r in data["rows"]:
        assert r["epochs_run"] == 1
        assert r["schedule_epochs"] == table_config.SCHEDULE_EPOCHS[r["row"]]
        assert r["steps"] == 100 // (100 if r["row"] == "vampprior" else 20)
        assert math.isfinite(r["test_nll"]) and r["test_nll"] > 0
        assert r["eval_images"] == 10 and r["ll_samples"] == 4
        assert r["paper"] == table_config.REFERENCES[r["row"]]["paper"]
        assert r["pythae"] == table_config.REFERENCES[r["row"]]["pythae"]
        # log p(x) >= ELBO in expectation; at one epoch the gap is large against the noise
        assert -r["test_nll"] > r["test_elbo"] - 5.0
    assert [r["paper"] for r in data["rows"]] == [89.9, 87.6, 87.1, 85.57]

    # A second call with a larger budget resumes the rows (epoch 2 from epoch 1) and a call
    # that changes nothing reuses the evaluation.
    again = likelihood_table.main(["--workdir", str(tmp_path / "runs"), "--rows", "vae",
                                   "--budget", "0.0007", *TINY])
    (vae,) = again["rows"]
    assert vae["epochs_run"] == 2 and vae["steps"] == 10 and vae["epoch"] == 2
    same = likelihood_table.main(["--workdir", str(tmp_path / "runs"), "--rows", "vae",
                                  "--budget", "0.0007", *TINY])
    assert same["rows"][0]["test_nll"] == vae["test_nll"]
    assert same["rows"][0]["eval_seconds"] == vae["eval_seconds"]   # read back, not rerun


@pytest.mark.parametrize("row", table_config.ROWS)
def test_row_configs_are_the_papers(row):
    c = table_config.get_config(f"row={row}")
    schema.validate_config(c)
    assert c.dataset.name == "binarized_mnist" and c.dataset.eval_split == "test"
    assert c.model.likelihood == "bernoulli"
    if row == "vampprior":
        assert (c.num_epochs, c.batch_size, c.learning_rate, c.latent_dim) == (2000, 100, 5e-4, 40)
        assert (c.model.prior, c.model.prior_components) == ("vamp", 500)
        assert tuple(c.model.encoder_hidden) == tuple(c.model.decoder_hidden) == (300, 300)
        assert c.objective.beta_schedule == "linear" and table_config.warmup_applied(c)
        assert c.objective.kl_warmup_steps == 100 * 50000 // 100   # 100 epochs of steps
    else:
        assert (c.num_epochs, c.batch_size, c.learning_rate, c.latent_dim) == (3280, 20, 1e-3, 50)
        assert (c.optim.schedule, c.optim.eps, c.model.activation) == ("iwae", 1e-4, "tanh")
        assert c.objective.num_samples == table_config.IWAE_K[row]
        assert tuple(c.model.encoder_hidden) == tuple(c.model.decoder_hidden) == (200, 200)


def test_unknown_row_and_bad_flags_are_refused(capsys):
    with pytest.raises(ValueError, match="Unknown binarized_mnist_table row 'vamp'"):
        table_config.get_config("row=vamp")
    for argv, message in ((["--rows", "vae,gan"], "unknown ['gan']"),
                          (["--budget", "0"], "--budget must be in (0, 1]"),
                          (["--budget", "1.5"], "--budget must be in (0, 1]"),
                          (["--ll-samples", "0"], "--ll-samples must be positive"),
                          (["--budget", "0.1", "--budget-minutes", "2"], "not allowed with")):
        with pytest.raises(SystemExit):
            likelihood_table.parse_args(argv)
        assert message in capsys.readouterr().err


def test_budget_epochs():
    assert likelihood_table.budget_epochs(3280, 1.0) == 3280
    assert likelihood_table.budget_epochs(3280, 0.1) == 328
    assert likelihood_table.budget_epochs(2000, 0.0001) == 1      # at least one epoch
    assert likelihood_table.budget_epochs(2000, 0.0015) == 3
