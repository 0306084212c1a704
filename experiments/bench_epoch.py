"""Benchmark: one training epoch of the ``pytorch_example`` VAE in jvae, NumPyro, hand-written JAX
and PyTorch, interleaved in one process.

All four train the PyTorch-examples MNIST VAE (784-400-20-400-784, Bernoulli/BCE on grey levels,
Adam 1e-3, batch 128, PyTorch's ``nn.Linear`` initialisation) on the same 60000 training images
held in memory:

- ``jvae``: :func:`jvae.training.make_train_epoch` of the ``pytorch_example`` config (analytic
  KL), one jitted ``lax.scan`` per epoch, compiled ahead of time;
- ``numpyro``: ``SVI`` + ``Trace_ELBO`` with the epoch in one jitted ``lax.fori_loop``, as
  NumPyro's ``examples/vae.py`` trains (``experiments/numpyro_reference.py``; ``pip install -e
  ".[numpyro]"``);
- ``hand``: the same model as a pure jax/optax loss in one jitted ``lax.scan``, the floor of a
  JAX program (``experiments/numpyro_reference.py``);
- ``torch``: ``experiments/torch_reference.py`` (``pip install -e ".[torch]"``), a fresh model
  per round (one epoch each, full batches plus the last partial one, as the example).

Round ``r`` runs one epoch of each program, in an order rotated every round so that none always
runs first; the medians are over rounds 2..N (round 1 holds the JAX programs' first calls).
Printed: each program's median epoch (wall time; also the process CPU time, which a loaded host
inflates less), the ratios jvae/NumPyro, jvae/hand and jvae/PyTorch, the compile times, and the time from the command's start (before ``import jax``) to the end of
jvae's first epoch (imports, data load, build, compile, one epoch: jvae is prepared and run
first). ``--cli`` also launches a fresh ``python -m jvae.train`` of the ``pytorch_example`` config
for one epoch and reports its wall time, compile and epoch seconds from its metrics.

    JVAE_DATA_DIR=../shared/data python -m experiments.bench_epoch --rounds 7 --cli --json out.json
"""

from __future__ import annotations

import time

_START = time.perf_counter()  # the command's start, before the heavy imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jvae  # noqa: E402
from experiments import numpyro_reference, torch_reference  # noqa: E402
from experiments.bench_record import stamp  # noqa: E402
from experiments.configs import pytorch_example  # noqa: E402
from jvae import TrainState, make_train_epoch  # noqa: E402

PROGRAMS = ("jvae", "numpyro", "hand", "torch")


def prepare_jvae(images: np.ndarray, seed: int = 1):
    """Build and compile jvae's epoch; returns ``(run() -> mean loss, compile seconds)``."""
    config = pytorch_example.get_config()
    config.seed = seed
    model = jvae.build_model(config, images.shape[1:])
    optimizer = jvae.build_optimizer(config)
    loss_fn = jvae.build_loss(config, model)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    state = TrainState.create(jvae.init_params(model, init_key, images[:1]), optimizer, train_key)
    data = jax.device_put(images)
    epoch = make_train_epoch(loss_fn, optimizer, int(config.batch_size))
    t0 = time.perf_counter()
    compiled = epoch.lower(state, data).compile()
    compile_seconds = time.perf_counter() - t0
    box = [state]

    def run() -> float:
        box[0], metrics, _ = compiled(box[0], data)
        return float(metrics["loss"])  # waits for the epoch

    return run, compile_seconds


def prepare_numpyro(flat: jax.Array, seed: int = 1, elbo: str = "trace"):
    """NumPyro's SVI epoch (see ``numpyro_reference``); ``flat`` is ``[N, 784]`` on device."""
    params = numpyro_reference.init_torch_params(jax.random.key(seed))
    svi = numpyro_reference.make_numpyro_svi(params, elbo=elbo)
    state = numpyro_reference.init_numpyro_state(svi, params, jax.random.key(seed + 1),
                                                 flat[:128])
    epoch = numpyro_reference.make_numpyro_epoch(svi, 128)
    key = jax.random.key(seed + 2)
    t0 = time.perf_counter()
    compiled = epoch.lower(state, key, flat).compile()
    compile_seconds = time.perf_counter() - t0
    box = [state, key]

    def run() -> float:
        box[1], k = jax.random.split(box[1])
        box[0], loss = compiled(box[0], k, flat)
        return float(loss)

    return run, compile_seconds


