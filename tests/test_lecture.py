"""The lecture's configs have the lecture's settings; the 2-D VAE's posterior scale is exp of a
log standard deviation; ``python -m experiments.lecture --quick`` writes its table and figures."""

import json
import pathlib
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.runs import builders

from jvae.runs import schema
from jvae.models.autoencoder import is_autoencoder
from jvae.models.heads import positive_scale
from jvae.models.vae import VAE, init_params

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(name):
    return runpy.run_path(str(ROOT / "experiments" / "configs" / f"{name}.py"))["get_config"]()


@pytest.mark.parametrize("name", ["lecture_autoencoder", "lecture_vae2d"])
def test_configs_have_the_lecture_settings(name):
    c = _config(name)
    schema.validate_config(c)
    assert (c.learning_rate, c.batch_size, c.num_epochs, c.latent_dim) == (1e-2, 128, 10, 2)
    assert c.optim.name == "adam" and c.dataset.name == "mnist" and c.dataset.binarize == "none"
    assert (c.dataset.train_split, c.dataset.eval_split) == ("train", "validation")
    assert 60000 - c.dataset.validation_size == 42000          # 70 / 30
    assert c.model.encoder_hidden == c.model.decoder_hidden == (128, 128)
    assert c.model.activation == "softplus" and c.model.likelihood == "bernoulli"
    model = builders.build_model(c, (28, 28, 1))
    assert is_autoencoder(model) == (name == "lecture_autoencoder")
    if name == "lecture_vae2d":   # the lecture's code: Trace_ELBO, a Monte Carlo KL
        assert (c.objective.name, c.objective.kl, c.model.posterior_scale) == (
            "elbo", "mc", "log_std")


def test_vae2d_variant_kl_analytic_is_its_texts_mean_field_elbo():
    path = str(ROOT / "experiments" / "configs" / "lecture_vae2d.py")
    get_config = runpy.run_path(path)["get_config"]
    assert get_config("kl=analytic").objective.kl == "analytic"
    rest = get_config("kl=analytic").to_dict()
    rest["objective"]["kl"] = "mc"
    assert rest == get_config().to_dict()
    with pytest.raises(ValueError, match="Unknown value 'exact' for lecture_vae2d variant key 'kl'"):
        get_config("kl=exact")


def test_vae2d_posterior_scale_is_exp_of_the_log_std_output():
    c = _config("lecture_vae2d")
    model = builders.build_model(c, (28, 28, 1))
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    params = init_params(model, jax.random.key(0), x[:1])
    q = model.apply(params, x, method=VAE.encode)
    h = model.apply(params, x, method=lambda m, x: m.encoder(x))
    raw = h @ params["params"]["posterior"]["raw_scale"]["kernel"] + \
        params["params"]["posterior"]["raw_scale"]["bias"]
    np.testing.assert_allclose(np.asarray(q.stddev()), np.exp(np.asarray(raw)) + 1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(positive_scale(jnp.array([-2.0, 0.0, 1.5]), "log_std",
                                                         0.0)), np.exp([-2.0, 0.0, 1.5]), rtol=1e-6)
    assert float(positive_scale(jnp.array(100.0), "log_std")) < 1e7          # clipped, finite


@pytest.mark.slow
def test_lecture_script_quick(tmp_path, jvae_data_dir):
    from experiments import lecture

    result = lecture.main(["--workdir", str(tmp_path), "--quick"])
    saved = json.loads((tmp_path / "lecture.json").read_text())
    assert saved == json.loads(json.dumps(result))
    rows = saved["rows"]
    assert {"PCA-2", "PPCA-2", "AE-2", "VAE-2", "BCE floor (the data itself)"} <= set(rows)
    for name in ("PCA-2", "PPCA-2", "AE-2", "VAE-2"):
        mean, se = rows[name]["sse"]
        assert 0 < mean < 784 and se > 0
        assert rows[name]["bce"][0] > rows["BCE floor (the data itself)"]["bce"][0]
    vae = rows["VAE-2"]
    # The importance-sampled estimate is a tighter bound than the ELBO (on average).
    assert vae["elbo"] < vae["log_px_importance"] < 0
    assert np.isclose(vae["elbo"], -(vae["distortion"] + vae["rate"]), rtol=1e-5)
    assert np.isfinite(rows["PPCA-2"]["log_px_exact_gaussian"][0])
    assert saved["test_images"] == 300 and saved["ll_samples"] == 20 and saved["quick"]
    assert saved["seconds"]["total"] > 0
    table = (tmp_path / "lecture.md").read_text()
    assert table.startswith("| model | SSE per image | BCE per image | test ELBO | test log p(x) |")
    assert "K = 20" in table
    names = {p.name for p in (tmp_path / "figures").glob("*.png")}
    expected = {"lecture_pca_projection.png", "lecture_pca_components.png",
                "lecture_pca_reconstructions.png", "lecture_ae_latents.png",
                "lecture_ae_reconstructions.png", "lecture_ae_manifold.png",
                "lecture_vae_latents.png", "lecture_vae_reconstructions.png",
                "lecture_vae_manifold.png"}
    assert expected <= names
    for run in ("autoencoder", "vae2d"):
        assert (tmp_path / run / "config.json").is_file()
        assert (tmp_path / run / "checkpoints").is_dir()
