"""Benchmark: importance-sampled evaluation against a plain-JAX floor, float32 and bfloat16.

The ``pytorch_example`` VAE (784-400-20, Bernoulli on grey levels), at its parameters after
``--epochs`` float32 training epochs on the 60000 MNIST training images, estimates
``log p(x)`` of the first ``--images`` MNIST test images with K = ``--samples`` importance
samples, three ways, each one jitted program over the whole split (batches of 500, samples in
chunks of 100, a streaming ``logsumexp``):

- ``jvae_float32``: :func:`jvae.make_evaluator` with ``ll_samples=K`` (what ``python -m
  jvae.evaluate`` runs; it also computes the one-sample distortion and rate);
- ``jvae_bfloat16``: the same with ``compute_dtype="bfloat16"`` (the networks' products in
  bfloat16, the densities and the ``logsumexp`` in float32);
- ``floor``: the same estimate written by hand in plain JAX (:func:`floor_program`: the
  networks as matrix products, the two Gaussian densities reduced to what does not cancel,
  ``0.5 * (|eps|^2 - |z|^2) + sum(log scale)``), the least a JAX program of this estimate
  computes. It draws the evaluator's samples (the same keys), so its estimate equals
  ``jvae_float32``'s up to float rounding (``tests/test_bench_is_eval.py``).

Every program is compiled ahead of time and run once; then ``--rounds`` interleaved rounds
(:mod:`experiments.bench_timing`). Printed and written (``--json``): each program's median
seconds, the ratios ``jvae_float32 / floor`` and ``jvae_bfloat16 / jvae_float32``, and each
program's estimate (mean ``log p(x)``) and its difference from ``jvae_float32``'s (rounding
only: the three draw the same samples).

    JVAE_DATA_DIR=../shared/data python -m experiments.bench_is_eval --images 10000 \\
        --samples 1000 --rounds 3 --json docs/data/bench_is_eval.json
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments import numpyro_reference
from experiments.bench_device import prepare_epoch, prepare_eval
from experiments.bench_record import stamp
from experiments.bench_timing import compile_ahead, interleaved_rounds

PROGRAMS = ("jvae_float32", "jvae_bfloat16", "floor")


def floor_program(batch_size: int = 500, samples: int = 1000, chunk: int = 100):
    """The jitted plain-JAX estimate ``(params, key, x [N, 784]) -> mean log p(x)``, ``params``
    in :mod:`experiments.numpyro_reference`'s layout, ``N`` a multiple of ``batch_size``."""
    chunk = min(chunk, samples)
    chunks = math.ceil(samples / chunk)

    def one(p, key, x):                                       # x [B, 784] -> [B]
        loc, scale = numpyro_reference.encode(p["encoder"], x)
        log_scale = jnp.sum(jnp.log(scale), axis=-1)

        def body(carry, i):
            top, total = carry
            eps = jax.random.normal(jax.random.fold_in(key, i), (chunk,) + loc.shape)
            z = loc + scale * eps                                             # [c, B, 20]
            logits = numpyro_reference.decode_logits(p["decoder"], z)         # [c, B, 784]
            log_w = (jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
                     + 0.5 * jnp.sum(eps * eps - z * z, axis=-1) + log_scale)
            valid = (i * chunk + jnp.arange(chunk)) < samples
            log_w = jnp.where(valid[:, None], log_w, -jnp.inf)
            new = jnp.maximum(top, jnp.max(log_w, axis=0))
            total = total * jnp.exp(top - new) + jnp.sum(jnp.exp(log_w - new), axis=0)
            return (new, total), None

        init = (jnp.full(loc.shape[:1], -jnp.inf), jnp.zeros(loc.shape[:1]))
        (top, total), _ = jax.lax.scan(body, init, jnp.arange(chunks))
        return top + jnp.log(total) - math.log(samples)

    @jax.jit
    def run(p, key, x):
        batches = x.reshape(-1, batch_size, x.shape[-1])
        # the evaluator's keys: one per batch, its second half for the importance samples
        keys = jax.vmap(lambda k: jax.random.split(k)[1])(jax.random.split(key, len(batches)))
        return jnp.mean(jax.lax.map(lambda a: one(p, *a), (keys, batches)))

    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10000, help="MNIST test images (a multiple "
                                                             "of 500, at most 10000)")
    p.add_argument("--samples", type=int, default=1000, help="importance samples K")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    p.add_argument("--epochs", type=int, default=1, help="float32 training epochs first")
    p.add_argument("--data_dir", default=None, help="default: JVAE_DATA_DIR")
    p.add_argument("--json", default="", help="write the results here")
    args = p.parse_args(argv)
    if not (0 < args.images <= 10000 and args.images % 500 == 0):
        p.error(f"--images must be a multiple of 500 in 500..10000, got {args.images}")
    for name in ("samples", "rounds", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    load = lambda split, n: np.ascontiguousarray(jvae.load_dataset(  # noqa: E731
        "mnist", split, data_dir=args.data_dir, limit=n), np.float32)
    train, test = load("train_full", None), load("test", args.images)
    run_epoch, _, box = prepare_epoch("float32", train)
    for _ in range(args.epochs - 1):
        jax.block_until_ready(run_epoch())
    params = jax.tree.map(jnp.copy, box[0].params)

    programs, records = {}, {}
    for dtype in ("float32", "bfloat16"):
        run, record = prepare_eval(dtype, test, params, args.samples)
        programs[f"jvae_{dtype}"], records[f"jvae_{dtype}"] = run, record
    floor = floor_program(samples=args.samples)
    flat = jax.device_put(test.reshape(len(test), -1))
    hand, key = numpyro_reference.params_from_jvae(params), jax.random.key(0)
    compiled, seconds = compile_ahead(floor, hand, key, flat)
    programs["floor"] = lambda: compiled(hand, key, flat)
    records["floor"] = {"compile_s": seconds, "log_likelihood": float(programs["floor"]())}

    times = interleaved_rounds(programs, args.rounds)
    for name, seconds in times.items():
        records[name].update(median_s=statistics.median(seconds), rounds_s=seconds)
    base = records["jvae_float32"]
    for name, r in records.items():
        r["log_likelihood_minus_jvae_float32"] = r["log_likelihood"] - base["log_likelihood"]
    result = {"benchmark": "bench_is_eval", "images": args.images, "samples": args.samples,
              "rounds": args.rounds, "epochs": args.epochs, "device": str(jax.devices()[0]),
              "jax": jax.__version__, "programs": records,
              "ratios": {"jvae_float32 / floor": base["median_s"] / records["floor"]["median_s"],
                         "jvae_bfloat16 / jvae_float32":
                             records["jvae_bfloat16"]["median_s"] / base["median_s"]}}
    print(table(result))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            stamp(result, "experiments.bench_is_eval", argv), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def table(result: dict) -> str:
    """The markdown table of a result: one row per program, then the ratios."""
    lines = ["| program | median seconds | mean log p(x) | minus jvae float32 |",
             "|---|---|---|---|"]
    for name in PROGRAMS:
        r = result["programs"][name]
        lines.append(f"| {name} | {r['median_s']:.2f} | {r['log_likelihood']:.3f} | "
                     f"{r['log_likelihood_minus_jvae_float32']:+.3f} |")
    ratios = "; ".join(f"{k}: {v:.3f}" for k, v in result["ratios"].items())
    lines.append(f"\n{result['images']} test images, K = {result['samples']}, medians of "
                 f"{result['rounds']} interleaved rounds; {ratios}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
