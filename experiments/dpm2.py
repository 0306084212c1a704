"""The DPM2 notebook's experiment end to end: every variant trained as the notebook trains it.

The notebook (``../shared/seeds/000_619c3ffbc947839a.txt``) trains on binarised Fashion-MNIST
at 64x64, latent size 10, batch 256, 5 epochs, holding out a random 1000-image dev split of
the 60000 training images; it assesses D, R, ELBO and the importance-sampled L on the dev split
at step 0, every 100 steps and at the end, and logs the training metrics at every step. Each
variant below is ``experiments/configs/fashion_mnist_dpm2.py`` with the notebook's dropout
(p = 0.1 before the decoder's dense layers), its networks (the FFNN encoder's 1024-unit layer
without an activation, the posterior head's ``Linear(1024, 20)`` + ReLU), PyTorch's
initialisation, the DataLoader's last partial batch kept (231 steps an epoch) and that
protocol:

================================  ==================================================
``nvil_none`` ... ``nvil_baseline``  the notebook's SFE: ``NVIL.forward`` on the
                                  2-component mixture posterior (no ``rsample``), so
                                  the score-function surrogate (objective ``nvil``),
                                  RMSprop with the notebook's learning rates, one run
                                  per control-variate chain: none, centred,
                                  self-critic (+ centred, scaled), baseline
                                  (centred + baseline + scaled)
``vae_mlp``                       the classic VAE: FFNN encoder/decoder, Gaussian prior
                                  and posterior, reparameterised ELBO, Adam 1e-3
``mixture_prior``                 a learned 10-component mixture-of-Gaussians prior
``beyond_mixture_estimator``      "Beyond": the mixture posterior with the mixture
                                  estimator (score function for the component only)
``vae_mlp_continuous``            grey images, ContinuousBernoulli (``bin_data = False``)
``vae_cnn``                       the classic VAE with the notebook's CNN
``vae_cnn_continuous``            the same, grey images and ContinuousBernoulli
``extra_sfe_gaussian_*``          extras, not the notebook's: the score-function
                                  estimator forced onto the Gaussian posterior, one
                                  run per chain
================================  ==================================================

No two variants share every shape and the estimator state, so each trains as its own program.
Each run writes its figures (``curves.png``, ``steps.png``, ``dev.png``, prior samples with
oversampling, conditional samples, and for the mixture prior its histograms, pair plot and
t-SNE) into ``WORKDIR/<variant>/``; the script writes ``WORKDIR/results.md`` and
``results.json``: dev ELBO, D, R and L (K = 100) at the end and the training seconds.

    JVAE_DATA_DIR=../shared/data python -m experiments.dpm2 --workdir runs/dpm2
    python -m experiments.dpm2 --quick --workdir runs/dpm2_quick    # 1 epoch, CNNs on 12000

``--quick`` trains every variant for one epoch (the CNN variants on 12000 images) with
assessments every 50 steps; ``--only vae_mlp,nvil_none`` picks variants; ``--resume`` continues
runs whose work directory exists.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import pathlib
import time

import numpy as np

from experiments.configs import fashion_mnist_dpm2
from jvae import read_metrics, train_and_evaluate
from jvae.runs import read_jsonl
# Not public: the file names of a run's dev and step logs.
from jvae.runs import DEV_FILE, STEPS_FILE

# The CNN decoder's activations for eval.batch_size x ll_chunk = 500 x 100 decodes at once
# exceed the memory (std::bad_alloc in the final K = 100 assessment): 500 x 10 at a time.
CNN = {"model.encoder": "conv", "model.decoder": "conv", "model.conv_preset": "dpm2",
       "model.conv_encoder_out": 0, "eval.ll_chunk": 10}
CONTINUOUS = {"dataset.binarize": "none", "model.likelihood": "continuous_bernoulli"}
NVIL = "posterior=mixture,estimator=nvil"
# name -> (fashion_mnist_dpm2 variant string, field changes, one-line description). The
# order is the order of the full run: the notebook's NVIL runs first.
VARIANTS = {
    # The notebook's SFE: NVIL.forward on the mixture posterior (MoGCPDNet, 2 components),
    # which has no rsample, so the score-function surrogate with the control-variate chain.
    "nvil_none": (f"{NVIL},cv=none", {},
                  "NVIL, mixture posterior (2), no control variate"),
    "nvil_centred": (f"{NVIL},cv=centred", {},
                     "NVIL, mixture posterior (2), centred"),
    "nvil_critic": (f"{NVIL},cv=critic", {},
                    "NVIL, mixture posterior (2), self-critic + centred + scaled"),
    "nvil_baseline": (f"{NVIL},cv=baseline", {},
                      "NVIL, mixture posterior (2), centred + baseline + scaled"),
    "vae_mlp": ("", {}, "classic VAE, FFNN, binarised"),
    "mixture_prior": ("prior=mixture", {}, "mixture-of-Gaussians prior (10), reparam"),
    "beyond_mixture_estimator": ("posterior=mixture,estimator=mixture", {},
                                 "Beyond: mixture posterior (2), mixture estimator, critic"),
    "vae_mlp_continuous": ("", CONTINUOUS, "classic VAE, FFNN, ContinuousBernoulli"),
    # The CNN variants: each takes about as long as the FFNN variants together.
    "vae_cnn": ("", CNN, "classic VAE, CNN, binarised"),
    "vae_cnn_continuous": ("", {**CNN, **CONTINUOUS}, "classic VAE, CNN, ContinuousBernoulli"),
    # Extras, not in the notebook: the score-function estimator forced onto the Gaussian
    # posterior (jvae's `sfe` objective ignores that q could be reparameterised).
    "extra_sfe_gaussian_none": ("estimator=sfe,cv=none", {},
                                "extra: SFE forced on the Gaussian posterior, none"),
    "extra_sfe_gaussian_centred": ("estimator=sfe,cv=centred", {},
                                   "extra: SFE forced on the Gaussian posterior, centred"),
    "extra_sfe_gaussian_critic": ("estimator=sfe,cv=critic", {},
                                  "extra: SFE forced on the Gaussian posterior, critic chain"),
    "extra_sfe_gaussian_baseline": ("estimator=sfe,cv=baseline", {},
                                    "extra: SFE forced on the Gaussian posterior, baseline chain"),
}
# The notebook's protocol (train_vae and its assess) and networks: the FFNN encoder's last
# layer without an activation and the heads' Linear(1024, 2 * latent) + ReLU
# (GaussianCPDNet / MoGCPDNet(hidden_size=2 * latent)), PyTorch's initialisation, the mixture
# posterior without jvae's component offsets, and the DataLoader's last partial batch
# (59000 = 230 x 256 + 120: 231 steps an epoch, 1155 in all). L is assessed with K = 10
# importance samples at every dev assessment (the notebook's sample_size_eval = 1 makes its
# L one importance weight) and with K = 100 at the last.
PROTOCOL = {"dataset.train_split": "train_full", "dataset.dev_size": 1000,
            "dataset.dev_seed": 0, "dataset.eval_split": "test", "eval.every_steps": 100,
            "eval.dev_ll_samples": 10, "eval.dev_final_ll_samples": 100,
            "model.decoder_dropout": 0.1, "figures": True, "drop_last": False,
            "model.init": "torch", "model.encoder_hidden": (512, 512, 1024),
            "model.encoder_activate_final": False, "model.posterior_hidden": 20,
            "model.posterior_init_spread": 0.0}
QUICK = {"num_epochs": 1, "eval.every_steps": 50}
QUICK_CNN = {"dataset.limit_train": 12000}


def _set(config, changes: dict) -> None:
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"{dotted}: no such config field")
        node[leaf] = value


def variant_config(name: str, quick: bool = False, epochs: int = 0):
    """The config of variant ``name`` (see ``VARIANTS``) under the notebook's protocol."""
    if name not in VARIANTS:
        close = difflib.get_close_matches(name, list(VARIANTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"Unknown DPM2 variant {name!r}; {hint}choose from {list(VARIANTS)}.")
    variant, changes, _ = VARIANTS[name]
    config = fashion_mnist_dpm2.get_config(variant)
    _set(config, {**PROTOCOL, **changes})
    if quick:
        _set(config, QUICK)
        if changes.get("model.encoder") == "conv":
            _set(config, QUICK_CNN)
    if epochs:
        config.num_epochs = int(epochs)
    return config


def summarise(name: str, workdir: pathlib.Path) -> dict:
    """The variant's row: the last dev assessment (K = 100) and the training seconds."""
    records = read_metrics(workdir)
    last = records[-1]
    return {"variant": name, "what": VARIANTS[name][2], "epochs": last["epoch"],
            "steps": last["step"],
            **{k: last.get(f"dev/{k}") for k in ("elbo", "distortion", "rate",
                                                   "log_likelihood")},
            "test_elbo": last.get("eval/elbo"),
            # the last five dev assessments (steps 800-1155 of a full run): less noisy than
            # the final one for the score-function runs
            "elbo_last5": float(np.mean([r["dev/elbo"] for r in
                                         read_jsonl(workdir / DEV_FILE)[-5:]])),
            "train_seconds": sum(r["train/seconds"] for r in records),
            "dev_seconds": sum(r.get("dev/seconds_in_epoch", 0.0) for r in records)}


def results_table(rows: list[dict]) -> str:
    head = ("| variant | what | dev ELBO | D | R | L (K=100) | test ELBO | train s | dev s |\n"
            "|---|---|---|---|---|---|---|---|---|\n")

    def f(v):
        return "" if v is None else f"{v:.2f}"
    return head + "".join(
        f"| `{r['variant']}` | {r['what']} | {f(r['elbo'])} | {f(r['distortion'])} | "
        f"{f(r['rate'])} | {f(r['log_likelihood'])} | {f(r['test_elbo'])} | "
        f"{r['train_seconds']:.0f} | {r['dev_seconds']:.0f} |\n" for r in rows)


def curves(workdir: pathlib.Path, every: int = 5) -> dict:
    """A run's dev assessments (step, ELBO, D, R, L) and its training ELBO, D, R (and the
    score-function signal's statistics and the learned baseline's loss, where the run has
    them) as trailing moving averages of 23 steps, every ``every``-th step."""
    dev = read_jsonl(workdir / DEV_FILE)
    out = {"dev_step": [r["step"] for r in dev],
           **{f"dev_{k}": [r.get(f"dev/{k}") for r in dev] for k in ("elbo", "distortion",
                                                                       "rate",
                                                                       "log_likelihood")}}
    steps = read_jsonl(workdir / STEPS_FILE)
    out["step"] = [r["step"] for r in steps][::every]
    for k in ("elbo", "distortion", "rate", "cv/baseline_loss", "signal_std",
              "centred_signal_std"):
        values = np.array([r.get(f"train/{k}", np.nan) for r in steps], np.float64)
        if np.all(np.isnan(values)):
            continue
        smooth = np.convolve(values, np.ones(23) / 23, mode="full")[:len(values)]
        smooth[:22] = np.cumsum(values[:22]) / np.arange(1, 23)[:len(values[:22])]
        out[f"train_{k.replace('/', '_')}"] = [round(float(v), 3) for v in smooth[::every]]
    return out


def partial_row(name: str, workdir: pathlib.Path) -> dict:
    """A run stopped before its end: the last dev assessment it reached (step, ELBO, D, R,
    L with K = 10) and its training seconds so far."""
    last = read_jsonl(workdir / DEV_FILE)[-1]
    return {"variant": name, "what": VARIANTS[name][2], "step": last["step"],
            **{k: last.get(f"dev/{k}") for k in ("elbo", "distortion", "rate",
                                                   "log_likelihood")},
            "train_seconds": sum(r["train/seconds"] for r in read_metrics(workdir))}


DOCS_DATA = pathlib.Path(__file__).resolve().parents[1] / "docs" / "data" / "dpm2.json"


def merge_docs_data(new: dict, previous: dict) -> dict:
    """``new`` (this command's runs) with the rows, partial rows and curves of every other
    variant kept from ``previous`` (an earlier ``docs/data/dpm2.json``). Each row keeps its
    own ``measured`` date; a variant of this command replaces its earlier row, finished or
    partial. Refuses to merge a quick run with a full one."""
    if bool(previous.get("quick")) != bool(new["quick"]):
        raise SystemExit("--merge: cannot merge a --quick run with a full one "
                         f"(earlier quick={previous.get('quick')}, this run quick={new['quick']})")
    ours = {r["variant"] for r in new["rows"] + new["partial"]}

    def kept(rows: list[dict]) -> list[dict]:
        return [{**r, "measured": r.get("measured", previous.get("measured"))}
                for r in rows if r["variant"] not in ours]
    return {**new, "measured": max([new["measured"]] + [r["measured"] for r in
                                                        kept(previous.get("rows", []))]),
            "rows": kept(previous.get("rows", [])) + new["rows"],
            "partial": kept(previous.get("partial", [])) + new["partial"],
            "curves": {**{k: v for k, v in previous.get("curves", {}).items() if k not in ours},
                       **new["curves"]}}


def write_docs_data(rows: list[dict], root: pathlib.Path, quick: bool,
                    partial: tuple[str, ...] = (), merge: pathlib.Path | None = None,
                    path: pathlib.Path = DOCS_DATA) -> pathlib.Path:
    """``docs/data/dpm2.json``: the results rows and every run's curves, the numbers the
    results page and its figures (``python -m experiments.figures dpm2 dpm2_training``)
    show; ``partial`` names runs stopped before their end (their last assessment and curves
    so far, under ``"partial"``). ``merge``: an earlier such file whose other variants are
    kept (:func:`merge_docs_data`), so one variant can be rerun and published alone."""
    today = datetime.date.today().isoformat()
    data = {"measured": today, "quick": quick,
            "load_average": list(os.getloadavg()),
            "rows": [{**r, "measured": today} for r in rows],
            "partial": [{**partial_row(n, root / n), "measured": today} for n in partial],
            "curves": {n: curves(root / n) for n in [r["variant"] for r in rows]
                       + list(partial)}}
    if merge is not None:
        if not merge.is_file():
            raise SystemExit(f"--merge: no such file {merge}")
        data = merge_docs_data(data, json.loads(merge.read_text()))
    path.write_text(json.dumps(data, indent=1) + "\n")
    if not quick:
        from experiments.provenance import record_if_published
        record_if_published(path)
    return path


def cv_ordering(rows: list[dict], prefix: str) -> str:
    """The control-variate chains of the runs named ``prefix + chain``, best first, by the
    final dev ELBO and by the mean of the last five dev assessments."""
    group = [r for r in rows if r["variant"].startswith(prefix)]
    if not group:
        return ""
    by_final = sorted(group, key=lambda r: -r["elbo"])
    by_last5 = sorted(group, key=lambda r: -r["elbo_last5"])
    name = len(prefix)
    return (f"\n`{prefix}*` control variates by dev ELBO (best first): "
            + " > ".join(f"`{r['variant'][name:]}` {r['elbo']:.2f}" for r in by_final)
            + "\n\nBy the mean dev ELBO of the last five assessments: "
            + " > ".join(f"`{r['variant'][name:]}` {r['elbo_last5']:.2f}" for r in by_last5)
            + "\n")


def _write_results(root: pathlib.Path, rows: list[dict], t_all: float | None,
                   done: bool) -> str:
    """``WORKDIR/results.md`` and ``results.json`` of the variants finished so far (rewritten
    after each, so a long run's table is there while it goes on)."""
    table = results_table(rows) + cv_ordering(rows, "nvil_") + cv_ordering(
        rows, "extra_sfe_gaussian_")
    if t_all is not None and done:
        table += f"\nWall time of the whole command: {time.perf_counter() - t_all:.0f} s.\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.md").write_text(table)
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    return table


