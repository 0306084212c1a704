"""ELBO (k = 1) against IWAE (k = 5) training on MNIST, scored by the K = 5000 log-likelihood.

Trains ``experiments/configs/iwae_mnist.py`` (the IWAE paper's one-stochastic-layer MNIST
model, Burda et al., 2016) once per ``--ks`` value on the same short budget (``--stages``
stages of the paper's schedule, ``(3^stages - 1) / 2`` epochs; optionally ``--limit-train``
training images), then evaluates every model on the same test images with the same keys:

* test ELBO (one sample per image, analytic KL),
* test IWAE bound with K = 5 (``--iwae-k``),
* test log-likelihood estimated by importance sampling with K = 5000 (``--ll-samples``),
  via :func:`jvae.make_evaluator`.

The test images are evaluated in blocks of ``--eval-block`` images (one jitted call each), so
the script prints progress, a standard error of each mean from the spread of the block means,
and a paired standard error of each difference to the first model (same images, same
blocks). Prints a table and writes ``OUTDIR/results.json``; each run lives in ``OUTDIR/k<k>``
(a finished run there is reused; ``--retrain`` starts it afresh).

Cost on a 2-core CPU (measured while other processes used the CPU too): K = 5000 takes about
0.1 s per test image for this model, so the whole test set (10000 images) costs about
16 minutes *per model*. The default ``--eval-limit 2000`` therefore evaluates the first 2000
test images (the count used is printed); ``--eval-limit 0`` uses all 10000. Training costs
about 8 s (k = 1) and 15 s (k = 5) per epoch of 3000 steps (batch 20).

Example (12 minutes on a shared 2-core CPU: 13 epochs each, 2 x 2000 test images)::

    JVAE_DATA_DIR=../shared/data python -m experiments.iwae_compare --stages 3 --eval-limit 2000

Paper (Table 1, MNIST, one stochastic layer, 3280 epochs, all 10000 test images): VAE k = 1
-86.76, IWAE k = 5 -85.54, IWAE k = 50 -84.78. A short budget gives much lower numbers; the
comparison of interest is the ordering and the gap between k = 1 and k = 5.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

import ml_collections

from experiments.configs import iwae_mnist
from jvae import Checkpointer, make_evaluator, read_metrics, restore_run, train_and_evaluate


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", default="1,5", help="training k values, comma separated (default 1,5)")
    p.add_argument("--stages", type=int, default=3,
                   help="stages of the IWAE schedule: (3^stages - 1) / 2 epochs (default 3: 13)")
    p.add_argument("--estimator", default="iwae", choices=("iwae", "stl", "dreg"))
    p.add_argument("--limit-train", type=int, default=0,
                   help="train on the first N training images (0: all 60000)")
    p.add_argument("--eval-limit", type=int, default=2000,
                   help="evaluate on the first N test images (0: all 10000; default 2000)")
    p.add_argument("--eval-block", type=int, default=100,
                   help="test images per jitted evaluation call (default 100)")
    p.add_argument("--ll-samples", type=int, default=5000, help="K of the log-likelihood")
    p.add_argument("--ll-chunk", type=int, default=100, help="samples drawn at once")
    p.add_argument("--iwae-k", type=int, default=5, help="K of the cheap IWAE bound (0: skip)")
    p.add_argument("--seed", type=int, default=0, help="training seed (same for every k)")
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument("--outdir", default="runs/iwae_compare")
    p.add_argument("--retrain", action="store_true", help="delete and retrain existing runs")
    p.add_argument("--figures", action="store_true", help="write the runs' figures")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        args.ks = [int(k) for k in args.ks.split(",") if k.strip()]
    except ValueError:
        p.error(f"--ks must be comma-separated integers, got {args.ks!r}")
    if not args.ks or min(args.ks) <= 0:
        p.error("--ks needs positive integers")
    for name in ("stages", "eval_block", "ll_samples", "ll_chunk"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("limit_train", "eval_limit", "iwae_k"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


def run_config(args, k: int) -> ml_collections.ConfigDict:
    config = iwae_mnist.get_config(f"k={k},stages={args.stages},estimator={args.estimator}")
    config.seed = args.seed
    config.dataset.limit_train = args.limit_train
    config.eval.ll_samples = 0          # the K = 5000 evaluation happens below, on a subset
    config.checkpoint_every = 0         # only the final checkpoint
    config.figures = bool(args.figures)
    return config


def train(args, k: int, workdir: pathlib.Path) -> dict:
    """Train (or reuse) the run of ``k``; returns a summary of its training."""
    config = run_config(args, k)
    num_epochs = int(config.num_epochs)
    latest = Checkpointer(workdir / "checkpoints").latest_epoch() if workdir.exists() else None
    if workdir.exists() and args.retrain:
        shutil.rmtree(workdir)
        latest = None
    reused = False
    if latest is not None:
        saved = json.loads((workdir / "config.json").read_text())
        if saved != json.loads(json.dumps(config.to_dict())) or latest != num_epochs:
            raise SystemExit(f"{workdir} holds a different or unfinished run (epoch {latest}); "
                             "pass --retrain or choose another --outdir.")
        reused = True
        print(f"[k={k}] reusing the finished run in {workdir}", flush=True)
        seconds = float("nan")
    else:
        print(f"[k={k}] training {num_epochs} epochs ({args.stages} stages) into {workdir}",
              flush=True)
        t0 = time.perf_counter()
        train_and_evaluate(config, workdir, progress=not args.no_progress)
        seconds = time.perf_counter() - t0
    history = read_metrics(workdir)
    last = history[-1]
    n_train = (args.limit_train or 60000)
    steps_per_epoch = n_train // int(config.batch_size)
    return {
        "k": k, "estimator": args.estimator, "stages": args.stages, "epochs": num_epochs,
        "train_images": n_train, "steps": int(last["step"]),
        "steps_per_epoch": steps_per_epoch, "train_seconds": seconds, "reused": reused,
        "compile_seconds": history[0].get("train/compile_seconds") if history else None,
        "epoch_seconds": [r["train/seconds"] for r in history],
        "final_train_bound": last.get("train/iwae"),
        "final_eval_elbo_full_test": last.get("eval/elbo"),
    }


def evaluate(args, workdir: pathlib.Path, evaluators: dict) -> dict:
    """Block-wise evaluation of the newest checkpoint on the first ``--eval-limit`` test
    images; returns means, block means and timings."""
    config, datasets, model, state = restore_run(workdir)
    test = datasets.eval[: args.eval_limit or None]
    n = len(test)
    if not evaluators:
        evaluators["ll"] = make_evaluator(model, batch_size=args.eval_block,
                                          ll_samples=args.ll_samples, ll_chunk=args.ll_chunk)
        if args.iwae_k:
            evaluators["iwae"] = make_evaluator(model, batch_size=args.eval_block,
                                                ll_samples=args.iwae_k, ll_chunk=args.iwae_k)
    key = jax.random.key(args.eval_seed)
    blocks = {"elbo": [], "iwae": [], "log_likelihood": [], "size": []}
    t_ll = t_iwae = 0.0
    block_seconds = []
    t_start = time.perf_counter()
    for i, start in enumerate(range(0, n, args.eval_block)):
        x = jnp.asarray(test[start:start + args.eval_block])
        k_block = jax.random.fold_in(key, i)
        t0 = time.perf_counter()
        m = evaluators["ll"](state.params, k_block, x)
        blocks["log_likelihood"].append(float(m["log_likelihood"]))
        blocks["elbo"].append(float(m["elbo"]))
        block_seconds.append(time.perf_counter() - t0)
        t_ll += block_seconds[-1]
        if "iwae" in evaluators:
            t0 = time.perf_counter()
            m5 = evaluators["iwae"](state.params, jax.random.fold_in(k_block, 1), x)
            blocks["iwae"].append(float(m5["log_likelihood"]))
            t_iwae += time.perf_counter() - t0
        blocks["size"].append(int(x.shape[0]))
        done = start + x.shape[0]
        if not args.no_progress and (i % 5 == 4 or done == n):
            elapsed = time.perf_counter() - t_start
            print(f"    {done}/{n} test images, {elapsed:.0f} s, "
                  f"running log-likelihood {_mean(blocks['log_likelihood'], blocks['size']):.2f}",
                  flush=True)
    # Steady state: leave out the first block (it may include the compilation) and a
    # smaller last block.
    steady = [t for t, size in zip(block_seconds[1:], blocks["size"][1:])
              if size == blocks["size"][0]] or block_seconds
    out = {"eval_images": n, "ll_samples": args.ll_samples, "iwae_k": args.iwae_k,
           "ll_seconds": t_ll, "iwae_seconds": t_iwae, "blocks": blocks,
           "ll_block_seconds": block_seconds,
           "seconds_per_image_ll": float(np.median(steady)) / blocks["size"][0]}
    for name in ("elbo", "iwae", "log_likelihood"):
        if blocks[name]:
            out[name] = _mean(blocks[name], blocks["size"])
            out[name + "_se"] = _block_se(blocks[name], blocks["size"])
    return out


def _mean(values, sizes) -> float:
    return float(np.average(np.asarray(values), weights=np.asarray(sizes, float)))


def _full_blocks(values, sizes):
    sizes = np.asarray(sizes)
    return np.asarray(values)[sizes == sizes.max()]


def _block_se(values, sizes) -> float:
    """Standard error of the mean from the spread of the (full) block means."""
    full = _full_blocks(values, sizes)
    if len(full) < 2:
        return float("nan")
    return float(np.std(full, ddof=1) / np.sqrt(len(full)))


def _fmt(value, se=None, width=8):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-".rjust(width)
    text = f"{value:.2f}"
    if se is not None and not np.isnan(se):
        text += f" ± {se:.2f}"
    return text.rjust(width)


def main(argv=None) -> dict:
    args = parse_args(argv)
    outdir = pathlib.Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t_all = time.perf_counter()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPUs); "
          f"load average at start {load_start[0]:.2f}", flush=True)

    results, evaluators = [], {}
    for k in args.ks:
        workdir = outdir / f"k{k}"
        summary = train(args, k, workdir)
        print(f"[k={k}] evaluating on the test split: K={args.ll_samples} log-likelihood"
              + (f", K={args.iwae_k} IWAE bound" if args.iwae_k else ""), flush=True)
        summary.update(evaluate(args, workdir, evaluators))
        per_image = summary["seconds_per_image_ll"]
        print(f"[k={k}] K={args.ll_samples} on {summary['eval_images']} test images: "
              f"{summary['ll_seconds']:.0f} s in all; steady state {1e3 * per_image:.0f} "
              f"ms/image, so all 10000 test images would take ~{1e4 * per_image / 60:.0f} min",
              flush=True)
        results.append(summary)

    base = results[0]
    for r in results:
        for name in ("elbo", "iwae", "log_likelihood"):
            if r.get(name) is not None and base["blocks"][name]:
                diff = np.asarray(r["blocks"][name]) - np.asarray(base["blocks"][name])
                r[f"{name}_diff_vs_k{base['k']}"] = _mean(diff, r["blocks"]["size"])
                r[f"{name}_diff_se"] = _block_se(diff, r["blocks"]["size"])

    total = time.perf_counter() - t_all
    load_end = os.getloadavg()
    n_eval = results[0]["eval_images"]
    lines = [
        f"MNIST (dynamically binarised), IWAE-paper MLP 784-200-200-50, Adam eps 1e-4, batch 20; "
        f"test metrics on the first {n_eval} of 10000 test images (nats, mean ± s.e.)",
        f"{'model':<13}{'train budget':<34}{'train s':>8}{'test ELBO':>17}"
        f"{'IWAE K=' + str(args.iwae_k):>17}{'log p(x) K=' + str(args.ll_samples):>20}"
        f"{'Δ log p vs k=' + str(base['k']):>20}",
    ]
    for r in results:
        name = "VAE (k=1)" if r["k"] == 1 else f"IWAE (k={r['k']})"
        budget = (f"{r['stages']} stages ({r['epochs']} ep), {r['steps']} steps"
                  + (f", {r['train_images']} img" if args.limit_train else ""))
        lines.append(
            f"{name:<13}{budget:<34}{_fmt(r['train_seconds'], width=8)}"
            f"{_fmt(r.get('elbo'), r.get('elbo_se'), 17)}"
            f"{_fmt(r.get('iwae'), r.get('iwae_se'), 17)}"
            f"{_fmt(r.get('log_likelihood'), r.get('log_likelihood_se'), 20)}"
            + (_fmt(r.get("log_likelihood_diff_vs_k" + str(base["k"])),
                    r.get("log_likelihood_diff_se"), 20) if r is not base else "-".rjust(20)))
    shared = max(load_start[0], load_end[0]) > (os.cpu_count() or 1)
    lines.append(f"train s: wall time of the run incl. data loading and compilation; total "
                 f"{total / 60:.1f} min; load average start {load_start[0]:.2f}, end "
                 f"{load_end[0]:.2f} on {os.cpu_count()} CPUs"
                 + (" (the CPU was shared: timings are inflated)" if shared else ""))
    table = "\n".join(lines)
    print("\n" + table)
    record = {"args": vars(args), "results": results, "total_seconds": total,
              "load_average_start": load_start, "load_average_end": load_end,
              "cpu_count": os.cpu_count(), "jax": jax.__version__, "table": table}
    (outdir / "results.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {outdir / 'results.json'}")
    return record


if __name__ == "__main__":
    main()
