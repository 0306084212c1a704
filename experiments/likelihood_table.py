"""The binarised-MNIST likelihood table: VAE, IWAE (k = 5, 50) and VampPrior, test NLL by
importance sampling with K = 5000 on all 10000 test images, beside the papers' numbers.

Each row's config is ``experiments/configs/binarized_mnist_table.py:row=NAME`` (the papers'
architectures, optimisers, schedules and epoch counts; its docstring lists the differences).
A row trains in ``WORKDIR/NAME`` and resumes from there: a second call with a larger budget
continues the same run (its learning-rate schedule and warm-up are per step, so a run trained
in pieces is the run trained at once), and a finished row is only evaluated. The score is
``-mean_x log p(x)``, ``log p(x)`` estimated with K importance samples from ``q(z|x)``
(:func:`jvae.make_evaluator`: the K samples are drawn ``--ll-chunk`` at a time with a streaming
logsumexp, and the test images go ``--eval-block`` at a time, so memory is bounded); its
standard error is the spread of the block means. The evaluation of a row is kept in
``WORKDIR/NAME/likelihood.json`` and reused while the checkpoint and the K, images and key
are the same.

Budget: the full schedules (3280 epochs of batch 20 for the VAE and IWAE rows, 2000 of batch
100 for the VampPrior) need an accelerator. ``--budget F`` trains each row for the fraction F
of its schedule (at least one epoch); ``--budget-minutes M`` trains one epoch, times it, and
trains on to about M minutes of training per row. The table says how far each row got
(epochs run / epochs of the schedule).

    # the full table (an accelerator; ready, not yet run on one):
    python -m experiments.likelihood_table --workdir runs/likelihood_table \\
        --json docs/data/likelihood_table.json --docs
    # a CPU budget (the page's table: its flags are in the JSON's "command"):
    JVAE_DATA_DIR=../shared/data python -m experiments.likelihood_table --budget-minutes 3 \\
        --eval-limit 1000 --docs

``--json`` writes the table's data (default: none; ``--docs`` writes
``docs/data/likelihood_table.json`` and records its provenance); the page
``docs/results/likelihood_table.md`` renders it through the docs hooks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import binarized_mnist_table as table_config
from jvae import make_evaluator, read_metrics, train_and_evaluate
from jvae.runs import Checkpointer, load_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS_JSON = ROOT / "docs" / "data" / "likelihood_table.json"
LABELS = {"vae": "VAE (k = 1)", "iwae5": "IWAE (k = 5)", "iwae50": "IWAE (k = 50)",
          "vampprior": "VAE + VampPrior (500 pseudo-inputs)"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(table_config.ROWS),
                   help=f"comma-separated rows from {list(table_config.ROWS)} (default all)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=float, default=1.0,
                        help="fraction of each row's schedule to train, in (0, 1] (default 1)")
    budget.add_argument("--budget-minutes", type=float, default=0.0,
                        help="about this many minutes of training per row instead")
    p.add_argument("--workdir", default="runs/likelihood_table")
    p.add_argument("--json", default="", help="write the table's data here")
    p.add_argument("--docs", action="store_true",
                   help=f"write {DOCS_JSON.relative_to(ROOT)} and record its provenance")
    p.add_argument("--ll-samples", type=int, default=5000, help="K of log p(x) (default 5000)")
    p.add_argument("--ll-chunk", type=int, default=100, help="importance samples drawn at once")
    p.add_argument("--eval-block", type=int, default=100, help="test images per jitted call")
    p.add_argument("--eval-limit", type=int, default=0,
                   help="score the first N test images (0: all 10000)")
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument("--limit-train", type=int, default=0,
                   help="train on the first N training images (0: all; for tests)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in table_config.ROWS]
    if unknown or not args.rows:
        p.error(f"--rows: unknown {unknown or 'empty'}; choose from {list(table_config.ROWS)}")
    if not 0 < args.budget <= 1:
        p.error(f"--budget must be in (0, 1], got {args.budget}")
    if args.budget_minutes < 0 or not math.isfinite(args.budget_minutes):
        p.error(f"--budget-minutes must be >= 0, got {args.budget_minutes}")
    for name in ("ll_samples", "ll_chunk", "eval_block"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("eval_limit", "limit_train"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.docs and not args.json:
        args.json = str(DOCS_JSON)
    return args


def row_config(row: str, args, num_epochs: int):
    """The row's config with ``num_epochs`` and the command's data limits."""
    config = table_config.get_config(f"row={row}")
    config.num_epochs = int(num_epochs)
    config.dataset.limit_train = args.limit_train
    config.dataset.limit_eval = args.eval_limit
    config.figures = False
    return config


def budget_epochs(schedule: int, fraction: float) -> int:
    """Epochs of ``fraction`` of a ``schedule``-epoch run: ``floor(fraction * schedule)``, at
    least 1, at most ``schedule``."""
    return min(schedule, max(1, int(math.floor(fraction * schedule + 1e-9))))


def trained_epochs(workdir: pathlib.Path) -> int:
    """The newest checkpoint's epoch in ``workdir`` (0 if none)."""
    if not (workdir / "checkpoints").exists():
        return 0
    return int(Checkpointer(workdir / "checkpoints").latest_epoch() or 0)


