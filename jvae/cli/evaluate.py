"""Command line: ``python -m jvae.evaluate --workdir DIR --num-samples K``.

Evaluates the newest checkpoint of a run on its evaluation split (or ``--split``; ``--limit N``
for its first N examples): distortion, rate, ELBO and the importance-sampled log-likelihood
with K samples, in chunks of ``--chunk-size`` samples, in blocks of ``--block-size`` examples
with progress on stderr. Prints the numbers as JSON and writes them to
``DIR/eval_<split>_K<K>_epoch<E>_seed<S>[_limit<N>].json`` (one line on stderr says where),
with the device and the examples evaluated per second over the full blocks after the first
(the first block, and a shorter last one, include compilation). The file name holds what
defines the evaluation (split, K, checkpoint epoch, seed, and the limit when it cuts the
split); the record inside holds all of it, block, batch and chunk sizes too (they change the
random draws). A result is never overwritten by a different evaluation: when the file exists
and holds another one, the result goes to ``..._2.json`` (``_3``, ...). For a multi-seed run
or a sweep every element is evaluated (lists, in the run's order). An autoencoder run
(``model.kind = "autoencoder"``) reports its reconstruction errors (distortion, squared error;
no importance samples: K is 0). SIGINT and SIGTERM stop it with one line and the status
``128 + signal`` (:mod:`jvae.cli.signals`).
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
from jvae.runs import load_run
from jvae.cli.signals import SignalStop, StopOnSignals, exit_status
from jvae.cli.helptext import plain_text
from jvae.cli.train import OneLineParser, _quiet_logs, one_line
from jvae.runs.outputs import eval_result_stem, evaluated_split

#: The fields of a result that define the evaluation (a file holding other values of them
#: is never overwritten).
DEFINITION = ("split", "num_samples", "num_examples", "epoch", "step", "seed", "batch_size",
              "chunk_size", "block_size")


def main(argv=None) -> dict:
    """Evaluate (see the module docstring); returns the result written to the file."""
    args = _parse(argv)
    workdir = pathlib.Path(args.workdir)
    config, datasets, model, state, epoch = load_run(workdir, args.epoch)
    if args.split is not None and args.split != config.dataset.eval_split:
        config.dataset.eval_split = args.split
        datasets = builders.load_data(config)
    # A multi-seed run or a sweep stores stacked parameters: evaluate every element.
    stacked = int(config.num_seeds) > 1 or schema.sweep_values(config) is not None
    data = datasets.eval[: args.limit or None]
    split = evaluated_split(config)
    samples = 0 if is_autoencoder(model) else args.num_samples   # an autoencoder has no p(x)
    evaluator = make_evaluator(model, batch_size=args.batch_size, ll_samples=samples,
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
        print(f"{split}: {done}/{len(data)} examples, {elapsed:.0f} s{eta}, "
              + ", ".join(f"{k} {np.mean(v) / done:.3f}" for k, v in sums.items()),
              file=sys.stderr)
    metrics = {k: (v / len(data)).tolist() for k, v in sums.items()}
    result = {"split": split, "num_examples": int(len(data)),
              "split_size": int(len(datasets.eval)), "limit": int(args.limit),
              "num_samples": samples, "epoch": epoch, "step": int(np.ravel(state.step)[0]),
              "seed": args.seed, "batch_size": args.batch_size, "chunk_size": args.chunk_size,
              "block_size": args.block_size,
              "seconds": time.perf_counter() - t0, "device": jax.devices()[0].device_kind}
    if timed[0]:    # the first block compiles, a shorter last one compiles again
        result["examples_per_second"] = timed[0] / timed[1]
    result.update(metrics)
    path = result_path(workdir, result)
    write_json_atomic(path, result)
    print(json.dumps(result, indent=2))
    print(wrote_line(path, result), file=sys.stderr)
    return result


def result_path(workdir: pathlib.Path, result: dict) -> pathlib.Path:
    """Where ``result`` goes: ``eval_<split>_K<K>_epoch<E>_seed<S>[_limit<N>].json`` (the
    limit only when it cut the split: :func:`jvae.runs.outputs.eval_result_stem`), or the
    first ``..._<i>.json`` (i = 2, 3, ...) that is free or holds the same evaluation
    (:data:`DEFINITION`)."""
    stem = eval_result_stem(result)
    for i in range(1, 10_000):
        path = workdir / (f"{stem}.json" if i == 1 else f"{stem}_{i}.json")
        if not path.exists() or _same_evaluation(path, result):
            return path
    raise FileExistsError(f"{workdir} holds 9999 other results named {stem}_*.json; move "
                          "some away.")


def wrote_line(path: pathlib.Path, result: dict) -> str:
    """The line saying where the result went and what it holds: ``wrote PATH: <what> of
    the N examples of the <split> split, checkpoint of epoch E``."""
    what = ("reconstruction errors" if not result["num_samples"] else
            f"ELBO, distortion, rate and log p(x) with K = {result['num_samples']}")
    part = ("" if result["num_examples"] == result["split_size"]
            else f"first {result['num_examples']} of the {result['split_size']} ")
    n = "" if part else f"{result['num_examples']} "
    return (f"wrote {path}: {what} of the {part}{n}examples of the {result['split']} "
            f"split, checkpoint of epoch {result['epoch']}")


def _same_evaluation(path: pathlib.Path, result: dict) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False          # unreadable: keep it, write next to it
    return isinstance(old, dict) and all(old.get(k) == result[k] for k in DEFINITION)


def _parse(argv) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m jvae.evaluate", description=plain_text(__doc__),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="run directory written by jvae.train")
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="K importance samples per example (default 1000)")
    parser.add_argument("--chunk-size", type=int, default=100,
                        help="samples drawn at once (bounds memory)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--split", default=None,
                        help="dataset split to evaluate (default: the run's eval split)")
    parser.add_argument("--seed", type=int, default=0, help="in [0, 2**32)")
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint (default: newest)")
    parser.add_argument("--limit", type=int, default=0,
                        help="evaluate the first N examples of the split only (0: all)")
    parser.add_argument("--block-size", type=int, default=1000,
                        help="examples per jitted call; progress is printed after each block")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)
    for flag in ("num_samples", "chunk_size", "batch_size", "block_size"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got "
                         f"{getattr(args, flag)}")
    if args.limit < 0:
        parser.error(f"--limit must be >= 0 (0: the whole split), got {args.limit}")
    if not 0 <= args.seed < 2 ** 32:       # JAX keys take 32-bit seeds: 2**32 would be 0
        parser.error(f"--seed must lie in [0, 2**32), got {args.seed}")
    if args.epoch is not None and args.epoch < 0:
        parser.error(f"--epoch must be >= 0 (a checkpoint's epoch), got {args.epoch}")
    if args.split is not None and not args.split.strip():
        parser.error("--split is empty; give a split name such as test")
    return args


def run(argv=None) -> int:
    """The command line: :func:`main` with every failure as one line ``error: ...`` (exit
    status 1; ``--debug`` adds the traceback; 130 or 143 when SIGINT or SIGTERM stopped it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    _quiet_logs(debug)
    with StopOnSignals(_stopped_line) as stop:
        try:
            main(argv)
        except SystemExit as e:       # a usage error, printed by the parser
            return int(e.code or 0)
        except SignalStop as e:
            print(_stopped_line(e.signum), file=sys.stderr, flush=True)
            stop.reported()
            return exit_status(e.signum)
        except KeyboardInterrupt:
            print(_stopped_line(2), file=sys.stderr)
            return exit_status(2)
        except Exception as e:  # noqa: BLE001 - one line per failure
            if debug:
                traceback.print_exception(e)
            print(f"error: {one_line(e)}", file=sys.stderr)
            return 1
    return 0


def _stopped_line(signum: int) -> str:
    import signal

    return (f"error: stopped by {signal.Signals(signum).name}; no result was written (run "
            "the command again).")


if __name__ == "__main__":
    sys.exit(run())
