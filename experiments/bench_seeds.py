"""Benchmark: S seeds trained as one vmapped program against S sequential single-seed epochs.

The ``pytorch_example`` model (MNIST, batch 128). For each S in ``--seeds`` the script times
one epoch of S seeds vmapped (stacked train states, shared data and batch order, the order
key repeated per seed, as ``--config.num_seeds=S`` trains them) and S single-seed epochs run
one after the other, both compiled ahead of time, in the same process; it prints the medians
over ``--repeats`` (alternating which of the two runs first), the ratio vmapped / sequential
of the medians (below 1: the vmapped program is faster), the ratio of the fastest repeats
(load from other jobs only adds time) and the ratio within each repeat. With
``--vmapped-only`` it times only the vmapped programs and, when S=1 is among ``--seeds``,
gives each one's epoch time relative to one seed's (the GPU check: 1, 8 and 64 seeds).

    JVAE_DATA_DIR=../shared/data python -m experiments.bench_seeds --seeds 1 2 4 8
    JVAE_DATA_DIR=../shared/data python -m experiments.bench_seeds --seeds 1 8 64 --vmapped-only
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments.bench_record import stamp
from experiments.configs import pytorch_example
from jvae import TrainState, load_dataset, make_train_epoch


def _time(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _summary(s: int, vm: list, results: dict) -> dict:
    """Vmapped timings of S seeds; against the vmapped one-seed epoch if that was timed."""
    r = {"vmapped_seconds": statistics.median(vm), "vmapped_repeats": vm}
    r["seed_epochs_per_second"] = s / r["vmapped_seconds"]
    if 1 in results:
        r["vs_one_seed"] = r["vmapped_seconds"] / results[1]["vmapped_seconds"]
    return r


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--examples", type=int, default=60000, help="training images used")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    parser.add_argument("--json", default=None)
    parser.add_argument("--vmapped-only", action="store_true",
                        help="time only the vmapped programs (for many seeds on an accelerator)")
    args = parser.parse_args(argv)
    if min(args.seeds) <= 0 or args.repeats <= 0 or args.examples <= 0:
        parser.error("--seeds, --repeats and --examples must be positive")

    images = np.ascontiguousarray(
        load_dataset("mnist", "train_full", data_dir=args.data_dir, limit=args.examples))
    config = pytorch_example.get_config()
    model = jvae.build_model(config, images.shape[1:])
    optimizer = jvae.build_optimizer(config)
    epoch = make_train_epoch(jvae.build_loss(config, model), optimizer,
                             int(config.batch_size), jit=False)
    data = jax.device_put(images)
    order_key = jax.random.key(0)

    def create(seed):
        k_init, k_train = jax.random.split(jax.random.key(seed))
        return TrainState.create(jvae.init_params(model, k_init, images[:1]), optimizer, k_train)

    print(f"{os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].device_kind}; "
          f"{len(images)} images, batch {config.batch_size}")
    if not args.vmapped_only:
        single = jax.jit(epoch).lower(create(0), data, order_key).compile()
    results = {}
    for s in args.seeds:
        states = [create(i) for i in range(s)]
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
        order_keys = jnp.stack([order_key] * s)
        vmapped = jax.jit(jax.vmap(epoch, in_axes=(0, None, 0))).lower(
            stacked, data, order_keys).compile()
        run_vm = lambda: vmapped(stacked, data, order_keys)  # noqa: E731
        if args.vmapped_only:
            jax.block_until_ready(run_vm())                 # warm up, finished before timing
            vm = [_time(run_vm) for _ in range(args.repeats)]
            results[s] = r = _summary(s, vm, results)
            print(f"S={s}: vmapped {r['vmapped_seconds']:.3f} s"
                  + (f", {r['vs_one_seed']:.2f}x one seed" if "vs_one_seed" in r else "")
                  + f", {r['seed_epochs_per_second']:.2f} seed-epochs/s", flush=True)
            continue
        run_seq = lambda: [single(st, data, order_key) for st in states]  # noqa: E731
        jax.block_until_ready((run_seq(), run_vm()))        # warm up, finished before timing
        seq, vm = [], []
        for i in range(args.repeats):    # interleaved; which runs first alternates per repeat
            if i % 2 == 0:
                seq.append(_time(run_seq))
                vm.append(_time(run_vm))
            else:
                vm.append(_time(run_vm))
                seq.append(_time(run_seq))
        r = _summary(s, vm, results)
        r.update(sequential_seconds=statistics.median(seq), sequential_repeats=seq)
        r["ratio"] = r["vmapped_seconds"] / r["sequential_seconds"]
        # Load from other jobs only ever adds time, so the fastest repeat of each is the
        # least disturbed one.
        r["min_ratio"] = min(vm) / min(seq)
        # Each repeat times both back to back: its ratio is less exposed to slow drifts in
        # the host's speed than the ratio of the medians.
        r["repeat_ratios"] = [v / q for v, q in zip(vm, seq)]
        r["median_repeat_ratio"] = statistics.median(r["repeat_ratios"])
        results[s] = r
        print(f"S={s}: sequential {r['sequential_seconds']:.2f} s, vmapped "
              f"{r['vmapped_seconds']:.2f} s, ratio {r['ratio']:.3f}, of the fastest "
              f"repeats {r['min_ratio']:.3f} (per repeat: "
              + ", ".join(f"{x:.3f}" for x in r["repeat_ratios"])
              + f"), {r['seed_epochs_per_second']:.2f} seed-epochs/s", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            stamp({"seeds": results}, "experiments.bench_seeds", argv), indent=2))
    return results


if __name__ == "__main__":
    main()