# The run figures the docs page shows, by variant (copied by --docs when the run exists).
DOC_FIGURES = {
    "vae_mlp": ("prior_oversampled.png", "conditional_samples.png", "steps.png"),
    "nvil_critic": ("prior_oversampled.png", "conditional_samples.png", "steps.png"),
    "nvil_none": ("prior_oversampled.png", "conditional_samples.png", "steps.png", "dev.png"),
    "vae_cnn": ("prior_oversampled.png", "conditional_samples.png"),
    "mixture_prior": ("prior_histograms.png", "prior_pairs.png", "prior_tsne.png"),
}


def copy_run_figures(rows: list[dict], root: pathlib.Path) -> list[str]:
    """Copy the run figures of ``DOC_FIGURES`` of the summarised variants to
    ``docs/figures/dpm2_<variant>_<figure>.png`` with their manifest entries; returns one
    line per figure."""
    import shutil
    import tempfile

    from experiments.figures import record_script_figures

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            name = row["variant"]
            pngs = []
            for figure in DOC_FIGURES.get(name, ()):
                if (root / name / figure).exists():
                    pngs.append(pathlib.Path(tmp) / f"dpm2_{name}_{figure}")
                    shutil.copyfile(root / name / figure, pngs[-1])
            lines += record_script_figures(
                pngs, command=f"python -m experiments.dpm2 --only {name} --docs",
                code=("experiments/dpm2.py", "jvae/runs/figures.py"),
                source=variant_config(name).to_dict())
    return lines


