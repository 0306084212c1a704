"""Command line: ``python -m jvae.evaluate --workdir DIR --num-samples K``.

Evaluates the newest checkpoint of a run on its evaluation split (or ``--split``; ``--limit N``
for its first N examples): distortion, rate, ELBO and the importance-sampled log-likelihood
with K samples, in chunks of ``--chunk-size`` samples, in blocks of ``--block-size`` examples
with progress on stderr. Prints the numbers as JSON and writes ``DIR/eval_<split>_K<K>.json``,
with the device and the examples evaluated per second over the full blocks after the first
(the first block, and a shorter last one, include compilation). For a multi-seed run or a
sweep every element is evaluated (lists, in the run's order). An autoencoder run
(``model.kind = "autoencoder"``) reports its reconstruction errors (distortion, squared error).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import traceback

import jax
import numpy as np

from jvae.runs import builders, schema
from jvae.models.autoencoder import is_autoencoder
from jvae.runs.checkpoints import write_json_atomic
from jvae.evaluation import make_evaluator
from jvae.runs import restore_run
from jvae.cli.train import OneLineParser, one_line


def main(argv=None) -> dict:
    parser = OneLineParser(prog="python -m jvae.evaluate", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="run directory written by jvae.train")
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="K importance samples per example (default 1000)")
    parser.add_argument("--chunk-size", type=int, default=100,
                        help="samples drawn at once (bounds memory)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--split", default=None,
                        help="dataset split to evaluate (default: the run's eval split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint (default: newest)")
    parser.add_argument("--limit", type=int, default=0,
                        help="evaluate the first N examples of the split only (0: all)")
    parser.add_argument("--block-size", type=int, default=1000,
                        help="examples per jitted call; progress is printed after each block")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)
    if min(args.num_samples, args.chunk_size, args.batch_size, args.block_size) <= 0:
        parser.error("--num-samples, --chunk-size, --batch-size and --block-size must be "
                     "positive")
    if args.limit < 0:
        parser.error("--limit must be >= 0")

    workdir = pathlib.Path(args.workdir)
    config, datasets, model, state = restore_run(workdir, args.epoch)
    if args.split is not None and args.split != config.dataset.eval_split:
        config.dataset.eval_split = args.split
        datasets = builders.load_data(config)
    # A multi-seed run or a sweep stores stacked parameters: evaluate every element.
    stacked = int(config.num_seeds) > 1 or schema.sweep_values(config) is not None
    data = datasets.eval[: args.limit or None]
    evaluator = make_evaluator(model, batch_size=args.batch_size,   # an autoencoder has no p(x)
                               ll_samples=0 if is_autoencoder(model) else args.num_samples,
                               ll_chunk=args.chunk_size)
    evaluator = jax.jit(jax.vmap(evaluator, in_axes=(0, None, None)) if stacked else evaluator)
    t0 = time.perf_counter()
    timed = [0, 0.0]    # examples and seconds of the full blocks after the first (compiled)
    sums: dict[str, np.ndarray] = {}
    key = jax.random.key(args.seed)
    for start in range(0, len(data), args.block_size):
        t_block = time.perf_counter()
        block = data[start:start + args.block_size]
        part = evaluator(state.params, jax.random.fold_in(key, start), block)
        for k, v in part.items():
            sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64) * len(block)
        done = start + len(block)
        if start > 0 and len(block) == args.block_size:
            timed[0] += len(block)
            timed[1] += time.perf_counter() - t_block
        elapsed = time.perf_counter() - t0
        rate = timed[0] / timed[1] if timed[0] else done / elapsed
        eta = f", about {(len(data) - done) / rate:.0f} s left" if done < len(data) else ""
        print(f"{done}/{len(data)} examples, {elapsed:.0f} s{eta}, "
              + ", ".join(f"{k} {np.mean(v) / done:.3f}" for k, v in sums.items()),
              file=sys.stderr)
    metrics = {k: (v / len(data)).tolist() for k, v in sums.items()}
    result = {"split": config.dataset.eval_split, "num_examples": int(len(data)),
              "split_size": int(len(datasets.eval)),
              "num_samples": args.num_samples, "step": int(np.ravel(state.step)[0]),
              "seconds": time.perf_counter() - t0, "device": jax.devices()[0].device_kind}
    if timed[0]:    # the first block compiles, a shorter last one compiles again
        result["examples_per_second"] = timed[0] / timed[1]
    result.update(metrics)
    write_json_atomic(workdir / f"eval_{result['split']}_K{args.num_samples}.json", result)
    print(json.dumps(result, indent=2))
    return result


def run(argv=None) -> int:
    """The command line: :func:`main` with every failure as one line ``error: ...`` (exit
    status 1; ``--debug`` adds the traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        main(argv)
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line per failure
        if "--debug" in argv:
            traceback.print_exception(e)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
