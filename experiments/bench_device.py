"""Benchmark: jvae's main programs on whatever device JAX finds, float32 against bfloat16.

One command for an accelerator (or the CPU): on the default device it compiles, then times in
interleaved rounds (:mod:`experiments.bench_timing`; medians over rounds, compile seconds
apart), for each compute dtype of ``--dtypes``:

- ``mlp_epoch``: one training epoch of the ``pytorch_example`` VAE (784-400-20, batch 128,
  Adam 1e-3; :func:`jvae.make_train_epoch` of the config's model, loss and optimiser);
- ``seeds_S`` for each S of ``--seeds`` (default 1 and 8): one epoch of S seeds as one vmapped
  program (the stacked states of ``config.num_seeds = S``, as ``jvae.train`` trains them);
- ``is_eval``: importance-sampled ``log p(x)`` (:func:`jvae.make_evaluator`, K samples in
  chunks of 100) on MNIST test images, at the parameters after one epoch of the first dtype
  (float32 by default; the same parameters for every dtype);
- ``conv_dpm2_step`` and ``conv_default_step``: one training step of the DPM2 CNN VAE
  (``conv_preset("dpm2")``) and of the default conv model on 64x64 binary images
  (``experiments.bench_conv``'s programs, ``conv_impl="auto"``); their ``first_call_s`` is
  compilation plus one step.

A dtype other than float32 is passed as ``config.model.compute_dtype``; where this jvae's
config has no such field, or the model refuses it, every measurement of that dtype is recorded
as unavailable with the reason. Also recorded: the device (``jax.devices()``, platform, kind,
jax/jaxlib versions, the default matmul precision), each AOT-compiled program's memory
footprint (XLA's memory analysis) and the run's peak memory: ``device.memory_stats()['peak_bytes_in_use']`` where the backend reports
it (GPU, TPU), else the process's peak resident set size (``ru_maxrss``; the CPU backend).

The JSON (default ``docs/data/bench_device.json``) is keyed by platform; ``--merge`` keeps the
other platforms' entries, so a GPU run adds its column beside the CPU one. Sizes: the default
is the full benchmark (60000 training images, IS on 10000 test images with K = 1000, conv
batch 256, 5 rounds; under 8 minutes on one GPU); ``--quick`` (subsets, 3 rounds: a few
minutes on a 2-core CPU) and ``--smoke`` (tiny, for the test) say their sizes in the JSON.

    pip install -r requirements-cuda.txt        # on the GPU machine
    JVAE_DATA_DIR=../shared/data python -m experiments.bench_device --merge
    JVAE_DATA_DIR=../shared/data python -m experiments.bench_device --quick --merge   # CPU
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import resource

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments import bench_conv
from experiments.bench_device_table import MEASURES, table
from experiments.bench_record import stamp
from experiments.bench_timing import compile_ahead, compiled_bytes, interleaved_rounds, time_call
from experiments.configs import pytorch_example
from jvae.runs.setup import initial_state, order_key

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "docs" / "data" / "bench_device.json"
#: Sizes of each mode: training images of the epoch and of the seeds' epoch, test images and
#: importance samples K of the evaluation, the conv steps' batch, and the timed rounds.
MODES = {"full": dict(epoch_images=60000, seed_images=60000, eval_images=10000,
                      ll_samples=1000, conv_batch=256, rounds=5),
         "quick": dict(epoch_images=60000, seed_images=12800, eval_images=500,
                       ll_samples=1000, conv_batch=64, rounds=3),
         "smoke": dict(epoch_images=256, seed_images=256, eval_images=16,
                       ll_samples=8, conv_batch=2, rounds=2)}


class Unavailable(Exception):
    """A measurement this jvae or this device cannot make (the message says why)."""


def with_dtype(config, dtype: str):
    """``config`` with ``model.compute_dtype = dtype``; float32 needs no field. Raises
    :class:`Unavailable` where the config has no ``compute_dtype`` or refuses ``dtype``."""
    if "compute_dtype" not in config.model:
        if dtype == "float32":
            return config
        raise Unavailable("this jvae's config has no model.compute_dtype")
    config.model.compute_dtype = dtype
    try:
        jvae.validate_config(config)
    except ValueError as e:
        raise Unavailable(str(e).splitlines()[0]) from None
    return config


def device_info() -> dict:
    import jaxlib

    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "devices": [str(d) for d in devices], "device_count": len(devices),
            "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            # None: the backend's default (on NVIDIA GPUs since Ampere, TF32 for float32)
            "matmul_precision": jax.config.jax_default_matmul_precision}


def peak_memory() -> dict:
    """The run's peak memory so far and what it is."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"peak_bytes": int(stats["peak_bytes_in_use"]),
                "source": "device.memory_stats()['peak_bytes_in_use'] of device 0"}
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "source": "peak resident set size of the process (ru_maxrss; this backend "
                      "reports no memory_stats): host memory, Python and data included"}