def _recorded_wall_seconds(workdir: pathlib.Path) -> float | None:
    """The wall seconds the training command recorded for this run (``results.json`` beside
    the run's real directory), or None."""
    path = workdir.resolve().parent / "results.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    return next((r.get("wall_seconds") for r in rows if r["variant"] == workdir.name), None)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/dpm2")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--epochs", type=int, default=0, help="override num_epochs")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-train", action="store_true",
                        help="only summarise the runs already in WORKDIR (no training)")
    parser.add_argument("--partial", default="",
                        help="with --no-train --docs: comma-separated runs stopped before "
                             "their end, published as such")
    parser.add_argument("--docs", action="store_true",
                        help="also write docs/data/dpm2.json (then: python -m experiments.figures dpm2)")
    parser.add_argument("--merge", default="",
                        help="with --docs: an earlier docs/data/dpm2.json whose other variants "
                             "are kept (publish one rerun variant beside the others)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    configs = {n: variant_config(n, args.quick, args.epochs) for n in names}  # fail early
    root = pathlib.Path(args.workdir)
    rows, t_all = [], time.perf_counter()
    for name, config in configs.items():
        t0 = time.perf_counter()
        print(f"# {name}: {VARIANTS[name][2]}", flush=True)
        if not args.no_train:
            train_and_evaluate(config, root / name, resume=args.resume, progress=False)
        rows.append(summarise(name, root / name))
        rows[-1]["wall_seconds"] = (time.perf_counter() - t0 if not args.no_train
                                    else _recorded_wall_seconds(root / name))
        print(f"# {name}: dev ELBO {rows[-1]['elbo']:.2f}, L {rows[-1]['log_likelihood']}, "
              f"{rows[-1]['wall_seconds'] or 0:.0f} s", flush=True)
        table = _write_results(root, rows,
                               t_all if not (args.no_train or args.resume) else None,
                               done=len(rows) == len(configs))
    print(table)
    if args.docs:
        partial = tuple(n for n in args.partial.split(",") if n)
        merge = pathlib.Path(args.merge) if args.merge else None
        print(f"wrote {write_docs_data(rows, root, args.quick, partial, merge)}")
        for line in copy_run_figures(rows, root):
            print(line)
    return rows


if __name__ == "__main__":
    main()
