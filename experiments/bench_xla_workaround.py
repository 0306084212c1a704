"""Benchmark: what avoiding jaxlib 0.10's reduce-fusion miscompilation costs in speed.

Four settings, each a process of its own (XLA reads its flags once per process), kept warm
and driven in turn, round by round (interleaved, the order rotated every round):

- ``unmitigated``: jax 0.10.2 with ``JVAE_XLA_WORKAROUND=off`` (XLA's default fusions: the
  programs before the fix, the planar ones wrong);
- ``workaround``: jax 0.10.2 as jvae ships it on Python < 3.12
  (``--xla_cpu_experimental_ynn_fusion_type=-reduce``, :mod:`jvae.xla`);
- ``rewrite``: jax 0.10.2 unmitigated, the planar layer's ``sum(w * z, -1)`` rewritten as an
  ``einsum`` (a dot, not a fused reduction): the option of rewriting the pattern, which fixes
  this one program and not the class;
- ``jax012``: jax 0.12.1 under ``--python`` (Python 3.12+), as jvae ships it there.

Three programs per setting: one training epoch of the ``pytorch_example`` VAE (60000 MNIST
images, batch 128, 468 steps, compiled ahead of time), and the importance-sampled
log-likelihood (:func:`jvae.make_evaluator`, ``--ll-samples`` samples in chunks of 100,
batches of 500) on ``--test-size`` test images, of that model (``eval``) and of the same
model with a 4-layer planar posterior (``eval_planar``, the program the bug hits). Each
program runs once per round per setting (the evaluators once before, to compile them: the
epoch is compiled ahead of time); medians over the rounds, wall time and process CPU time.
Settings that need a Python that is not given are skipped (``--python ''``). Writes
``--json``; ``--docs`` also rewrites the section "The XLA workaround" of
``docs/benchmarks.md`` from it.

    JVAE_DATA_DIR=../shared/data python -m experiments.bench_xla_workaround --rounds 3 \\
        --python /tmp/venv312/bin/python --docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
MARKERS = ("<!-- bench_xla_workaround: begin -->", "<!-- bench_xla_workaround: end -->")
PROGRAMS = ("epoch", "eval", "eval_planar")
SETTINGS = ("unmitigated", "workaround", "rewrite", "jax012")


def _rewritten_planar_forward(self, x):
    """``Planar.forward_and_log_det`` with ``w^T x`` as an einsum (the rewrite option)."""
    import jax.numpy as jnp

    a = jnp.einsum("...d,...d->...", self.w, x) + self.b
    return x + self.u_hat * jnp.tanh(a)[..., None], self._log_det(a)


def _worker(setting: str, test_size: int, ll_samples: int) -> None:
    """Builds the three programs, then times one on each ``epoch``/``eval``/``eval_planar``
    line read from stdin, answering ``{"program", "wall", "cpu", "value"}`` lines."""
    import jax
    import numpy as np

    import jvae
    from experiments.configs import pytorch_example

    if setting == "rewrite":
        jvae.Planar.forward_and_log_det = _rewritten_planar_forward
    config = pytorch_example.get_config()
    data = jvae.load_data(config)
    train, test = jax.device_put(data.train), jax.device_put(data.eval[:test_size])
    runs = {}
    for name, posterior in (("eval", "gaussian"), ("eval_planar", "planar")):
        config.model.posterior, config.model.flow_layers = posterior, 4
        model = jvae.build_model(config, data.train.shape[1:])
        params = jvae.init_params(model, jax.random.key(0), data.train[:1])
        evaluate = jvae.make_evaluator(model, batch_size=500, ll_samples=ll_samples,
                                       ll_chunk=100)
        runs[name] = (lambda e=evaluate, p=params: float(
            e(p, jax.random.key(1), test)["log_likelihood"]))
        if posterior == "gaussian":
            optimizer = jvae.build_optimizer(config)
            state = jvae.TrainState.create(params, optimizer, jax.random.key(2))
            epoch = jvae.make_train_epoch(jvae.build_loss(config, model), optimizer,
                                          int(config.batch_size), model=model)
            compiled, box = epoch.lower(state, train).compile(), [state]

            def run_epoch(compiled=compiled, box=box):
                box[0], metrics, _ = compiled(box[0], train)
                return float(metrics["loss"])

            runs["epoch"] = run_epoch
    first = {name: runs[name]() for name in ("eval", "eval_planar")}   # compiles them
    print(json.dumps({"ready": setting, "jax": jax.__version__, "first_values": first,
                      "workaround": jvae.xla_workarounds().state}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name not in runs:
            break
        wall, cpu = time.perf_counter(), time.process_time()
        value = runs[name]()
        print(json.dumps({"program": name, "wall": time.perf_counter() - wall,
                          "cpu": time.process_time() - cpu, "value": value}), flush=True)


def _start(setting: str, python: str, args) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if setting in ("unmitigated", "rewrite"):
        env["JVAE_XLA_WORKAROUND"] = "off"
    else:
        env.pop("JVAE_XLA_WORKAROUND", None)
    cmd = [python, "-m", "experiments.bench_xla_workaround", "--worker", setting,
           "--test-size", str(args.test_size), "--ll-samples", str(args.ll_samples)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)


def _ask(proc: subprocess.Popen, line: str) -> dict:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--ll-samples", type=int, default=500)
    parser.add_argument("--python", default="", help="a Python 3.12+ with jvae and jax 0.12")
    parser.add_argument("--json", default=str(ROOT / "docs" / "data" / "xla_workaround.json"))
    parser.add_argument("--docs", action="store_true", help="rewrite its docs/benchmarks.md section")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.test_size, args.ll_samples)
        return {}
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    settings = [s for s in SETTINGS if s != "jax012" or args.python]
    procs, info = {}, {}
    for s in settings:
        procs[s] = _start(s, args.python if s == "jax012" else sys.executable, args)
    for s, proc in procs.items():                     # compile, one setting at a time
        info[s] = json.loads(proc.stdout.readline())
        print(f"ready: {info[s]}", flush=True)
    times = {s: {p: [] for p in PROGRAMS} for s in settings}
    values = {s: {p: [] for p in PROGRAMS} for s in settings}
    loads = []
    for r in range(args.rounds):
        order = settings[r % len(settings):] + settings[:r % len(settings)]
        for program in PROGRAMS:
            for s in order:
                out = _ask(procs[s], program)
                times[s][program].append((out["wall"], out["cpu"]))
                values[s][program].append(out["value"])
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}: load {loads[-1]:.1f}", flush=True)
    for proc in procs.values():
        proc.stdin.write("quit\n")
        proc.stdin.close()
        proc.wait(timeout=60)
    summary = {s: {p: {"wall_median": statistics.median(w for w, _ in times[s][p]),
                       "cpu_median": statistics.median(c for _, c in times[s][p]),
                       "first_value": values[s][p][0]}
                   for p in PROGRAMS} for s in settings}
    for s in settings:
        for p in PROGRAMS:
            base = summary["unmitigated"][p]
            summary[s][p]["wall_ratio"] = summary[s][p]["wall_median"] / base["wall_median"]
            summary[s][p]["cpu_ratio"] = summary[s][p]["cpu_median"] / base["cpu_median"]
        print(s, " ".join(f"{p} {summary[s][p]['wall_median']:.2f} s "
                          f"(x{summary[s][p]['wall_ratio']:.2f} wall, "
                          f"x{summary[s][p]['cpu_ratio']:.2f} CPU)" for p in PROGRAMS))
    data = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m experiments.bench_xla_workaround "
                       + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "load_per_round": loads, "rounds": args.rounds, "test_size": args.test_size,
            "ll_samples": args.ll_samples, "settings": info, "summary": summary,
            "times": times, "values": values}
    with open(args.json, "w") as f:
        json.dump(data, f, indent=1)
    if args.docs:
        write_section(data, PAGE)
    return data


def write_section(data: dict, page: pathlib.Path) -> None:
    """Replaces the text between :data:`MARKERS` in ``page`` with the results table."""
    rows = []
    for s, summary in data["summary"].items():
        cells = " | ".join(f"{summary[p]['wall_median']:.2f} s (x{summary[p]['wall_ratio']:.2f}, "
                           f"CPU x{summary[p]['cpu_ratio']:.2f})" for p in PROGRAMS)
        rows.append(f"| {s} | jax {data['settings'][s]['jax']}, workaround "
                    f"{data['settings'][s]['workaround']} | {cells} |")
    loads = ", ".join(f"{v:.1f}" for v in data["load_per_round"])
    values = data["summary"]
    planar = {s: values[s]["eval_planar"]["first_value"] for s in values}
    text = f"""{MARKERS[0]}
Medians over {data['rounds']} rounds of {data['date'][:10]} ({data['machine']}; 1-minute load
average after each round: {loads}); in brackets the ratio to `unmitigated`, of the wall time
and of the process CPU time. `eval`: IS log-likelihood of {data['test_size']} test images with
{data['ll_samples']} samples (chunks of 100); `eval_planar`: the same with a 4-layer planar
posterior (at initialisation).

| setting | | epoch | eval | eval_planar |
|---|---|---|---|---|
{chr(10).join(rows)}

The planar model's estimate (nats; each setting's first call, same parameters and key):
{", ".join(f"{s} {v:.3f}" for s, v in planar.items())}; `unmitigated` differs from
`workaround` by {planar["unmitigated"] - planar["workaround"]:+.3f} nats (the miscompiled
program where that is not 0).

```bash
{data['command']}
```
{MARKERS[1]}"""
    old = page.read_text()
    start, end = old.index(MARKERS[0]), old.index(MARKERS[1]) + len(MARKERS[1])
    page.write_text(old[:start] + text + old[end:])


if __name__ == "__main__":
    main()