def prepare_epoch(dtype: str, images: np.ndarray, seeds: int = 0):
    """``(run, record, state_box)``: the AOT-compiled ``pytorch_example`` epoch; ``seeds > 0``:
    that many seeds' stacked states in one vmapped epoch."""
    config = with_dtype(pytorch_example.get_config(), dtype)
    config.num_seeds = max(seeds, 1)
    model = jvae.build_model(config, images.shape[1:])
    optimizer = jvae.build_optimizer(config)
    loss = jvae.build_loss(config, model)
    state = initial_state(config, model, optimizer, images[:1])
    data = jax.device_put(images)
    if seeds:
        if seeds == 1:                     # initial_state stacks only several seeds
            state = jax.tree.map(lambda a: a[None], state)
        epoch = jvae.make_train_epoch(loss, optimizer, int(config.batch_size), jit=False)
        make = jax.jit(jax.vmap(epoch, in_axes=(0, None, 0)))
        args = (data, order_key(config, 0, runs=seeds))
    else:
        make = jvae.make_train_epoch(loss, optimizer, int(config.batch_size), model=model)
        args = (data,)
    compiled, seconds = compile_ahead(make, state, *args)
    box = [state]

    def run():
        box[0], metrics, _ = compiled(box[0], *args)
        return metrics["loss"]

    first = float(jnp.mean(run()))                       # warm-up, not timed
    record = {"compile_s": seconds, "compiled_bytes": compiled_bytes(compiled),
              "images": len(images), "steps": len(images) // int(config.batch_size),
              "warmup_loss": first}
    return run, record, box


def prepare_eval(dtype: str, images: np.ndarray, params, k: int):
    """IS log-likelihood of ``images`` with ``k`` samples at ``params`` (float32 layout)."""
    config = with_dtype(pytorch_example.get_config(), dtype)
    model = jvae.build_model(config, images.shape[1:])
    evaluator = jvae.make_evaluator(model, batch_size=min(500, len(images)), ll_samples=k,
                                    ll_chunk=min(100, k), validate=False)
    data, key = jax.device_put(images), jax.random.key(0)
    compiled, seconds = compile_ahead(evaluator, params, key, data)
    run = lambda: compiled(params, key, data)["log_likelihood"]  # noqa: E731
    return run, {"compile_s": seconds, "compiled_bytes": compiled_bytes(compiled),
                 "images": len(images), "samples": k, "log_likelihood": float(run())}


def prepare_conv(dtype: str, arch: str, batch: int):
    """One training step of ``arch`` (``dpm2`` or ``default``) at ``batch`` 64x64 images."""
    config = with_dtype(bench_conv.jvae_config(arch, "auto"), dtype)
    x = (np.random.default_rng(0).random((batch, 64, 64, 1)) < 0.3).astype(np.float32)
    run = bench_conv.jvae_programs(arch, "auto", x, config)[f"{arch}_step"]
    return run, {"first_call_s": time_call(run), "batch": batch}


def measure(dtypes: list[str], seeds: list[int], only: list[str], sizes: dict,
            data_dir) -> dict:
    """Every measurement of ``only`` for every dtype: ``{measure: {dtype: record}}``."""
    load = lambda split, n: np.ascontiguousarray(jvae.load_dataset(  # noqa: E731
        "mnist", split, data_dir=data_dir, limit=n), np.float32)
    train = load("train_full", max(sizes["epoch_images"], sizes["seed_images"]))
    test = load("test", sizes["eval_images"]) if "is_eval" in only else None
    programs, out, eval_params = {}, {m: {} for m in only}, None
    params_note = ["at initialisation"]

    def add(name, dtype, prepare):
        try:
            run, record = prepare()
        except Unavailable as e:
            out[name][dtype] = {"unavailable": str(e)}
            return
        programs[f"{name}/{dtype}"] = run
        out[name][dtype] = record
        print(f"# prepared {name} {dtype}: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()),
            flush=True)

    for dtype in dtypes:
        for name in only:
            if name == "mlp_epoch":
                def prep(d=dtype):
                    nonlocal eval_params
                    run, record, box = prepare_epoch(d, train[:sizes["epoch_images"]])
                    if d == dtypes[0]:                    # after one epoch of the first dtype
                        eval_params = jax.tree.map(jnp.copy, box[0].params)
                        params_note[0] = f"after one {d} epoch"
                    return run, record
                add(name, dtype, prep)
            elif name.startswith("seeds_"):
                s = int(name.split("_")[1])
                add(name, dtype, lambda d=dtype, s=s: prepare_epoch(
                    d, train[:sizes["seed_images"]], seeds=s)[:2])
            elif name.startswith("conv_"):
                arch = name.split("_")[1]
                add(name, dtype, lambda d=dtype, a=arch: prepare_conv(d, a, sizes["conv_batch"]))
    if "is_eval" in only:
        if eval_params is None:
            config = pytorch_example.get_config()
            model = jvae.build_model(config, test.shape[1:])
            eval_params = jvae.init_params(model, jax.random.key(1), test[:1])
        for dtype in dtypes:
            add("is_eval", dtype, lambda d=dtype: prepare_eval(d, test, eval_params,
                                                               sizes["ll_samples"]))
            if "unavailable" not in out["is_eval"][dtype]:
                out["is_eval"][dtype]["params"] = params_note[0]
    times = interleaved_rounds(programs, sizes["rounds"])
    for key, seconds in times.items():
        name, dtype = key.split("/")
        out[name][dtype].update(median_s=float(np.median(seconds)), rounds_s=seconds)
    for records in out.values():
        for dtype, record in records.items():
            records[dtype] = mark_non_finite(record)
    return out


