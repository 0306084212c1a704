"""The DPM2 port (experiments/notebooks/dpm2.py) runs end to end in its quick mode."""

import json
import math
import runpy
import sys

import pytest

from experiments import dpm2 as dpm2_experiment

FIGURES = {"nb_dpm2_data.png", "nb_dpm2_training_curves.png", "nb_dpm2_dev_curves.png",
           "nb_dpm2_prior_samples.png", "nb_dpm2_observations.png",
           "nb_dpm2_conditional_samples.png"}


@pytest.mark.slow
def test_quick_mode_runs_every_cell(tmp_path, monkeypatch, jvae_data_dir):
    monkeypatch.setenv("JVAE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("JVAE_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["dpm2.py"])
    runpy.run_module("experiments.notebooks.dpm2", run_name="__main__")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] and results["image_shape"] == [64, 64, 1]
    assert results["split"] == [600, 100]
    assert results["steps"] == 3                      # 600 = 2 x 256 + 88: the partial kept
    forward = results["first_forward"]
    assert forward["sfe"] == 0.0                      # a Gaussian q: reparameterised
    assert math.isclose(forward["loss"], -forward["ELBO"], rel_tol=1e-5)
    assert math.isclose(forward["ELBO"], -(forward["D"] + forward["R"]), rel_tol=1e-4)
    assert 2000 < forward["D"] < 4000 and 0 < forward["R"] < 50   # the seed's magnitudes
    dev = results["dev_final"]
    assert all(math.isfinite(dev[k]) for k in ("elbo", "distortion", "rate",
                                               "log_likelihood"))
    assert {"train/elbo", "dev/log_likelihood"} <= set(results["log_keys"])
    assert set(results["figures"]) == FIGURES
    assert all((tmp_path / "figures" / f).stat().st_size > 1000 for f in FIGURES)


def test_the_port_uses_the_experiments_notebook_settings():
    """The port trains the experiment's vae_mlp variant: the notebook's run."""
    config = dpm2_experiment.variant_config("vae_mlp")
    assert (config.model.init, config.model.posterior_hidden, config.drop_last) == ("torch", 20,
                                                                                    False)
    assert config.model.encoder_hidden == (512, 512, 1024)
    assert not config.model.encoder_activate_final
