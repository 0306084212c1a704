"""Flow posteriors and the VampPrior against the diagonal Gaussian on dynamically binarised MNIST.

Rows (``--only`` picks some; ``gaussian`` is the reference and always runs):

============  =================================================================
``gaussian``  diagonal-Gaussian posterior, standard normal prior
``planar``    planar flow posterior (Rezende & Mohamed, 2015)
``iaf``       inverse autoregressive flow posterior (Kingma et al., 2016)
``coupling``  affine coupling (RealNVP) posterior (Dinh et al., 2017)
``vamp``      diagonal-Gaussian posterior, VampPrior (Tomczak & Welling, 2018)
============  =================================================================

Every row is ``experiments/configs/iwae_mnist.py``'s architecture (784-200-200-50 tanh
encoder and decoder, Glorot init, Bernoulli likelihood, dynamic binarisation, the test set
binarised once) trained with the same budget: the reparameterised ELBO (one sample, Monte
Carlo KL wherever it has no closed form), Adam at a constant learning rate, ``--epochs``
passes over ``--train-size`` training images in batches of ``--batch-size``. The seeds of a row
train as one vmapped program (``config.num_seeds``, same batches for every seed). After the
last epoch each seed is evaluated on the test set: ELBO and the importance-sampled
log-likelihood with ``--ll-samples`` (K = 5000) samples, in chunks of 100 (10 for the
VampPrior, whose prior evaluates every sample against every pseudo-input).

The script prints a table and writes ``--json`` (default ``docs/data/flows.json``): per row
and seed the test ELBO and log-likelihood, each row's gain over the Gaussian row (the same
seed's difference; mean and standard deviation over seeds) and its median seconds per epoch
relative to the Gaussian row's, measured in the same run. ``--docs`` also writes the results
page ``docs/results/flows.md`` and its figure ``docs/figures/flows_gain.png``
(:func:`draw_flows`; ``python -m experiments.figures`` draws the same figure) from that JSON.

    JVAE_DATA_DIR=../shared/data python -m experiments.flows --workdir runs/flows --docs
    python -m experiments.flows --quick --workdir /tmp/flows_quick --json /tmp/flows.json

``--quick``: 300 training and 200 test images, one epoch, K = 20, two seeds, two flow layers
and 10 pseudo-inputs (checks the pipeline; its numbers mean nothing).
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
import numpy as np

from experiments.configs import iwae_mnist
from jvae import read_metrics, train_and_evaluate, xla_workarounds

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROWS = {
    "gaussian": {"model.posterior": "gaussian"},
    "planar": {"model.posterior": "planar"},
    "iaf": {"model.posterior": "iaf"},
    "coupling": {"model.posterior": "coupling"},
    "vamp": {"model.posterior": "gaussian", "model.prior": "vamp"},
}
COLLAPSED_RATE = 0.1  # a test rate (KL) below this many nats: the posterior has collapsed
DOCS_PAGE = ROOT / "docs" / "results" / "flows.md"
DOCS_FIGURE = ROOT / "docs" / "figures" / "flows_gain.png"


def row_config(name: str, args) -> "ml_collections.ConfigDict":  # noqa: F821
    """The iwae_mnist architecture with row ``name``'s posterior/prior and the shared budget."""
    c = iwae_mnist.get_config()
    c.num_epochs, c.batch_size, c.learning_rate = args.epochs, args.batch_size, args.lr
    c.seed, c.num_seeds = args.seed, args.seeds
    c.optim.schedule = "constant"
    c.objective.name, c.objective.num_samples, c.objective.kl = "elbo", 1, "auto"
    c.dataset.limit_train, c.dataset.limit_eval = args.train_size, args.test_size
    c.eval.ll_samples, c.eval.every, c.eval.ll_every = args.ll_samples, args.epochs, args.epochs
    c.eval.ll_chunk = min(100, args.ll_samples)
    c.figures, c.checkpoint_every, c.eval.log_steps = False, 0, False
    for key, value in ROWS[name].items():
        section, field = key.split(".")
        c[section][field] = value
    # Only the fields the row uses (validation refuses a field the run would ignore).
    if c.model.posterior in ("planar", "iaf", "coupling"):
        c.model.flow_layers = args.flow_layers
    if c.model.posterior in ("iaf", "coupling"):
        c.model.flow_hidden = args.flow_hidden
    if c.model.prior == "vamp":
        c.model.prior_components = args.pseudo_inputs
    if name == "vamp":
        c.eval.ll_chunk = max(1, c.eval.ll_chunk // 10)
    return c


def _per_seed(record: dict, key: str, seeds: int) -> list[float]:
    value = record[key]
    return [float(v) for v in (value if isinstance(value, list) else [value] * seeds)]


def run_row(name: str, args, root: pathlib.Path, train: bool = True) -> dict:
    """Train row ``name`` into ``root/name`` (unless ``train`` is False: then summarise the
    run already there) and return its per-seed test numbers and epoch times."""
    config = row_config(name, args)
    workdir = root / name
    if train:
        train_and_evaluate(config, workdir, progress=False)
    elif not (workdir / "metrics.jsonl").exists():
        raise SystemExit(f"--no-train: no run of row {name!r} in {workdir} (metrics.jsonl "
                         "missing); train it first (drop --no-train).")
    records = read_metrics(workdir)
    last = records[-1]
    seconds = [r["train/seconds"] for r in records if "train/seconds" in r]
    return {"row": name, "posterior": config.model.posterior, "prior": config.model.prior,
            "seeds": list(range(args.seed, args.seed + args.seeds)),
            "test_elbo": _per_seed(last, "eval/elbo", args.seeds),
            "test_log_likelihood": _per_seed(last, "eval/log_likelihood", args.seeds),
            "test_rate": _per_seed(last, "eval/rate", args.seeds),
            "seconds_per_epoch": statistics.median(seconds), "epoch_seconds": seconds,
            "compile_seconds": records[0].get("train/compile_seconds")}


def add_gains(rows: list[dict]) -> list[dict]:
    """Each row's per-seed gain over the Gaussian row (same seed), its mean and standard
    deviation over seeds (ddof 1; 0 for one seed), and its epoch time relative to the
    Gaussian row's."""
    ref = next(r for r in rows if r["row"] == "gaussian")
    for r in rows:
        for key, short in (("test_elbo", "elbo"), ("test_log_likelihood", "ll")):
            gain = np.asarray(r[key]) - np.asarray(ref[key])
            r[f"{short}_gain"] = gain.tolist()
            r[f"{short}_gain_mean"] = float(gain.mean())
            r[f"{short}_gain_std"] = float(gain.std(ddof=1)) if len(gain) > 1 else 0.0
        r["relative_seconds"] = r["seconds_per_epoch"] / ref["seconds_per_epoch"]
    return rows


def merge_rows(rows: list[dict], previous: dict, date: str, budget: dict) -> list[dict]:
    """``rows`` (measured on ``date`` with ``budget``) over the rows of ``previous`` (an
    earlier JSON of this script, which must have the same budget): a row run now replaces its
    earlier self and keeps the earlier test numbers (``previous_*``, ``previous_measured``);
    rows not run now are kept as measured then. Every row gets ``measured`` (its date). In
    :data:`ROWS` order."""
    if previous["budget"] != budget:
        raise SystemExit(f"--merge: the earlier budget {previous['budget']} is not this run's "
                         f"{budget}; rows of different budgets cannot share a table.")
    new = {r["row"]: dict(r, measured=date) for r in rows}
    for old in previous["rows"]:
        name = old["row"]
        if name in new:
            for key in ("test_elbo", "test_log_likelihood", "elbo_gain_mean", "ll_gain_mean"):
                new[name][f"previous_{key}"] = old[key]
            new[name]["previous_measured"] = old.get("measured", previous["date"])
        else:
            new[name] = dict(old, measured=old.get("measured", previous["date"]))
    return [new[name] for name in ROWS if name in new]


def rerun_lines(rows: list[dict]) -> str:
    """One sentence per row rerun over an earlier measurement: how far its numbers moved."""
    lines = []
    for r in rows:
        if "previous_test_log_likelihood" not in r or r["row"] == "gaussian":
            continue
        d_ll = np.asarray(r["test_log_likelihood"]) - np.asarray(r["previous_test_log_likelihood"])
        d_elbo = np.asarray(r["test_elbo"]) - np.asarray(r["previous_test_elbo"])
        lines.append(
            f"Row `{r['row']}` was rerun on {r['measured'][:10]} (earlier measurement "
            f"{r['previous_measured'][:10]}): its test log p(x) moved by "
            + "/".join(f"{v:+.2f}" for v in d_ll) + " nats per seed (mean "
            f"{d_ll.mean():+.2f}), its test ELBO by " + "/".join(f"{v:+.2f}" for v in d_elbo)
            + f" (mean {d_elbo.mean():+.2f}); its log p(x) gain went from "
            f"{r['previous_ll_gain_mean']:+.2f} to {r['ll_gain_mean']:+.2f}.")
    rerun = {r["measured"] for r in rows if "previous_measured" in r}
    kept = [r for r in rows if r.get("measured") not in rerun]
    if lines and kept:
        lines.append("Rows " + ", ".join(f"`{r['row']}` ({r['measured'][:10]})" for r in kept)
                     + " were not rerun. Seconds per epoch are of each row's own run (its "
                     "host load): compare the relative column.")
    return " ".join(lines)


def table(rows: list[dict]) -> str:
    def ms(values):
        v = np.asarray(values)
        return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"

    lines = ["| row | posterior | prior | test ELBO | ELBO gain | test log p(x) | log p(x) gain "
             "| s / epoch | relative |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['posterior']} | {r['prior']} | {ms(r['test_elbo'])} | "
            f"{r['elbo_gain_mean']:+.2f} ± {r['elbo_gain_std']:.2f} | "
            f"{ms(r['test_log_likelihood'])} | {r['ll_gain_mean']:+.2f} ± {r['ll_gain_std']:.2f} | "
            f"{r['seconds_per_epoch']:.1f} | {r['relative_seconds']:.2f} |")
    return "\n".join(lines)


def draw_flows(data: dict, path) -> None:
    """The figure of ``docs/data/flows.json`` (:func:`experiments.figures.draw_flows`)."""
    from experiments.figures import draw_flows as draw

    draw(data, path)


def write_page(data: dict, page: pathlib.Path, figure: pathlib.Path) -> None:
    b = data["budget"]
    iaf = next((r for r in data["rows"] if r["row"] == "iaf"), None)
    if iaf is None:
        iaf_line = "The IAF row was not run."
    else:
        direction = "tightens" if iaf["elbo_gain_mean"] > 0 else "does not tighten"
        iaf_line = (f"The IAF posterior {direction} the bound here (ELBO gain "
                    f"{iaf['elbo_gain_mean']:+.2f} ± {iaf['elbo_gain_std']:.2f} nats over "
                    f"{len(iaf['seeds'])} seeds); Kingma et al. (2016) report that IAF tightens "
                    "it.")
    collapsed = [(r["row"], [s for s, rate in zip(r["seeds"], r["test_rate"])
                             if rate < COLLAPSED_RATE])
                 for r in data["rows"] if "test_rate" in r]
    collapsed = [(row, seeds) for row, seeds in collapsed if seeds]
    collapse_line = "".join(
        f" Row `{row}` collapsed in seed(s) {seeds}: test rate below {COLLAPSED_RATE} nats, "
        "the posterior equal to the prior for every image." for row, seeds in collapsed)
    if collapsed:
        collapse_line += (" The cause is the decoder's output bias starting at zero, not the "
                          "missing KL warm-up: see [the VampPrior page](vampprior.md), where "
                          "the bias starts at the pixels' log-odds and the VampPrior leads.")
    rates = ", ".join(f"`{r['row']}` " + "/".join(f"{v:.2f}" for v in r["test_rate"])
                      for r in data["rows"] if "test_rate" in r)
    rate_line = f"Test rates (nats, per seed): {rates}." if rates else ""
    rel = os.path.relpath(figure, page.parent)
    rerun = rerun_lines(data["rows"])
    rerun = f"\n{rerun}\n" if rerun else ""
    stale = "" if "xla_workaround" in data else (
        "\n!!! warning \"Measured before the fixes of issue 27\"\n"
        "    These numbers were measured with jax 0.10.2 before jvae worked around its CPU "
        "compiler\n    bug and before the planar flow's and the VampPrior's float32 fixes "
        "([numerics guide](../guides/numerics.md)):\n    the planar row's importance-sampled "
        "log p(x) came from a program that jaxlib 0.10.2\n    miscompiles at the evaluator's "
        "shapes, and the planar and VampPrior rows "
        "trained with the old formulations. A rerun is pending.\n")
    text = f"""# Flow posteriors and the VampPrior on MNIST

Diagonal-Gaussian posterior against planar flows (Rezende & Mohamed, 2015), inverse
autoregressive flow (Kingma et al., 2016), affine coupling (Dinh et al., 2017) and a
diagonal-Gaussian posterior with the VampPrior (Tomczak & Welling, 2018); the library part is
`jvae.models.flows`, `jvae.models.made` and `jvae.models.priors.VampPrior`.

## Method

The `iwae_mnist` architecture (784-200-200-{b['latent_dim']} tanh encoder and decoder,
Bernoulli likelihood, dynamically binarised MNIST, the test set binarised once) with the same
budget for every row: the one-sample reparameterised ELBO (Monte Carlo KL for the flows and
the VampPrior), Adam at learning rate {b['learning_rate']:g}, {b['epochs']} epochs over
{b['train_size'] or 60000} training images in batches of {b['batch_size']}; {b['flow_layers']}
flow layers (MADE / coupling width {b['flow_hidden']}), {b['pseudo_inputs']} pseudo-inputs.
Seeds {data['rows'][0]['seeds']} of a row train as one vmapped program. Test ELBO and
importance-sampled log-likelihood (K = {b['ll_samples']}) on {b['test_size'] or 10000} test
images. A gain is the row's value minus the Gaussian row's for the same seed, mean ± standard
deviation over seeds; seconds per epoch are medians over the epochs, relative to the Gaussian
row of the same run ({data['machine']}).

## Results
{stale}
{table(data['rows'])}

{iaf_line}{collapse_line}

{rate_line}
{rerun}

![Gain over the diagonal Gaussian]({rel})

Measured {data['date'][:10]}. Regenerate every row, this page and the figure (then
`python -m experiments.figures` to record the figure in the manifest):

```bash
{full_command(b, len(data['rows'][0]['seeds']))}
```

The latest rows came from `{data['command']}`.
"""
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)


