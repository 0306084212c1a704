"""Benchmark: what the DPM2 notebook's dev assessments every N steps cost a training epoch.

The ``vae_mlp`` variant of ``experiments.dpm2`` (binarised Fashion-MNIST at 64x64, batch
256, 59000 training images, a 1000-image dev split) trains one epoch twice per round, once as
one compiled program (``eval.every_steps = 0``) and once in compiled chunks of 100 steps with a
dev assessment (D, R, ELBO) after each (``eval.every_steps = 100``); the order alternates
between rounds. Then one dev assessment of the trained model is timed with and without the
importance-sampled L (K = 100), each after a first call that compiles it.

Printed (medians over rounds): the epoch's training seconds in each mode, the chunked epoch's
seconds of dev assessments, their sum against the one-program epoch, the compile seconds of
each mode, and the seconds of one dev assessment with and without L.

    JVAE_DATA_DIR=../shared/data python -m experiments.bench_dev_eval --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile

import jax

from experiments import dpm2
from jvae import read_metrics, restore_run, train_and_evaluate
from jvae.runs import read_jsonl
# Not public: the dev log's file name and the dev assessor the run loop drives.
from jvae.runs import DEV_FILE, DevAssessor


def one_epoch(every: int, workdir: pathlib.Path, limit_train: int) -> dict:
    config = dpm2.variant_config("vae_mlp", epochs=1)
    config.eval.every_steps = every
    config.eval.dev_final_ll_samples = 0          # L is timed on its own below
    config.dataset.limit_eval = 1000
    config.figures = False
    config.checkpoint_every = 0
    if limit_train:
        config.dataset.limit_train = limit_train
    train_and_evaluate(config, workdir, progress=False)
    record = read_metrics(workdir)[-1]
    return {"train_seconds": record["train/seconds"],
            "dev_seconds": record.get("dev/seconds_in_epoch", 0.0),
            "compile_seconds": record["train/compile_seconds"], "steps": record["step"],
            "assessments": len(read_jsonl(workdir / DEV_FILE))}


def time_assessments(workdir: pathlib.Path, repeats: int) -> dict:
    config, datasets, model, state = restore_run(workdir)
    out = {}
    for k in (0, 100):
        config.eval.dev_ll_samples = k
        dev = DevAssessor(config, model, datasets.dev, jax.random.key(0), False,
                          pathlib.Path(tempfile.mkdtemp()))
        first = dev.assess(state.params, 0, epoch=0)["dev/seconds"]
        times = [dev.assess(state.params, i + 1, epoch=0)["dev/seconds"]
                 for i in range(repeats)]
        out[f"K={k}"] = {"first_call": first, "median": statistics.median(times),
                         "all": times}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=0, help="0: all 59000")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_dev_eval_"))
    runs = {100: [], 0: []}
    for r in range(args.rounds):
        for every in ((100, 0) if r % 2 == 0 else (0, 100)):
            res = one_epoch(every, root / f"r{r}_every{every}", args.limit_train)
            runs[every].append(res)
            print(f"round {r + 1} every_steps={every}: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in res.items()), flush=True)
    assess = time_assessments(root / "r0_every100", repeats=3)

    def med(every, key):
        return statistics.median(x[key] for x in runs[every])
    plain, chunked, dev = med(0, "train_seconds"), med(100, "train_seconds"), med(100,
                                                                                  "dev_seconds")
    result = {"rounds": args.rounds, "steps": runs[0][0]["steps"],
              "assessments_per_epoch": runs[100][0]["assessments"] - 1,   # without step 0
              "epoch_one_program": plain, "epoch_chunked_training": chunked,
              "epoch_chunked_dev": dev, "epoch_chunked_total": chunked + dev,
              "ratio_chunked_training": chunked / plain,
              "compile_one_program": med(0, "compile_seconds"),
              "compile_chunked": med(100, "compile_seconds"),
              "assessment": assess, "runs": {str(k): v for k, v in runs.items()},
              "load": os.getloadavg()}
    print(f"\nmedians over {args.rounds} rounds, {result['steps']} steps per epoch:")
    print(f"  one program            {plain:8.2f} s training")
    print(f"  chunks of 100 steps    {chunked:8.2f} s training + {dev:.2f} s of "
          f"{result['assessments_per_epoch']} dev assessments = {chunked + dev:.2f} s "
          f"(training {chunked / plain:.3f}x the one program's)")
    print(f"  compile: one program {result['compile_one_program']:.2f} s, chunked "
          f"{result['compile_chunked']:.2f} s")
    for k, v in assess.items():
        print(f"  one dev assessment, {k}: {v['median']:.3f} s (first call, compiling: "
              f"{v['first_call']:.2f} s)")
    print(f"  load average {result['load']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
