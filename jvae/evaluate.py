"""Command line: ``python -m jvae.evaluate --workdir DIR --num-samples K``.

Evaluates the newest checkpoint of a run on its evaluation split (or ``--split``): distortion,
rate, ELBO and the importance-sampled log-likelihood with K samples, in chunks of
``--chunk-size`` samples. Prints the numbers as JSON and writes ``DIR/eval_<split>_K<K>.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax

from jvae import builders
from jvae.checkpoints import write_json_atomic
from jvae.evaluation import make_evaluator
from jvae.experiment import restore_run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m jvae.evaluate", description=__doc__)
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
    args = parser.parse_args(argv)
    if args.num_samples <= 0 or args.chunk_size <= 0 or args.batch_size <= 0:
        parser.error("--num-samples, --chunk-size and --batch-size must be positive")

    workdir = pathlib.Path(args.workdir)
    config, datasets, model, state = restore_run(workdir, args.epoch)
    if args.split is not None and args.split != config.dataset.eval_split:
        config.dataset.eval_split = args.split
        datasets = builders.load_data(config)
    evaluator = make_evaluator(model, batch_size=args.batch_size,
                               ll_samples=args.num_samples, ll_chunk=args.chunk_size)
    t0 = time.perf_counter()
    metrics = evaluator(state.params, jax.random.key(args.seed), datasets.eval)
    metrics = {k: float(v) for k, v in metrics.items()}
    result = {"split": config.dataset.eval_split, "num_examples": int(len(datasets.eval)),
              "num_samples": args.num_samples, "step": int(state.step),
              "seconds": time.perf_counter() - t0, **metrics}
    write_json_atomic(workdir / f"eval_{result['split']}_K{args.num_samples}.json", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
