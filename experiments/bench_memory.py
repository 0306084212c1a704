"""Benchmark: peak resident memory and seconds per step of the in-memory training path.

For each size ``N`` (``--sizes``, default 60000 and 600000; 6000000 is 4.7 GB of uint8 and
is skipped with a printed reason when the machine's free memory is short), synthetic 28x28
uint8 images (uniform noise, ``[N, 28, 28]``) are saved as one ``.npy`` file and trained
with ``dataset.name=npy:PATH`` (:mod:`jvae.data.user`): the ``pytorch_example`` model
(784-400-20, batch 128, Adam 1e-3), ``--epochs`` epochs, evaluated on 1000 held-out images
(a tenth of the data below 10000),
no figures, no log-likelihood. Every run is a fresh process (``python -m jvae.train``'s
:func:`jvae.train_and_evaluate`), which reports its own peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the median over its epochs of the
epoch's training seconds over its steps.

With ``--baseline PYTHONPATH`` the same runs are also made with the jvae found there (e.g. a
checkout of the commit before a change), alternating with this one size by size. The table
gives the peak, the dataset's stored size (``N * 784`` bytes), their ratio, and the growth of
the peak between consecutive sizes per byte of stored data (the issue's target: the
in-memory path's peak at most 1.5x the stored size plus a constant, i.e. a growth <= 1.5).

    python -m experiments.bench_memory --sizes 60000,600000 --baseline /tmp/base \\
        --json /tmp/bench_memory.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "pytorch_example.py"
SIDE = 28
EVAL_SIZE = 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="60000,600000",
                   help="comma-separated numbers of images (e.g. 60000,600000,6000000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (median over them)")
    p.add_argument("--baseline", default="", help="PYTHONPATH of the jvae to compare with")
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--dir", default="", help="folder for the .npy files and work directories "
                                             "(default: a temporary folder, removed after)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)   # internal: one run
    args = p.parse_args(argv)
    if args.child:
        return _child(pathlib.Path(args.child), args.epochs)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 200:
        p.error(f"--sizes must be numbers of images, at least 200, got {args.sizes!r}")
    codes = {"after": str(ROOT)}
    if args.baseline:
        if not (pathlib.Path(args.baseline) / "jvae").is_dir():
            p.error(f"--baseline {args.baseline}: no jvae package there")
        codes = {"before": args.baseline, **codes}
    with tempfile.TemporaryDirectory(dir=args.dir or None) as tmp:
        rows = _measure(sizes, codes, pathlib.Path(args.dir or tmp), args.epochs)
    print(_table(rows))
    if args.json:
        out = {"benchmark": "bench_memory", "sizes": sizes, "epochs": args.epochs,
               "image": [SIDE, SIDE, 1], "dtype": "uint8", "config": "pytorch_example",
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "commits": {k: _commit(v) for k, v in codes.items()}, "rows": rows}
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _measure(sizes, codes, folder: pathlib.Path, epochs: int) -> list[dict]:
    rows = []
    for n in sizes:
        need = n * SIDE * SIDE * 7            # uint8 file + float32 copy + slack, the old path
        free = _available_bytes()
        if free is not None and need > free:
            print(f"skip {n} images: about {need / 1e9:.1f} GB needed, "
                  f"{free / 1e9:.1f} GB available", flush=True)
            continue
        path = folder / f"images_{n}.npy"
        _write_images(path, n)
        for name, code in codes.items():
            work = folder / f"run_{name}_{n}"
            env = dict(os.environ, PYTHONPATH=code, MPLBACKEND="Agg")
            cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child",
                   str(path), "--epochs", str(epochs)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  cwd=str(work.parent))
            if proc.returncode != 0:
                raise RuntimeError(f"{name} at {n} images failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            stored = n * SIDE * SIDE
            row = {"code": name, "images": n, "stored_bytes": stored, **result,
                   "peak_over_stored": result["peak_rss_bytes"] / stored}
            rows.append(row)
            print(f"{name:>6} {n:>9} images: peak {result['peak_rss_bytes'] / 1e9:.2f} GB, "
                  f"{result['seconds_per_step'] * 1e3:.2f} ms/step", flush=True)
        path.unlink()
    for name in codes:                        # growth per stored byte between sizes
        mine = [r for r in rows if r["code"] == name]
        for a, b in zip(mine, mine[1:]):
            b["growth_per_stored_byte"] = ((b["peak_rss_bytes"] - a["peak_rss_bytes"])
                                           / (b["stored_bytes"] - a["stored_bytes"]))
    return rows


def _child(path: pathlib.Path, epochs: int) -> int:
    """One run in this process; prints one JSON line: peak RSS and seconds per step."""
    import resource
    import runpy
    import statistics

    from jvae import train_and_evaluate

    c = runpy.run_path(str(CONFIG))["get_config"]()
    c.dataset.name = f"npy:{path}"
    c.dataset.train_split, c.dataset.eval_split = "train", "validation"
    c.dataset.validation_size = min(EVAL_SIZE, _count(path) // 10)
    c.num_epochs = epochs
    c.figures = False
    c.eval.ll_samples = 0
    c.checkpoint_every = epochs
    work = path.parent / f"work_{os.getpid()}"
    train_and_evaluate(c, work, progress=False, log=lambda line: None)
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    steps = records[0]["step"]                                 # steps of one epoch
    per_step = [r["train/seconds"] / steps for r in records]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    print(json.dumps({"peak_rss_bytes": peak, "seconds_per_step": statistics.median(per_step),
                      "steps_per_epoch": steps, "epochs": len(records)}))
    return 0


def _count(path: pathlib.Path) -> int:
    import numpy as np

    return len(np.load(path, mmap_mode="r"))


def _write_images(path: pathlib.Path, n: int, chunk: int = 100_000) -> None:
    """``[n, 28, 28]`` uint8 uniform noise, written in chunks (bounded memory)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, SIDE, SIDE))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = rng.integers(0, 256, (stop - start, SIDE, SIDE), dtype=np.uint8)
    out.flush()
    del out


def _available_bytes() -> int | None:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _commit(code: str) -> str:
    try:
        return subprocess.run(["git", "-C", code, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _table(rows) -> str:
    lines = [f"{'code':>6} {'images':>9} {'stored MB':>9} {'peak MB':>8} {'peak/stored':>11} "
             f"{'growth':>7} {'ms/step':>8}"]
    for r in rows:
        growth = r.get("growth_per_stored_byte")
        lines.append(f"{r['code']:>6} {r['images']:>9} {r['stored_bytes'] / 1e6:>9.1f} "
                     f"{r['peak_rss_bytes'] / 1e6:>8.0f} {r['peak_over_stored']:>11.2f} "
                     f"{'' if growth is None else f'{growth:.2f}':>7} "
                     f"{r['seconds_per_step'] * 1e3:>8.2f}")
    lines.append("growth: extra peak bytes per extra stored byte from the size above "
                 "(target <= 1.5)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
