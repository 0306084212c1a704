"""Benchmark: Lab 5's Pyro VAE trained by jvae (``pyro_vae`` config) and by Pyro, side by side.

Both train the same model (``experiments/configs/pyro_vae.py``; Pyro's tutorial module in
``experiments/pyro_reference.py``) on the same in-memory MNIST arrays (60000 training grey
levels, batch 128, Adam 1e-3, ``Trace_ELBO``: one sample, Monte Carlo KL) for ``--epochs``
epochs in one process. Timing: seed 0 of each, the epochs interleaved (jvae's epoch, then
Pyro's, the order swapped every epoch), each epoch's wall-clock seconds (jvae compiled ahead
of time; the test evaluation is not timed). After every epoch both test losses (negative ELBO
per test image, one sample) are printed. With ``--seeds S > 1`` seeds 1 .. S-1 follow: jvae's
as one vmapped program (each seed with its own batch order), Pyro's one after the other; the
script prints the mean and standard deviation over the S seeds of each library's test loss
after the last epoch, and whether jvae's mean lies within Pyro's seed-to-seed spread (mean +-
2 sd). It prints the medians of the per-epoch seconds over epochs 2..N and their ratio
jvae / Pyro.

    JVAE_DATA_DIR=../shared/data python -m experiments.bench_pyro --epochs 10 --seeds 3 \\
        --json runs/bench_pyro.json

Pyro's epoch counts its 469 steps (the last batch partial, as the tutorial's DataLoader);
jvae's 468 full batches (``make_train_epoch`` drops the partial one). The evaluation of jvae
uses the analytic KL for the rate (an equal-mean, lower-variance estimate of the same ELBO as
Pyro's ``evaluate_loss``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments import pyro_reference
from experiments.configs import pyro_vae
from jvae import TrainState, make_evaluator, make_train_epoch


class JvaeRun:
    """jvae's ``pyro_vae`` model for the given seeds (one, or several vmapped), one epoch at a
    time: ``train_epoch() -> seconds`` and ``test_loss() -> [S]`` losses per test image."""

    def __init__(self, config, train, test, seeds):
        self.seeds = list(seeds)
        self.model = jvae.build_model(config, train.shape[1:])
        steps = len(train) // int(config.batch_size)
        optimizer = jvae.build_optimizer(config, steps_per_epoch=steps)
        epoch = make_train_epoch(jvae.build_loss(config, self.model), optimizer,
                                 int(config.batch_size), jit=False)

        def create(seed):
            k_init, k_train, _, _ = jax.random.split(jax.random.key(seed), 4)
            return TrainState.create(jvae.init_params(self.model, k_init, train[:1]), optimizer,
                                     k_train)

        evaluate = make_evaluator(self.model, batch_size=1000, elbo_samples=1)
        self.train, self.test = jax.device_put(train), jax.device_put(test)
        self.state = jax.vmap(create)(jnp.asarray(self.seeds))
        self.eval_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 10**6))(
            jnp.asarray(self.seeds))
        self.epoch_no = 0
        keys = self._order_keys()
        self.epoch = jax.jit(jax.vmap(epoch, in_axes=(0, None, 0))).lower(
            self.state, self.train, keys).compile()
        self.evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)))

    def _order_keys(self):
        # Each seed its own batch order (independent runs, as Pyro's seeds are).
        return jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), self.epoch_no + 1))(
            jnp.asarray(self.seeds))

    def train_epoch(self) -> float:
        keys = self._order_keys()
        t0 = time.perf_counter()
        self.state, _, losses = self.epoch(self.state, self.train, keys)
        jax.block_until_ready((self.state, losses))
        seconds = time.perf_counter() - t0
        self.epoch_no += 1
        return seconds

    def test_loss(self) -> np.ndarray:
        keys = jax.vmap(lambda k: jax.random.fold_in(k, self.epoch_no))(self.eval_keys)
        return -np.asarray(self.evaluate(self.state.params, keys, self.test)["elbo"], np.float64)


def _mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each library (>= 1)")
    parser.add_argument("--kl", choices=("mc", "analytic"), default="mc",
                        help="mc: Trace_ELBO (the tutorial); analytic: TraceMeanField_ELBO")
    parser.add_argument("--examples", type=int, default=60000, help="training images used")
    parser.add_argument("--pyro-threads", type=int, default=None,
                        help="torch.set_num_threads for Pyro (default: os.cpu_count()); on a "
                             "busy host 1 can be much faster than 2")
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    parser.add_argument("--json", default=None, help="write every number to this file")
    args = parser.parse_args(argv)
    if args.epochs <= 0 or args.seeds <= 0 or args.examples <= 0:
        parser.error("--epochs, --seeds and --examples must be positive")
    if not pyro_reference.pyro_available():
        print("skipped: Pyro is not installed (pip install 'jvae[pyro]')", file=sys.stderr)
        return None

    config = pyro_vae.get_config(f"kl={args.kl}")
    train = pyro_reference.load_mnist_flat(args.data_dir)[: args.examples]
    test = pyro_reference.load_mnist_flat(args.data_dir, "test")
    train_img, test_img = train.reshape(-1, 28, 28, 1), test.reshape(-1, 28, 28, 1)
    load_before = _uptime()
    print(f"{os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].device_kind}; "
          f"{len(train)} train / {len(test)} test images, batch {config.batch_size}, "
          f"kl={args.kl}; load: {load_before}", flush=True)

    # ---- timing: seed 0 of each, epochs interleaved
    ours = JvaeRun(config, train_img, test_img, [0])
    theirs = pyro_reference.PyroVAERun(train, test, batch_size=int(config.batch_size),
                                       lr=float(config.learning_rate), seed=0, kl=args.kl,
                                       num_threads=args.pyro_threads)
    print(f"pyro {theirs.versions['pyro']}, torch {theirs.versions['torch']}, "
          f"{theirs.num_threads} torch threads", flush=True)
    rows = []
    for epoch in range(1, args.epochs + 1):
        if epoch % 2:
            j_sec = ours.train_epoch()
            p_sec, p_train = theirs.train_epoch()
        else:
            p_sec, p_train = theirs.train_epoch()
            j_sec = ours.train_epoch()
        j_test, p_test = float(ours.test_loss()[0]), theirs.test_loss()
        rows.append({"epoch": epoch, "jvae_seconds": j_sec, "pyro_seconds": p_sec,
                     "jvae_test_loss": j_test, "pyro_test_loss": p_test,
                     "pyro_train_loss": p_train})
        print(f"epoch {epoch}: jvae {j_sec:.2f} s, Pyro {p_sec:.2f} s; test loss jvae "
              f"{j_test:.2f}, Pyro {p_test:.2f} (Pyro train {p_train:.2f})", flush=True)
    timed = rows[1:] if len(rows) > 1 else rows
    j_med = statistics.median(r["jvae_seconds"] for r in timed)
    p_med = statistics.median(r["pyro_seconds"] for r in timed)
    load_after = _uptime()
    result = {"epochs": args.epochs, "kl": args.kl, "examples": len(train),
              "versions": {"jax": jax.__version__, **theirs.versions},
              "pyro_threads": theirs.num_threads, "cores": os.cpu_count(),
              "load_before": load_before, "load_after_timing": load_after,
              "per_epoch": rows, "jvae_median_seconds": j_med, "pyro_median_seconds": p_med,
              "ratio": j_med / p_med}
    print(f"median epoch (epochs {timed[0]['epoch']}..{args.epochs}): jvae {j_med:.2f} s, "
          f"Pyro {p_med:.2f} s, ratio jvae / Pyro {j_med / p_med:.3f}; load: {load_after}",
          flush=True)

    # ---- seeds 1 .. S-1: test loss after the last epoch
    j_final, p_final = [rows[-1]["jvae_test_loss"]], [rows[-1]["pyro_test_loss"]]
    if args.seeds > 1:
        more = list(range(1, args.seeds))
        others = JvaeRun(config, train_img, test_img, more)
        for epoch in range(1, args.epochs + 1):
            others.train_epoch()
            losses = others.test_loss()
            print(f"jvae seeds {more}, epoch {epoch}: test loss "
                  + ", ".join(f"{v:.2f}" for v in losses), flush=True)
        j_final += [float(v) for v in losses]
        for seed in more:
            run = pyro_reference.PyroVAERun(train, test, batch_size=int(config.batch_size),
                                            lr=float(config.learning_rate), seed=seed,
                                            kl=args.kl, num_threads=args.pyro_threads)
            for epoch in range(1, args.epochs + 1):
                run.train_epoch()
                loss = run.test_loss()
                print(f"Pyro seed {seed}, epoch {epoch}: test loss {loss:.2f}", flush=True)
            p_final.append(loss)
    (jm, js), (pm, ps) = _mean_sd(j_final), _mean_sd(p_final)
    within = bool(abs(jm - pm) <= 2 * ps) if len(p_final) > 1 else None
    result.update(seeds=args.seeds, jvae_final_test_loss=j_final, pyro_final_test_loss=p_final,
                  jvae_mean=jm, jvae_sd=js, pyro_mean=pm, pyro_sd=ps,
                  jvae_within_pyro_spread=within, load_end=_uptime())
    print(f"test loss after {args.epochs} epochs over {args.seeds} seeds (mean +- sd): jvae "
          f"{jm:.2f} +- {js:.2f} ({', '.join(f'{v:.2f}' for v in j_final)}), Pyro "
          f"{pm:.2f} +- {ps:.2f} ({', '.join(f'{v:.2f}' for v in p_final)})"
          + ("" if within is None else
             f"; jvae's mean within Pyro's mean +- 2 sd: {'yes' if within else 'no'}"),
          flush=True)
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