def train_row(row: str, args, workdir: pathlib.Path) -> dict:
    """Train (or resume) ``row`` to its budget; returns what it ran."""
    schedule = table_config.SCHEDULE_EPOCHS[row]
    t0 = time.perf_counter()
    if args.budget_minutes:
        if trained_epochs(workdir) == 0:
            _train(row, args, workdir, 1)
        per_epoch = float(np.median([r["train/seconds"] for r in read_metrics(workdir)]))
        target = max(trained_epochs(workdir), min(schedule, max(
            1, int(args.budget_minutes * 60 // max(per_epoch, 1e-9)))))
    else:
        target = budget_epochs(schedule, args.budget)
    if trained_epochs(workdir) < target:
        _train(row, args, workdir, target)
    history = read_metrics(workdir)
    config = row_config(row, args, target)
    return {"epochs_run": trained_epochs(workdir), "schedule_epochs": schedule,
            "steps": int(history[-1]["step"]) if history else 0,
            "train_seconds": float(sum(r.get("train/seconds", 0.0) for r in history)),
            "seconds_this_call": time.perf_counter() - t0,
            "warmup": table_config.warmup_applied(config),
            "train_images": args.limit_train or (50000 if row == "vampprior" else 60000),
            "final_test_elbo": history[-1].get("eval/elbo") if history else None}


def _train(row: str, args, workdir: pathlib.Path, num_epochs: int) -> None:
    print(f"[{row}] training to epoch {num_epochs} of "
          f"{table_config.SCHEDULE_EPOCHS[row]} in {workdir}", flush=True)
    train_and_evaluate(row_config(row, args, num_epochs), workdir, resume=True,
                       progress=not args.no_progress, redraw=False)


def evaluate_row(row: str, args, workdir: pathlib.Path) -> dict:
    """Test NLL (K = ``--ll-samples``) of the newest checkpoint, block by block; reused from
    ``workdir/likelihood.json`` when nothing it depends on changed."""
    cache = workdir / "likelihood.json"
    run = load_run(workdir)
    test = np.asarray(run.datasets.eval[: args.eval_limit or None], np.float32)
    key_fields = {"epoch": run.epoch, "ll_samples": args.ll_samples, "eval_images": len(test),
                  "eval_seed": args.eval_seed, "eval_block": args.eval_block}
    if cache.exists():
        saved = json.loads(cache.read_text())
        if all(saved.get(k) == v for k, v in key_fields.items()):
            print(f"[{row}] reusing the evaluation in {cache}", flush=True)
            return saved
    evaluate = make_evaluator(run.model, batch_size=args.eval_block,
                              ll_samples=args.ll_samples, ll_chunk=args.ll_chunk)
    key = jax.random.key(args.eval_seed)
    ll, elbo, sizes = [], [], []
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, len(test), args.eval_block)):
        x = jnp.asarray(test[start:start + args.eval_block])
        m = evaluate(run.state.params, jax.random.fold_in(key, i), x)
        ll.append(float(m["log_likelihood"]))
        elbo.append(float(m["elbo"]))
        sizes.append(int(x.shape[0]))
        if not args.no_progress and (i % 10 == 9 or start + len(x) >= len(test)):
            print(f"    [{row}] {start + len(x)}/{len(test)} test images, "
                  f"{time.perf_counter() - t0:.0f} s, NLL so far "
                  f"{-np.average(ll, weights=sizes):.2f}", flush=True)
    out = {**key_fields, "ll_chunk": args.ll_chunk,
           "test_nll": -float(np.average(ll, weights=sizes)),
           "test_nll_se": _block_se(ll, sizes),
           "test_elbo": float(np.average(elbo, weights=sizes)),
           "eval_seconds": time.perf_counter() - t0}
    cache.write_text(json.dumps(out, indent=1) + "\n")
    return out


def _block_se(values, sizes) -> float | None:
    """Standard error of the mean from the spread of the full blocks' means."""
    sizes = np.asarray(sizes)
    full = np.asarray(values)[sizes == sizes.max()]
    return float(np.std(full, ddof=1) / np.sqrt(len(full))) if len(full) > 1 else None


def device_name() -> str:
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", "") or d.platform
    return f"{d.platform} ({kind}, {os.cpu_count()} CPU cores)" if d.platform == "cpu" \
        else f"{d.platform} ({kind})"


def text_table(rows: list[dict]) -> str:
    lines = [f"{'row':<38}{'epochs':>13}{'test NLL':>16}{'paper':>8}{'pythae':>8}"
             f"{'train s':>9}{'eval s':>8}"]
    for r in rows:
        se = f" ± {r['test_nll_se']:.2f}" if r["test_nll_se"] is not None else ""
        lines.append(f"{r['label']:<38}{r['epochs_run']:>6} / {r['schedule_epochs']:<4}"
                     f"{r['test_nll']:>9.2f}{se:<7}{r['paper']:>8.2f}{r['pythae']:>8.2f}"
                     f"{r['train_seconds']:>9.0f}{r['eval_seconds']:>8.0f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    root = pathlib.Path(args.workdir)
    print(f"jax {jax.__version__} on {device_name()}", flush=True)
    rows = []
    for row in args.rows:
        workdir = root / row
        trained = train_row(row, args, workdir)
        print(f"[{row}] scoring {args.eval_limit or 10000} test images with K = "
              f"{args.ll_samples}", flush=True)
        scored = evaluate_row(row, args, workdir)
        rows.append({"row": row, "label": LABELS[row], **trained, **scored,
                     **table_config.REFERENCES[row]})
    full = all(r["epochs_run"] == r["schedule_epochs"] for r in rows)
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m experiments.likelihood_table "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device_name(), "jax": jax.__version__,
        "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "full_schedules": full,
        "budget": {"fraction": None if args.budget_minutes else args.budget,
                   "minutes_per_row": args.budget_minutes or None},
        "ll_samples": args.ll_samples, "eval_images": rows[0]["eval_images"],
        "all_test_images": rows[0]["eval_images"] == 10000 and args.ll_samples == 5000,
        "rows": rows,
    }
    print("\n" + text_table(rows))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {path}")
        from experiments.provenance import record_if_published
        record_if_published(path, command=data["command"])
    return data


if __name__ == "__main__":
    main()