def prepare_hand(flat: jax.Array, seed: int = 1):
    """The hand-written jax/optax ``lax.scan`` epoch (see ``numpyro_reference``)."""
    init, epoch = numpyro_reference.make_handwritten_epoch(128)
    state = init(numpyro_reference.init_torch_params(jax.random.key(seed)),
                 jax.random.key(seed + 1))
    t0 = time.perf_counter()
    compiled = epoch.lower(state, flat).compile()
    compile_seconds = time.perf_counter() - t0
    box = [state]

    def run() -> float:
        box[0], loss = compiled(box[0], flat)
        return float(loss)

    return run, compile_seconds


def prepare_torch(flat_np: np.ndarray, seed: int = 1):
    """PyTorch: one fresh-model epoch per call (``torch_reference.time_torch_epochs``)."""
    calls = [0]

    def run() -> float:
        calls[0] += 1
        out = torch_reference.time_torch_epochs(flat_np, 1, seed=seed + calls[0])
        return float(out["train_loss"][0])

    return run, 0.0


def time_cli(data_dir: str | None) -> dict:
    """A fresh ``python -m jvae.train`` process, ``pytorch_example`` for one epoch, no figures.

    Returns the process wall time, the compile and epoch seconds from its ``metrics.jsonl``,
    and ``to_first_epoch_seconds``: from the launch to the metrics line's write, minus the
    evaluation that precedes that write.
    """
    config = pathlib.Path(__file__).resolve().parent / "configs" / "pytorch_example.py"
    env = dict(os.environ)
    if data_dir:
        env["JVAE_DATA_DIR"] = data_dir
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "-m", "jvae.train", "--config", str(config), "--workdir",
               workdir, "--noprogress", "--config.num_epochs=1", "--config.figures=False",
               "--config.checkpoint_every=0"]
        launched = time.time()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"jvae.train failed: {proc.stderr.strip().splitlines()[-1:]}")
        metrics_path = next(pathlib.Path(workdir).rglob("metrics.jsonl"))
        record = json.loads(metrics_path.read_text().splitlines()[0])
        written = metrics_path.stat().st_mtime - launched
    return {"wall_seconds": wall, "compile_seconds": record.get("train/compile_seconds"),
            "epoch_seconds": record.get("train/seconds"),
            "eval_seconds": record.get("eval/seconds"),
            "to_first_epoch_seconds": written - float(record.get("eval/seconds", 0.0)),
            "command": " ".join(cmd[1:])}


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", "--epochs", type=int, default=7, dest="rounds",
                        help="epochs per program, interleaved (>= 2)")
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    parser.add_argument("--only", default=",".join(PROGRAMS),
                        help=f"comma-separated subset of {','.join(PROGRAMS)}")
    parser.add_argument("--numpyro-elbo", default="trace", choices=["trace", "meanfield"],
                        help="Trace_ELBO (default) or TraceMeanField_ELBO (analytic KL)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--cli", action="store_true",
                        help="also time a fresh `python -m jvae.train` process (one epoch)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be >= 2 (the median is over rounds 2..N)")
    wanted = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(PROGRAMS))
    if unknown or "jvae" not in wanted:
        parser.error(f"--only takes names from {PROGRAMS} and must include jvae, got {wanted}")
    if args.no_torch:
        wanted = [p for p in wanted if p != "torch"]

    from jvae.data import load_dataset

    images = np.ascontiguousarray(load_dataset("mnist", "train_full", data_dir=args.data_dir),
                                  np.float32)
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                               f"{os.cpu_count()} cores",
                    "jax": jax.__version__, "platform": jax.devices()[0].platform,
                    "images": len(images), "rounds": args.rounds, "seed": args.seed,
                    "load_at_start": _load(), "programs": {}}
    print(f"machine: {result['machine']}; jax {jax.__version__} on {result['platform']}; "
          f"{len(images)} images; load average {result['load_at_start']}")

    runs, programs = {}, result["programs"]
    runs["jvae"], compile_s = prepare_jvae(images, args.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    loss = runs["jvae"]()
    first = time.perf_counter()
    programs["jvae"] = {"compile_seconds": compile_s, "epoch_seconds": [first - t0],
                        "epoch_cpu_seconds": [time.process_time() - c0], "train_loss": [loss]}
    result["start_to_first_jvae_epoch_seconds"] = first - _START
    print(f"start of the command -> end of jvae's first epoch: {first - _START:.2f} s "
          f"(compile {compile_s:.2f} s, epoch {first - t0:.2f} s)")

    flat = jax.device_put(images.reshape(len(images), -1))
    for name in wanted[1:] if wanted[0] == "jvae" else [w for w in wanted if w != "jvae"]:
        if name == "numpyro" and not numpyro_reference.numpyro_available():
            print("numpyro: not importable (pip install -e '.[numpyro]'); skipped")
            continue
        if name == "torch" and not torch_reference.torch_available():
            print("pytorch: not importable (pip install -e '.[torch]'); skipped")
            continue
        if name == "numpyro":
            runs[name], compile_s = prepare_numpyro(flat, args.seed, args.numpyro_elbo)
        elif name == "hand":
            runs[name], compile_s = prepare_hand(flat, args.seed)
        else:
            runs[name], compile_s = prepare_torch(np.array(images.reshape(len(images), -1)),
                                                  args.seed)
        programs[name] = {"compile_seconds": compile_s, "epoch_seconds": [],
                          "epoch_cpu_seconds": [], "train_loss": []}

    names = list(runs)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if r == 0 and name == "jvae":
                continue  # its first epoch ran above
            t0, c0 = time.perf_counter(), time.process_time()
            loss = runs[name]()
            programs[name]["epoch_seconds"].append(time.perf_counter() - t0)
            programs[name]["epoch_cpu_seconds"].append(time.process_time() - c0)
            programs[name]["train_loss"].append(loss)
    result["load_at_end"] = _load()

    for name, p in programs.items():
        p["median_seconds"] = statistics.median(p["epoch_seconds"][1:])
        p["median_cpu_seconds"] = statistics.median(p["epoch_cpu_seconds"][1:])
        print(f"{name:8s}: compile {p['compile_seconds']:.2f} s; epochs "
              + ", ".join(f"{s:.2f}" for s in p["epoch_seconds"])
              + f" s; median(2..N) {p['median_seconds']:.3f} s (CPU time "
              + f"{p['median_cpu_seconds']:.3f} s); loss "
              + ", ".join(f"{v:.1f}" for v in p["train_loss"]))
    jv = programs["jvae"]["median_seconds"]
    result["ratios"] = {f"jvae/{name}": jv / p["median_seconds"]
                        for name, p in programs.items() if name != "jvae"}
    cj = programs["jvae"]["median_cpu_seconds"]
    result["cpu_ratios"] = {f"jvae/{name}": cj / p["median_cpu_seconds"]
                            for name, p in programs.items() if name != "jvae"}
    for key, value in result["ratios"].items():
        print(f"ratio {key} (median epoch): {value:.3f}; of the median CPU time "
              f"{result['cpu_ratios'][key]:.3f}")
    if args.cli:
        result["cli"] = time_cli(args.data_dir)
        c = result["cli"]
        print(f"fresh `python -m jvae.train` (1 epoch, no figures): process {c['wall_seconds']:.2f} s; "
              f"launch -> end of first epoch ~{c['to_first_epoch_seconds']:.2f} s (compile "
              f"{c['compile_seconds']:.2f} s, epoch {c['epoch_seconds']:.2f} s, eval "
              f"{c['eval_seconds']:.2f} s)")
    print(f"load average at the end: {result['load_at_end']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            stamp(result, "experiments.bench_epoch", argv), indent=2))
    return result


if __name__ == "__main__":
    main()