def derived(measurements: dict, seeds: list[int]) -> dict:
    """Ratios per dtype: the most seeds' vmapped epoch over the fewest, bfloat16 over float32."""
    out: dict = {}
    lo, hi = f"seeds_{min(seeds)}", f"seeds_{max(seeds)}"
    if lo != hi and lo in measurements and hi in measurements:
        for dtype, r in measurements[hi].items():
            base = measurements[lo].get(dtype, {})
            if "median_s" in r and "median_s" in base:
                out.setdefault(dtype, {})[f"{hi}_over_{lo}"] = r["median_s"] / base["median_s"]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="subsets, for a CPU")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, for the test")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--seeds", default="1,8", help="numbers of vmapped seeds")
    parser.add_argument("--only", default="", help=f"subset of {','.join(MEASURES)} "
                        "(seeds: every seeds_S)")
    parser.add_argument("--rounds", type=int, default=0, help="0: the mode's")
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other platforms' entries of an existing --json file")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    sizes = dict(MODES[mode], **({"rounds": args.rounds} if args.rounds else {}))
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in ("float32", "bfloat16", "float16")]
    try:
        seeds = sorted({int(s) for s in args.seeds.split(",") if s.strip()})
    except ValueError:
        seeds = [0]
    if bad or not dtypes:
        parser.error(f"--dtypes takes float32, bfloat16 or float16, got {args.dtypes!r}")
    if not seeds or min(seeds) < 1 or sizes["rounds"] < 1:
        parser.error(f"--seeds must be positive integers and --rounds >= 1, got "
                     f"{args.seeds!r} and {args.rounds}")
    names = ["mlp_epoch", *(f"seeds_{s}" for s in seeds), "is_eval", "conv_dpm2_step",
             "conv_default_step"]
    only = [n.strip() for n in args.only.split(",") if n.strip()] or list(MEASURES)
    unknown = sorted(set(only) - set(MEASURES))
    if unknown:
        parser.error(f"--only takes names from {','.join(MEASURES)}, got {unknown}")
    only = [n for n in names if n in only or (n.startswith("seeds_") and "seeds" in only)]

    info = device_info()
    print(f"# {info['devices']}: {info['platform']} ({info['device_kind']}), jax "
          f"{info['jax']}, jaxlib {info['jaxlib']}; {mode} mode {sizes}", flush=True)
    measurements = measure(dtypes, seeds, only, sizes, args.data_dir)
    entry = stamp({**info, "mode": mode, "sizes": sizes, "dtypes": dtypes,
                   "measurements": measurements, "derived": derived(measurements, seeds),
                   "memory": peak_memory()}, "experiments.bench_device", argv)
    path = pathlib.Path(args.json)
    data = {"platforms": {}}
    if args.merge and path.exists():
        data = json.loads(path.read_text())
    data["platforms"][info["platform"]] = entry
    if args.json:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data, platforms=[info["platform"]]))
    return data


def mark_non_finite(record: dict) -> dict:
    """``record`` as is when every number in it is finite; else its non-finite numbers
    become ``None`` and ``unavailable`` names them (JSON holds no NaN, and a NaN loss makes the
    program's timing no result)."""
    bad = [k for k, v in record.items()
           if isinstance(v, float) and not math.isfinite(v)
           or isinstance(v, list) and not all(math.isfinite(x) for x in v)]
    if not bad:
        return record
    clean = {k: (None if k in bad else v) for k, v in record.items()}
    return {**clean, "unavailable": "non-finite " + ", ".join(
        f"{k} ({record[k]})" for k in bad)}


if __name__ == "__main__":
    main()
