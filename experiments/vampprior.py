"""The VampPrior against the standard normal prior, with and without a KL warm-up.

Tomczak & Welling (2018) train the VampPrior with a linear KL warm-up from 0 to 1 over their
first 100 epochs (of up to 2000, early stopping with a look-ahead of 50), 500 pseudo-inputs,
Adam at 5e-4, batches of 100, on dynamically binarised MNIST. Without a warm-up the VampPrior
of ``experiments/flows.py`` collapses (test rate ~0 nats in 2 of 3 seeds). Rows:

=================  ==============================================================
``gaussian``       standard normal prior, constant beta = 1
``gaussian_warm``  standard normal prior, linear warm-up from 0 to 1
``vamp``           VampPrior, constant beta = 1
``vamp_warm``      VampPrior, linear warm-up from 0 to 1 (the paper's recipe)
=================  ==============================================================

Every row is ``experiments/flows.py``'s (the ``iwae_mnist`` 784-200-200-50 tanh networks, the
one-sample reparameterised ELBO, Monte Carlo KL for the VampPrior) at one budget:
``--epochs`` passes over ``--train-size`` images, the warm-up lasting ``--warmup-epochs`` of
them (``objective.kl_warmup_steps`` = warm-up epochs x steps per epoch). Each row's seeds
train as one vmapped program and are evaluated on the test set: ELBO, importance-sampled
log p(x) (K = ``--ll-samples``) and rate; a seed whose test rate is under
:data:`COLLAPSED_RATE` nats has collapsed (its posterior is the prior for every image).

    JVAE_DATA_DIR=../shared/data python -m experiments.vampprior --workdir runs/vampprior
    python -m experiments.vampprior --quick --workdir /tmp/vp_quick --json /tmp/vp.json

The data file (default ``docs/data/vampprior.json``) feeds the ``vampprior`` table of
``docs/results/vampprior.md`` (``docs/hooks/tables_results.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys

import jax

from experiments import flows
from jvae import read_metrics, train_and_evaluate, xla_workarounds

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: row -> (flows.py row, warm-up or not)
ROWS = {"gaussian": ("gaussian", False), "gaussian_warm": ("gaussian", True),
        "vamp": ("vamp", False), "vamp_warm": ("vamp", True)}
COLLAPSED_RATE = flows.COLLAPSED_RATE
#: The paper's recipe, for the page (Tomczak & Welling, 2018, section 5.1).
PAPER = {"warmup_epochs": 100, "max_epochs": 2000, "pseudo_inputs": 500,
         "learning_rate": 5e-4, "batch_size": 100}


def row_config(name: str, args):
    """flows.py's config of the row's prior, with the KL warm-up when the row has one."""
    base, warm = ROWS[name]
    c = flows.row_config(base, args)
    c.model.likelihood_bias = getattr(args, "likelihood_bias", "zero")
    if warm:
        steps_per_epoch = (args.train_size or 60000) // args.batch_size
        c.objective.beta_schedule = "linear"
        c.objective.kl_warmup_start = 0.0
        c.objective.kl_warmup_steps = int(args.warmup_epochs * steps_per_epoch)
    return c


def finished(workdir: pathlib.Path, epochs: int) -> bool:
    """Whether ``workdir`` holds a run evaluated after epoch ``epochs``."""
    if not (workdir / "metrics.jsonl").exists():
        return False
    last = read_metrics(workdir)
    return bool(last) and last[-1].get("epoch") == epochs and "eval/log_likelihood" in last[-1]


def run_row(name: str, args, root: pathlib.Path) -> dict:
    """Train and evaluate row ``name`` in ``root/name`` (with ``args.reuse``, a finished run
    already there is summarised instead); its per-seed test numbers."""
    config = row_config(name, args)
    workdir = root / name
    if args.reuse and finished(workdir, args.epochs):
        print(f"reusing the finished run in {workdir}", flush=True)
    else:
        train_and_evaluate(config, workdir, progress=False)
    records = read_metrics(workdir)
    last = records[-1]
    seconds = [r["train/seconds"] for r in records if "train/seconds" in r]
    trained = [r for r in records if "train/rate" in r]
    per = lambda key: flows._per_seed(last, key, args.seeds)  # noqa: E731
    rates = per("eval/rate")
    return {"row": name, "prior": config.model.prior,
            "beta_schedule": config.objective.beta_schedule,
            "kl_warmup_steps": int(config.objective.kl_warmup_steps),
            "seeds": list(range(args.seed, args.seed + args.seeds)),
            "test_elbo": per("eval/elbo"), "test_log_likelihood": per("eval/log_likelihood"),
            "test_rate": rates, "collapsed": [r < COLLAPSED_RATE for r in rates],
            "seconds_per_epoch": statistics.median(seconds),
            # per epoch, means over the seeds: when the rate fell, at which KL weight
            "train_rate_by_epoch": [statistics.mean(_seeds(r["train/rate"])) for r in trained],
            "beta_by_epoch": [statistics.mean(_seeds(r.get("train/beta", 1.0)))
                              for r in trained]}


def _seeds(value) -> list[float]:
    return [float(v) for v in (value if isinstance(value, list) else [value])]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/vampprior")
    parser.add_argument("--only", default="", help=f"comma-separated rows of {list(ROWS)}")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--warmup-epochs", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=10000, help="0: all 60000")
    parser.add_argument("--test-size", type=int, default=500, help="0: all 10000")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ll-samples", type=int, default=1000, help="K of the IS estimate")
    parser.add_argument("--pseudo-inputs", type=int, default=500)
    parser.add_argument("--likelihood-bias", choices=("zero", "marginal"), default="zero",
                        help="the decoder's output bias at start: zero, or the training "
                             "pixels' log-odds (model.likelihood_bias)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="summarise the rows already trained to --epochs in WORKDIR (same "
                             "flags; e.g. rows trained by parallel --only runs), train the rest")
    parser.add_argument("--json", default=str(ROOT / "docs" / "data" / "vampprior.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.warmup_epochs, args.seeds = 2, 1.0, 2
        args.train_size, args.test_size, args.ll_samples, args.pseudo_inputs = 300, 100, 20, 10
    for name in ("epochs", "seeds", "batch_size", "ll_samples", "pseudo_inputs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup_epochs <= 0 or args.train_size < 0 or args.test_size < 0:
        parser.error("--warmup-epochs must be > 0, --train-size and --test-size >= 0")
    if (args.train_size or 60000) // args.batch_size * args.warmup_epochs < 1:
        parser.error("--warmup-epochs is under one optimiser step")
    chosen = [r for r in args.only.split(",") if r] or list(ROWS)
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    # flows.row_config reads these flow settings; no row here uses a flow.
    args.flow_layers, args.flow_hidden = 4, 200

    root = pathlib.Path(args.workdir)
    rows = []
    for name in [r for r in ROWS if r in chosen]:
        print(f"== {name}", flush=True)
        rows.append(run_row(name, args, root))
        print(json.dumps(rows[-1]), flush=True)
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "JVAE_DATA_DIR=../shared/data python -m experiments.vampprior "
                   + " ".join(w for w in (argv if argv is not None else sys.argv[1:])
                              if w != "--reuse"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load "
                   f"{os.getloadavg()[0]:.1f} at the end",
        "quick": args.quick, "jax": jax.__version__,
        "xla_workaround": xla_workarounds().state,
        "budget": {"epochs": args.epochs, "warmup_epochs": args.warmup_epochs,
                   "batch_size": args.batch_size, "learning_rate": args.lr,
                   "train_size": args.train_size or 60000,
                   "test_size": args.test_size or 10000, "ll_samples": args.ll_samples,
                   "pseudo_inputs": args.pseudo_inputs, "collapsed_rate": COLLAPSED_RATE,
                   "likelihood_bias": args.likelihood_bias},
        "paper": PAPER,
        "rows": rows,
    }
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
    if not args.quick:
        from experiments.provenance import record_if_published
        record_if_published(path, command=data["command"])
    return data


if __name__ == "__main__":
    main()
