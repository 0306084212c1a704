"""The notebook ports (experiments/notebooks/*.py): each runs end to end in its quick mode,
records its numbers and draws its figures; each is a jupytext "percent" notebook whose
markdown cells keep the seed's headings and state every difference."""

from __future__ import annotations

import json
import pathlib
import re
import runpy

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PORTS = ("lab5", "homework2", "lecture")
pytestmark = pytest.mark.slow


def _run(name, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("JVAE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("JVAE_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.setattr("sys.argv", [name])
    runpy.run_module(f"experiments.notebooks.{name}", run_name="__main__")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] is True and results["wall_seconds"] > 0
    return results


def _figures(tmp_path) -> set[str]:
    return {p.name for p in (tmp_path / "figures").glob("*.png") if p.stat().st_size > 1000}


def test_homework2_quick(tmp_path, monkeypatch):
    r = _run("homework2", tmp_path, monkeypatch)
    assert r["problem1"]["unbiased"] and r["problem1"]["variance_ratio_inference"] > 10
    b = r["problem2"]["bounds"]
    assert b["1"][0] < b["5"][0] < b["50"][0] < b["500"][0] < r["problem2"]["log_px"]
    p3 = r["problem3"]
    assert p3["pi_max_abs_error"] < 1e-5 and p3["sigma_max_abs_error"] < 1e-4
    assert p3["em_min_increase"] > -1e-5 and p3["logdet_gradient_max_abs_error"] < 1e-10
    t2 = r["task2"]
    assert t2["settings"]["count"] == 1000 and t2["settings"]["epochs"] == 1     # quick
    for mode in ("univariate", "multivariate"):
        assert np.isfinite(t2["seed0"][mode]["rate"])
        assert len(t2["seeds"][mode]["rate"]) == 2
        assert t2["latent_stats"][mode]["points"] == 300
    assert r["task3"] == {"cifar10_available": False} or r["task3"]["cifar10_available"]
    assert {"nb_homework2_kl_curves.png", "nb_homework2_samples_univariate.png",
            "nb_homework2_samples_multivariate.png", "nb_homework2_data_univariate.png",
            "nb_homework2_curves_multivariate.png"} <= _figures(tmp_path)


def test_lab5_quick(tmp_path, monkeypatch, jvae_data_dir):
    r = _run("lab5", tmp_path, monkeypatch)
    assert r["example"]["seed"] == 2020 and len(r["example"]["test_loss"]) == 1
    assert set(r["question"]) == {"relu + adam", "relu + adagrad", "sigmoid + adam",
                                  "sigmoid + adagrad"}
    assert all(np.isfinite(q["final_mean"]) for q in r["question"].values())
    assert r["pyro"]["tsne_points"] == 256 and len(r["pyro"]["test_loss"]) == 1
    assert {"nb_lab5_losses.png", "nb_lab5_question.png", "nb_lab5_reconstruction_1.png",
            "nb_lab5_sample_1.png", "nb_lab5_pyro_test_loss.png", "nb_lab5_pyro_samples.png",
            "nb_lab5_pyro_tsne.png", "nb_lab5_pyro_reconstructions.png"} <= _figures(tmp_path)


def test_lecture_quick(tmp_path, monkeypatch, jvae_data_dir):
    r = _run("lecture", tmp_path, monkeypatch)
    for run in ("autoencoder", "vae2d"):
        assert r[run]["snapshots"] == [0, 1] and r[run]["points"] == 256
    assert r["vae2d"]["kl"] == "mc" and r["ppca"]["sigma2"] > 0
    assert {"nb_lecture_mnist_preview.png", "nb_lecture_pca_projection.png",
            "nb_lecture_pca_components.png", "nb_lecture_pca_reconstructions.png",
            "nb_lecture_ae_latents.png", "nb_lecture_ae_reconstructions.png",
            "nb_lecture_vae_latents.png", "nb_lecture_vae_reconstructions.png",
            "nb_lecture_vae_manifold.png"} <= _figures(tmp_path)


# The markdown headings of each seed notebook, in order (its code comments left out).
HEADINGS = {
    "lab5": ["Lab 5 - Variational Autoencoder for Deep Generative Learning", "Objective", "Why",
             "1. Stochastic variational inference and variational autoencoders",
             "Latent variable models", "Stochastic variational inference",
             "Variational autoencoder", "Implementation", "Variational Autoencoders",
             "Introduction", "VAE in Pyro", "Inference", "Code and Sample results",
             "References", "3. Exercises"],
    "homework2": ["Homework2: Variational inference and VAE", "Task 1: Theory (5pt)",
                  "Problem 1: Log-derivative trick (1pt)", "Problem 2: IWAE theory (1pt)",
                  "Problem 3: EM-algorithm for GMM (3pt)", "EM-algorithm",
                  "E- and M- steps derivations", "Task 2: VAE on 2d data (4pt)",
                  "Task 3: VAE on CIFAR10 data (4pt)"],
    "lecture": ["Latent Variable Models (LVM)", "Principal Component Analysis (PCA)",
                "Example: Classical PCA for MNIST using pytorch",
                "Probabilistic interpretation for PCA",
                "Assumption: The noise is independent and Gaussian distributed",
                "Assumption: The latent variable has a standard Gaussian prior",
                "Marginal likelihood", "Posterior", "Training", "Self-study", "Autoencoders",
                "Architecture", "Example: Autoencoder for MNIST in pytorch", "VI for LVM",
                "Variational Autoencoder (VAE)", "VAE Assumption 1:", "VAE Assumption 2:",
                "VAE Assumption 3:", "Writing a VAE in Pyro", "Details on the VAE training",
                "The derivative wrt to", "The derivative wrt to",
                "Beyond the reparameterization trick", "(Once again) more attention on the ELBO",
                "Further reducing the variance by using closed-form terms", "Pyro notes:"],
}


@pytest.mark.parametrize("name", PORTS)
def test_ports_are_percent_notebooks_with_the_seeds_headings(name):
    text = (ROOT / "experiments" / "notebooks" / f"{name}.py").read_text()
    assert "format_name: percent" in text and text.count("# %% [markdown]") >= 5
    jupytext = pytest.importorskip("jupytext", reason="jupytext is in the dev extra")
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = [c.cell_type for c in notebook.cells]
    assert kinds.count("code") >= 5 and kinds.count("markdown") >= 5
    headings = [h.strip() for c in notebook.cells if c.cell_type == "markdown"
                for h in re.findall(r"^#{1,4} (.+)$", c.source, re.M)]
    position = 0
    for wanted in HEADINGS[name]:              # every seed heading, in the seed's order
        found = [i for i, h in enumerate(headings) if i >= position and h.startswith(wanted)]
        assert found, f"{name}: heading {wanted!r} missing or out of order"
        position = found[0] + 1
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    statements = re.findall(r"\*\*Differs:\*\*([^*]+)", markdown)
    assert len(statements) >= 3
    for statement in statements:        # a stated difference: a sentence with its reason
        assert len(statement.split()) >= 6, statement


def test_a_part_run_keeps_the_other_parts_published():
    """``--parts pyro`` merges into the earlier numbers (published or in the workdir): the
    parts it did not run keep theirs, and the command history says who produced what."""
    from experiments.notebooks.port_io import merge_parts

    published = {"example": {"loss": 1.0}, "question": {"a": 2.0}, "quick": False,
                 "commands": [{"command": "--parts example,question"}]}
    workdir = {"example": {"loss": 1.5}, "quick": False,
               "commands": [{"command": "--parts example,question"}, {"command": "--parts x"}]}
    new = {"pyro": {"test_loss": [3.0]}, "quick": False, "commands": [{"command": "--parts pyro"}]}
    merged = merge_parts([published, workdir], new)
    assert merged["question"] == {"a": 2.0} and merged["example"] == {"loss": 1.5}
    assert merged["pyro"] == {"test_loss": [3.0]}
    assert [c["command"] for c in merged["commands"]] == ["--parts example,question",
                                                          "--parts x", "--parts pyro"]
