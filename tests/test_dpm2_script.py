"""experiments/dpm2.py: every variant's config is valid and follows the notebook's protocol."""

import pytest

from experiments import dpm2
from jvae.runs import schema


@pytest.mark.parametrize("name", list(dpm2.VARIANTS))
def test_every_variant_config_is_valid(name):
    config = dpm2.variant_config(name)
    schema.validate_config(config)
    assert (config.num_epochs, config.batch_size, config.latent_dim) == (5, 256, 10)
    assert (config.dataset.train_split, config.dataset.dev_size) == ("train_full", 1000)
    assert config.eval.every_steps == 100 and config.eval.dev_final_ll_samples == 100
    assert config.model.decoder_dropout == 0.1
    quick = dpm2.variant_config(name, quick=True)
    schema.validate_config(quick)
    assert quick.num_epochs == 1


def test_variants_differ_where_the_notebook_does():
    cnn, cont = dpm2.variant_config("vae_cnn"), dpm2.variant_config("vae_mlp_continuous")
    assert cnn.model.encoder == cnn.model.decoder == "conv" and cnn.model.conv_preset == "dpm2"
    assert cnn.model.posterior_hidden == 20 and cnn.model.init == "torch"   # Linear(1024, 20)
    assert cont.model.likelihood == "continuous_bernoulli" and cont.dataset.binarize == "none"
    nvil = dpm2.variant_config("nvil_none")
    assert nvil.objective.name == "nvil" and nvil.objective.control_variates == ()
    assert nvil.model.posterior == "mixture" and nvil.model.posterior_init_spread == 0.0
    assert nvil.optim.name == "rmsprop"
    assert dpm2.variant_config("nvil_baseline").objective.control_variates == (
        "centred", "baseline", "scaled")
    extra = dpm2.variant_config("extra_sfe_gaussian_none")
    assert extra.objective.name == "sfe" and extra.model.posterior == "gaussian"
    assert dpm2.variant_config("beyond_mixture_estimator").objective.name == "mixture"
    assert dpm2.variant_config("vae_cnn", quick=True).dataset.limit_train == 12000
    for name in dpm2.VARIANTS:          # the notebook's protocol and networks everywhere
        c = dpm2.variant_config(name)
        assert (c.drop_last, c.model.init, c.eval.dev_ll_samples) == (False, "torch", 10)


def test_unknown_variant_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'nvil_critic'"):
        dpm2.variant_config("nvil_critc")


def test_cv_ordering_lines():
    rows = [{"variant": f"nvil_{n}", "elbo": e, "elbo_last5": l}
            for n, e, l in (("none", -900.0, -950.0), ("critic", -800.0, -990.0))]
    text = dpm2.cv_ordering(rows, "nvil_")
    assert "`critic` -800.00 > `none` -900.00" in text
    assert "`none` -950.00 > `critic` -990.00" in text
    assert dpm2.cv_ordering(rows, "extra_sfe_gaussian_") == ""


def test_results_table_and_ordering(tmp_path):
    rows = [{"variant": "nvil_none", "what": "x", "elbo": -300.0, "distortion": 280.0,
             "rate": 20.0, "log_likelihood": None, "test_elbo": -301.0, "train_seconds": 12.0,
             "dev_seconds": 3.4}]
    table = dpm2.results_table(rows)
    assert "| `nvil_none` | x | -300.00 | 280.00 | 20.00 |  | -301.00 | 12 | 3 |" in table


def test_summary_and_docs_data_of_a_run_directory(tmp_path):
    """summarise / curves read a run's metrics, dev and step logs (files as a run writes them)."""
    import json

    run = tmp_path / "nvil_none"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "step": 30, "train/seconds": 2.0, "dev/seconds_in_epoch": 0.5})
        + "\n" + json.dumps({"epoch": 2, "step": 60, "train/seconds": 3.0, "dev/elbo": -9.0,
                             "dev/distortion": 8.0, "dev/rate": 1.0, "eval/elbo": -9.5}) + "\n")
    (run / "dev.jsonl").write_text("".join(
        json.dumps({"step": s, "dev/elbo": -float(s), "dev/distortion": 1.0, "dev/rate": 2.0})
        + "\n" for s in range(0, 70, 10)))
    (run / "steps.jsonl").write_text("".join(
        json.dumps({"step": s, "train/elbo": -float(s), "train/distortion": 1.0,
                    "train/rate": 2.0}) + "\n" for s in range(1, 61)))
    row = dpm2.summarise("nvil_none", run)
    assert (row["elbo"], row["steps"], row["train_seconds"], row["dev_seconds"]) == (-9.0, 60,
                                                                                     5.0, 0.5)
    assert row["elbo_last5"] == pytest.approx(-40.0)        # dev ELBOs at steps 20..60
    c = dpm2.curves(run, every=5)
    assert c["dev_step"] == list(range(0, 70, 10)) and len(c["step"]) == 12
    # trailing 23-step moving average of -step: at step 26 the mean of steps 4..26 is -15
    assert c["train_elbo"][5] == pytest.approx(-15.0)
    assert c["train_elbo"][0] == -1.0 and "train_cv_baseline_loss" not in c
    part = dpm2.partial_row("nvil_none", run)          # a run stopped at its last assessment
    assert (part["step"], part["elbo"], part["train_seconds"]) == (60, -60.0, 5.0)
    assert part["log_likelihood"] is None and c["dev_log_likelihood"] == [None] * 7


def test_merge_keeps_the_other_variants_and_replaces_a_rerun_partial(tmp_path):
    """--merge: a rerun variant (here finishing a run that was published as partial) replaces
    its earlier entry; every other variant's row, partial row and curves are kept with their
    own dates."""
    previous = {"measured": "2026-12-01", "quick": False, "load_average": [1.0, 1.0, 1.0],
                "rows": [{"variant": "nvil_none", "elbo": -1.0}],
                "partial": [{"variant": "vae_cnn", "step": 462},
                            {"variant": "nvil_centred", "step": 350}],
                "curves": {"nvil_none": {"a": 1}, "vae_cnn": {"old": 1},
                           "nvil_centred": {"c": 1}}}
    new = {"measured": "2026-12-07", "quick": False, "load_average": [2.0, 2.0, 2.0],
           "rows": [{"variant": "vae_cnn", "elbo": -5.0, "measured": "2026-12-07"}],
           "partial": [], "curves": {"vae_cnn": {"new": 1}}}
    merged = dpm2.merge_docs_data(new, previous)
    assert [r["variant"] for r in merged["rows"]] == ["nvil_none", "vae_cnn"]
    assert merged["rows"][0]["measured"] == "2026-12-01"
    assert [r["variant"] for r in merged["partial"]] == ["nvil_centred"]
    assert merged["curves"] == {"nvil_none": {"a": 1}, "nvil_centred": {"c": 1},
                                "vae_cnn": {"new": 1}}
    assert merged["measured"] == "2026-12-07"
    with pytest.raises(SystemExit, match="cannot merge a --quick run"):
        dpm2.merge_docs_data({**new, "quick": True}, previous)
    with pytest.raises(SystemExit, match="no such file"):
        dpm2.write_docs_data([], tmp_path, False, merge=tmp_path / "missing.json",
                             path=tmp_path / "out.json")
