"""The lecture's experiments on MNIST: PCA, probabilistic PCA, the autoencoder and the 2-D VAE.

Fits PCA (2 components) and PPCA (2 latent dimensions) on the 42000 training images of the
70/30 split, trains the autoencoder (``configs/lecture_autoencoder.py``) and the 2-D VAE
(``configs/lecture_vae2d.py:kl=analytic``) with ``jvae.train_and_evaluate`` (run directories with
checkpoints, metrics and the standard figures under WORKDIR), then scores all of them on the
same 10000 MNIST test images and writes ONE comparison table (``WORKDIR/lecture.md`` and
``WORKDIR/lecture.json``) and the lecture's figures (``WORKDIR/figures/lecture_*.png``).

Reconstruction errors, per test image and summed over the 784 pixels, of the reconstruction
``x_hat`` (PCA: the projection onto the principal plane; PPCA: ``W E[z|x] + mu``; AE: the
decoder mean of the code; VAE: the decoder mean of the posterior mean):

- SSE, ``sum_i (x_i - x_hat_i)^2``;
- BCE, ``-sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)]`` (for the AE and the VAE the
  BCE with logits, their training loss; PCA and PPCA reconstructions leave [0, 1], so theirs
  is computed with ``x_hat`` clipped to ``[0.001, 0.999]``). Grey levels make even a perfect
  reconstruction cost ``sum_i H(x_i)`` nats, the "BCE floor" row.

For the VAE also the test ELBO (analytic KL, 10 samples) and the importance-sampled
``log p(x)`` with ``--ll-samples`` K (default 1000) samples of ``q(z|x)``; for PPCA the exact
``log p(x)``, a Gaussian density on R^784, which is not comparable with the Bernoulli one.

    JVAE_DATA_DIR=../shared/data python -m experiments.lecture --workdir runs/lecture
    python -m experiments.lecture --workdir /tmp/lecture --quick      # smoke test, under a minute

Rerunning with the same WORKDIR reuses the finished runs (``resume``); use a new directory to
time everything afresh. ``--docs`` copies the figures into ``docs/figures`` (with manifest
entries) and the table into ``docs/data/lecture.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import lecture_autoencoder, lecture_vae2d
from jvae import (VAE, make_evaluator, reconstruction_terms, restore_run, train_and_evaluate,
                  tsne_map)
from jvae import data as jdata, plotting
from jvae.classic import (fit_pca, fit_ppca, pca_decode, pca_encode, ppca_log_likelihood,
                          ppca_posterior)

ROOT = pathlib.Path(__file__).resolve().parent.parent

CLIP = 1e-3          # PCA/PPCA reconstructions are clipped to [CLIP, 1 - CLIP] for their BCE
DEFINITIONS = {
    "sse": "sum over the 784 pixels of (x - x_hat)^2, per test image: [mean, standard error]",
    "bce": "sum over the pixels of -[x log x_hat + (1 - x) log(1 - x_hat)] per test image (AE, "
           "VAE: BCE with logits; PCA, PPCA: x_hat clipped to [0.001, 0.999]); the floor row is "
           "sum_i H(x_i), the BCE of a perfect reconstruction of grey levels",
    "x_hat": "PCA: projection onto the 2 components; PPCA: W E[z|x] + mu; AE: decoder mean of "
             "the code; VAE: decoder mean of the posterior mean",
    "elbo": "VAE test ELBO per image, analytic KL, 10 posterior samples",
    "log_px_importance": "VAE test log p(x) per image, importance sampled with ll_samples "
                         "samples of q(z|x)",
    "log_px_exact_gaussian": "PPCA's exact log-density on R^784 per image (continuous; not "
                             "comparable with the VAE's Bernoulli likelihood)",
}
FIGURE_CODE = ("jvae/plotting/latent_space.py", "jvae/plotting/image_panels.py",
               "jvae/plotting/_common.py", "experiments/lecture.py")


def _flat(x) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(len(x), -1)


def pixel_errors(x, x_hat) -> dict:
    """Per-image SSE and clipped BCE of reconstructions in pixel space (``[N, D]``)."""
    x, p = _flat(x), np.clip(_flat(x_hat), CLIP, 1.0 - CLIP)
    bce = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=1)
    return {"sse": np.sum((x - _flat(x_hat)) ** 2, axis=1), "bce": bce}


def bce_floor(x) -> np.ndarray:
    """``sum_i H(x_i)``: the BCE of a perfect reconstruction of grey levels, per image."""
    x = np.clip(_flat(x), 1e-12, 1 - 1e-12)
    return -np.sum(x * np.log(x) + (1 - x) * np.log1p(-x), axis=1)


def _summary(values) -> list[float]:
    """``[mean, standard error]`` over the test images."""
    v = np.asarray(values, np.float64)
    return [float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0]


def train(config, workdir: pathlib.Path):
    """Train (or reuse a finished run in) ``workdir``; return ``(model, params, seconds)``."""
    t0 = time.perf_counter()
    train_and_evaluate(config, workdir, resume=True, progress=False)
    seconds = time.perf_counter() - t0
    _, _, model, state = restore_run(workdir)
    return model, state.params, seconds


def encode_decode(model, params, key, x):
    """Posterior means and standard deviations ``[N, D]``, decoder means of the mean
    (``[N, ...]``) and of one posterior sample, and the reconstruction errors of the mean."""
    @jax.jit
    def run(x):
        q = model.apply(params, x, method=VAE.encode)
        z = q.mean()
        dec = model.apply(params, z, method=VAE.decode).mean()
        sample = model.apply(params, q.sample(seed=key), method=VAE.decode).mean()
        bce, sse = reconstruction_terms(model, params, x)
        return z, q.stddev(), dec, sample, bce, sse

    return [np.asarray(a) for a in run(jnp.asarray(x))]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--ll-samples", type=int, default=1000,
                        help="K importance samples for the VAE's test log p(x)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2000 training images, 1 epoch, 300 test images, K=20")
    parser.add_argument("--docs", action="store_true",
                        help="copy the figures to docs/figures and the table to docs/data")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    workdir = pathlib.Path(args.workdir)
    figdir = workdir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    ll_samples = 20 if args.quick else int(args.ll_samples)
    n_test = 300 if args.quick else 10000
    # The analytic KL (the lecture's text, TraceMeanField_ELBO): the numbers of
    # docs/results/lecture.md; the lecture's code's Trace_ELBO is experiments/notebooks/lecture.py's.
    configs = {"autoencoder": lecture_autoencoder.get_config(),
               "vae2d": lecture_vae2d.get_config("kl=analytic")}
    for c in configs.values():
        if args.quick:
            c.num_epochs, c.dataset.limit_train, c.dataset.limit_eval = 1, 2000, 200
            c.figures = False
    times, key = {}, jax.random.key(0)

    # ---- data: the training part of the 70/30 split, the test set
    ds = configs["autoencoder"].dataset
    train_split = jdata.load_split("mnist", "train", data_dir=ds.data_dir or None,
                                   validation_size=int(ds.validation_size))
    train_x = np.asarray(train_split.images[: ds.limit_train or None], np.float32)
    test = jdata.load_split("mnist", "test", data_dir=ds.data_dir or None)
    x, labels = np.asarray(test.images[:n_test], np.float32), np.asarray(test.labels[:n_test])
    rows, extra = {}, {}

    # ---- PCA and PPCA (closed form)
    t0 = time.perf_counter()
    pca = fit_pca(_flat(train_x).astype(np.float32), 10)
    pca2 = pca._replace(components=pca.components[:2],
                        explained_variance=pca.explained_variance[:2],
                        explained_variance_ratio=pca.explained_variance_ratio[:2],
                        singular_values=pca.singular_values[:2])
    z_pca = np.asarray(pca_encode(pca2, _flat(x)))
    x_pca = np.asarray(pca_decode(pca2, z_pca))
    rows["PCA-2"] = {k: _summary(v) for k, v in pixel_errors(x, x_pca).items()}
    ppca = fit_ppca(_flat(train_x).astype(np.float32), 2)
    post = ppca_posterior(ppca, _flat(x).astype(np.float32))
    x_ppca = np.asarray(post.mean() @ ppca.W.T + ppca.mu)
    rows["PPCA-2"] = {k: _summary(v) for k, v in pixel_errors(x, x_ppca).items()}
    rows["PPCA-2"]["log_px_exact_gaussian"] = _summary(
        ppca_log_likelihood(ppca, _flat(x).astype(np.float32)))
    extra["ppca_sigma2"] = float(ppca.sigma2)
    extra["pca_explained_variance_ratio"] = np.asarray(pca.explained_variance_ratio).tolist()
    times["pca_ppca"] = time.perf_counter() - t0

    plotting.save_code_scatter(z_pca, labels, figdir / "lecture_pca_projection.png",
                               axis_labels=("PC 1", "PC 2"),
                               title="MNIST test images on the first two principal components")
    ratio = np.asarray(pca.explained_variance_ratio)
    plotting.save_components(np.asarray(pca.components), figdir / "lecture_pca_components.png",
                             titles=[f"PC {i + 1} ({r:.1%})" for i, r in enumerate(ratio)],
                             title="principal components of MNIST (share of the variance)")
    plotting.save_reconstruction_rows(x[:10], x_pca[:10].reshape(x[:10].shape),
                                      figdir / "lecture_pca_reconstructions.png", diff_range=1.0,
                                      title="PCA with 2 components: test images and their "
                                            "projections")

    # ---- the autoencoder
    ae, ae_params, times["autoencoder_train"] = train(configs["autoencoder"],
                                                      workdir / "autoencoder")
    t0 = time.perf_counter()
    codes, _, ae_rec, _, ae_bce, ae_sse = encode_decode(ae, ae_params, key, x)
    rows["AE-2"] = {"sse": _summary(ae_sse), "bce": _summary(ae_bce)}
    decode_ae = jax.jit(lambda z: ae.apply(ae_params, z, method=VAE.decode).mean())
    plotting.save_code_scatter(codes, labels, figdir / "lecture_ae_latents.png",
                               title="autoencoder codes of the MNIST test images")
    plotting.save_reconstruction_rows(x[:10], ae_rec[:10], figdir / "lecture_ae_reconstructions.png",
                                      diff_range=1.0, title="autoencoder: test images and their "
                                                            "reconstructions")
    lims = np.quantile(codes, [0.02, 0.98], axis=0).T
    plotting.save_manifold(lambda z: decode_ae(jnp.asarray(z)), codes,
                           figdir / "lecture_ae_manifold.png", limits=lims,
                           title="autoencoder: decoder means over the central 96% of the codes")
    times["autoencoder_eval"] = time.perf_counter() - t0

    # ---- the 2-D VAE
    vae, vae_params, times["vae_train"] = train(configs["vae2d"], workdir / "vae2d")
    t0 = time.perf_counter()
    mean, std, vae_rec, vae_smp, vae_bce, vae_sse = encode_decode(vae, vae_params, key, x)
    evaluator = make_evaluator(vae, batch_size=500, elbo_samples=10, ll_samples=ll_samples,
                               ll_chunk=100)
    metrics = {k: float(v) for k, v in evaluator(vae_params, jax.random.key(1), x).items()}
    rows["VAE-2"] = {"sse": _summary(vae_sse), "bce": _summary(vae_bce),
                     "elbo": metrics["elbo"], "rate": metrics["rate"],
                     "distortion": metrics["distortion"],
                     "log_px_importance": metrics["log_likelihood"]}
    times["vae_eval"] = time.perf_counter() - t0
    decode_vae = jax.jit(lambda z: vae.apply(vae_params, z, method=VAE.decode).mean())
    n_bars = min(len(x), 2000)
    plotting.save_code_scatter(mean[:n_bars], labels[:n_bars], figdir / "lecture_vae_latents.png",
                               errors=std[:n_bars],
                               title="2-D VAE: posterior means of MNIST test images")
    plotting.save_reconstruction_rows(x[:10], vae_rec[:10], figdir / "lecture_vae_reconstructions.png",
                                      sample=vae_smp[:10], diff_range=0.25,
                                      title="2-D VAE: test images, decoded posterior mean and "
                                            "sample, their difference")
    plotting.save_manifold(lambda z: decode_vae(jnp.asarray(z)), mean,
                           figdir / "lecture_vae_manifold.png",
                           title="2-D VAE: decoder means on a 30x30 grid over [-3, 3]^2")
    rows["BCE floor (the data itself)"] = {"sse": [0.0, 0.0], "bce": _summary(bce_floor(x))}

    # ---- t-SNE of the 10-D PPCA posterior means (a latent space of more than 2 dimensions)
    t0 = time.perf_counter()
    n_tsne = min(len(x), 2000)
    try:
        ppca10 = fit_ppca(_flat(train_x).astype(np.float32), 10)
        means10 = np.asarray(ppca_posterior(ppca10, _flat(x[:n_tsne]).astype(np.float32)).mean())
        m = tsne_map(means10, labels[:n_tsne])
        plotting.save_latent_tsne(m.embedding, m.labels, figdir / "lecture_ppca10_tsne.png",
                                  total=m.total, perplexity=m.perplexity,
                                  title="t-SNE of 10-D PPCA posterior means (test images)")
    except ImportError as e:
        print(f"skipped lecture_ppca10_tsne.png: {e}", file=sys.stderr)
    times["tsne"] = time.perf_counter() - t0

    times["total"] = time.perf_counter() - t_start
    result = {"measured": datetime.date.today().isoformat(), "quick": bool(args.quick),
              "test_images": int(len(x)), "ll_samples": ll_samples,
              "train_images": int(len(train_x)), "epochs": int(configs["vae2d"].num_epochs),
              "rows": rows, "seconds": {k: round(v, 1) for k, v in times.items()},
              "device": jax.devices()[0].device_kind, "definitions": DEFINITIONS, **extra}
    (workdir / "lecture.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(result)
    (workdir / "lecture.md").write_text(table)
    print(table)
    print(f"figures in {figdir}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    print(f"lecture.py took {times['total']:.1f} s")
    if args.docs:
        write_docs(result, figdir, configs)
    return result


def markdown_table(result: dict) -> str:
    """The comparison table (mean +- standard error over the test images)."""
    def cell(row, key):
        v = row.get(key)
        if v is None:
            return ""
        return f"{v[0]:.2f} +- {v[1]:.2f}" if isinstance(v, list) else f"{v:.2f}"

    k = result["ll_samples"]
    lines = [f"| model | SSE per image | BCE per image | test ELBO | test log p(x) |",
             "|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        bce = cell(row, "bce") + (" (clipped)" if name.startswith(("PCA", "PPCA")) else "")
        if "log_px_importance" in row:
            ll = f"{row['log_px_importance']:.2f} (importance sampled, K = {k})"
        elif "log_px_exact_gaussian" in row:
            ll = f"{cell(row, 'log_px_exact_gaussian')} (exact; Gaussian density, not comparable)"
        else:
            ll = ""
        sse = "0" if name.startswith("BCE floor") else cell(row, "sse")
        lines.append(f"| {name} | {sse} | {bce} | {cell(row, 'elbo')} | {ll} |")
    return "\n".join(lines) + (f"\n\n{result['test_images']} MNIST test images, nats / squared "
                               f"grey levels per image; {result['train_images']} training images, "
                               f"{result['epochs']} epochs ({result['measured']}).\n")


def write_docs(result: dict, figdir: pathlib.Path, configs: dict) -> None:
    """Copy the figures into docs/figures with manifest entries (``experiments.figures``
    has no source kind for a script's figures, so this script records them itself), and the
    table into docs/data/lecture.json."""
    from experiments.figures import record_script_figures

    for line in record_script_figures(
            sorted(figdir.glob("lecture_*.png")),
            command="python -m experiments.lecture --workdir runs/lecture --docs",
            code=FIGURE_CODE, source={k: c.to_dict() for k, c in configs.items()},
            generated=result["measured"]):
        print(line)
    (ROOT / "docs" / "data" / "lecture.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
