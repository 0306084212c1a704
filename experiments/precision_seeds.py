"""Experiment: the ``pytorch_example`` run in bfloat16 against float32, several seeds.

For each seed of ``--seeds`` and each compute dtype (``config.model.compute_dtype`` float32 and
bfloat16), the ``pytorch_example`` config (784-400-20 MLP VAE, Bernoulli on grey levels, Adam
1e-3, batch 128, all 60000 training images) trains ``--epochs`` epochs with
:func:`jvae.train_and_evaluate` (no figures, no importance sampling) and is evaluated on the
10000 test images: the test loss is minus the one-sample test ELBO, as the PyTorch example
reports it. The runs alternate the two dtypes, the order flipped every seed, so that host load
falls on both alike. Recorded per run: the test loss and each epoch's training seconds (from
``metrics.jsonl``; the first epoch, which compiles, apart); per dtype: the median epoch over
all epochs but the first of all its seeds, and per seed the bfloat16 test loss minus float32's.

The JSON holds one entry per jax version (``--merge`` keeps the other versions' entries), as
the CPU compiler's bfloat16 products differ between jaxlib releases.

    JVAE_DATA_DIR=../shared/data python -m experiments.precision_seeds --merge \\
        --json docs/data/precision_seeds.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile

import jax

import jvae
from experiments.bench_record import stamp
from experiments.configs import pytorch_example

DTYPES = ("float32", "bfloat16")


def one_run(seed: int, dtype: str, epochs: int, workdir: pathlib.Path) -> dict:
    """Train one run; its test loss and epoch seconds."""
    c = pytorch_example.get_config()
    c.seed, c.num_epochs = seed, epochs
    c.model.compute_dtype = dtype
    c.figures = False
    c.eval.ll_samples = 0
    c.checkpoint_every = epochs
    jvae.train_and_evaluate(c, workdir, progress=False, log=lambda line: None)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    elbo = next(v for k, v in last.items() if k.endswith("/elbo") and not k.startswith("train"))
    return {"seed": seed, "dtype": dtype, "test_loss": -float(elbo),
            "epoch_seconds": [float(r["train/seconds"]) for r in records]}


def summarise(runs: list[dict]) -> dict:
    """Per dtype: median epoch (first epochs apart) and test losses; per seed: the gap."""
    out = {}
    for dtype in DTYPES:
        mine = [r for r in runs if r["dtype"] == dtype]
        out[dtype] = {"median_epoch_s": statistics.median(
                          s for r in mine for s in r["epoch_seconds"][1:]),
                      "test_loss": {str(r["seed"]): r["test_loss"] for r in mine}}
    out["bfloat16_over_float32_epoch"] = (out["bfloat16"]["median_epoch_s"]
                                          / out["float32"]["median_epoch_s"])
    out["test_loss_gap"] = {s: out["bfloat16"]["test_loss"][s] - out["float32"]["test_loss"][s]
                            for s in out["float32"]["test_loss"]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--merge", action="store_true",
                   help="keep the other jax versions' entries of the --json file")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds or args.epochs < 2:
        p.error("give at least one seed and --epochs of at least 2 (the first compiles)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(seeds):
            for dtype in (DTYPES if i % 2 == 0 else DTYPES[::-1]):
                r = one_run(seed, dtype, args.epochs, pathlib.Path(tmp) / f"{dtype}_{seed}")
                print(f"seed {seed} {dtype}: test loss {r['test_loss']:.3f}, epochs "
                      + " ".join(f"{s:.2f}" for s in r["epoch_seconds"]) + " s", flush=True)
                runs.append(r)
    summary = summarise(runs)
    print(table({"jax": jax.__version__, "epochs": args.epochs, **summary}))
    if args.json:
        path = pathlib.Path(args.json)
        out = json.loads(path.read_text()) if args.merge and path.exists() else {}
        out[f"jax {jax.__version__}"] = stamp(
            {"jax": jax.__version__, "device": str(jax.devices()[0]), "epochs": args.epochs,
             "runs": runs, **summary}, "experiments.precision_seeds", argv)
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")
    return 0


def table(entry: dict) -> str:
    """One entry (one jax version) as a markdown table: a row per seed, then the medians."""
    seeds = list(entry["float32"]["test_loss"])
    lines = [f"| jax {entry['jax']}, {entry['epochs']} epochs | float32 | bfloat16 | "
             "bfloat16 - float32 |", "|---|---:|---:|---:|"]
    for s in seeds:
        a, b = entry["float32"]["test_loss"][s], entry["bfloat16"]["test_loss"][s]
        lines.append(f"| test loss, seed {s} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    a, b = entry["float32"]["median_epoch_s"], entry["bfloat16"]["median_epoch_s"]
    lines.append(f"| median epoch (s) | {a:.3f} | {b:.3f} | ratio {b / a:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