#: The flags whose defaults a full command leaves out, by budget key.
_DEFAULTS = {"batch_size": 100, "learning_rate": 1e-3, "train_size": 0, "flow_layers": 4,
             "flow_hidden": 200, "pseudo_inputs": 500}
_FLAGS = {"learning_rate": "--lr"}


def full_command(budget: dict, seeds: int) -> str:
    """The command that reruns every row at ``budget`` with ``seeds`` seeds and publishes."""
    flags = [f"--epochs {budget['epochs']}", f"--seeds {seeds}",
             f"--test-size {budget['test_size']}", f"--ll-samples {budget['ll_samples']}"]
    flags += [f"{_FLAGS.get(k, '--' + k.replace('_', '-'))} {budget[k]:g}"
              for k, default in _DEFAULTS.items() if budget[k] != default]
    return ("JVAE_DATA_DIR=../shared/data python -m experiments.flows --workdir runs/flows "
            + " ".join(flags) + " --docs")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/flows")
    parser.add_argument("--only", default="", help="comma-separated rows (gaussian always runs)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=0, help="0: all 60000")
    parser.add_argument("--test-size", type=int, default=0, help="0: all 10000")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ll-samples", type=int, default=5000, help="K of the IS estimate")
    parser.add_argument("--flow-layers", type=int, default=4)
    parser.add_argument("--flow-hidden", type=int, default=200)
    parser.add_argument("--pseudo-inputs", type=int, default=500)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(ROOT / "docs" / "data" / "flows.json"))
    parser.add_argument("--merge", default="",
                        help="an earlier JSON of this script (same budget): keep its rows that "
                             "are not run now, record how the rows run now moved")
    parser.add_argument("--no-train", action="store_true",
                        help="summarise the runs already in WORKDIR (same flags), no training")
    parser.add_argument("--docs", action="store_true",
                        help=f"write {DOCS_PAGE.relative_to(ROOT)} and its figure")
    parser.add_argument("--page", default=str(DOCS_PAGE), help=argparse.SUPPRESS)
    parser.add_argument("--figure", default=str(DOCS_FIGURE), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.train_size, args.test_size = 1, 2, 300, 200
        args.ll_samples, args.flow_layers, args.pseudo_inputs = 20, 2, 10
    for name in ("epochs", "seeds", "batch_size", "ll_samples", "flow_layers", "flow_hidden",
                 "pseudo_inputs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.train_size < 0 or args.test_size < 0:
        parser.error("--train-size and --test-size must be >= 0")
    chosen = [r for r in args.only.split(",") if r] or list(ROWS)
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    names = ["gaussian"] + [r for r in ROWS if r in chosen and r != "gaussian"]

    root = pathlib.Path(args.workdir)
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        rows.append(run_row(name, args, root, train=not args.no_train))
    add_gains(rows)
    print(table(rows))
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "JVAE_DATA_DIR=../shared/data python -m experiments.flows "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load "
                   f"{os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg")
                   else platform.machine(),
        "quick": args.quick,
        "jax": jax.__version__, "xla_workaround": xla_workarounds().state,
        "budget": {"epochs": args.epochs, "batch_size": args.batch_size,
                   "learning_rate": args.lr, "train_size": args.train_size,
                   "test_size": args.test_size, "ll_samples": args.ll_samples,
                   "flow_layers": args.flow_layers, "flow_hidden": args.flow_hidden,
                   "pseudo_inputs": args.pseudo_inputs,
                   "latent_dim": int(iwae_mnist.get_config().latent_dim), "objective": "elbo"},
        "rows": rows,
    }
    path = pathlib.Path(args.json)
    if args.no_train:  # the measurement's own date, command and load, not the summary's
        data["command"] = " ".join(w for w in data["command"].split() if w != "--no-train")
        if path.exists():
            previous = json.loads(path.read_text())
            data["date"], data["machine"] = previous["date"], previous["machine"]
    if args.merge:
        data["rows"] = merge_rows(rows, json.loads(pathlib.Path(args.merge).read_text()),
                                  data["date"], data["budget"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
    if not args.quick:
        from experiments.provenance import record_if_published
        record_if_published(path, command=data["command"])
    if args.docs:
        draw_flows(data, pathlib.Path(args.figure))
        write_page(data, pathlib.Path(args.page), pathlib.Path(args.figure))
        print(f"wrote {args.page} and {args.figure}")
    return data


if __name__ == "__main__":
    main()
