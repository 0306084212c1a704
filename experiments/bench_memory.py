"""Benchmark: peak resident memory and seconds per step, in-memory against out-of-core.

For each size ``N`` (``--sizes``, default 60000 and 600000; a size may name its image shape,
``200000@64x64x3``, default 28x28x1), synthetic uint8 images (uniform noise) are saved as one
``.npy`` file and trained with ``dataset.name=npy:PATH`` (:mod:`jvae.data.user`): the
``pytorch_example`` model (784-400-20 for 28x28, batch 128, Adam 1e-3), ``--epochs`` epochs,
evaluated on 1000 held-out images (a tenth of the data below 10000), no figures, no
log-likelihood. Two paths (``--modes``): ``in-memory`` (``dataset.memory_budget=none``: the
split on the device) and ``out-of-core`` (``dataset.memory_budget=--budget``, default 32MB, at most half the
stored size: the split streamed from the file in chunks, :mod:`jvae.runs.streaming`). Every run is a fresh
process (``python -m jvae.train``'s :func:`jvae.train_and_evaluate`), which reports its own
peak resident memory (``VmHWM`` of ``/proc/self/status``, :func:`_peak_rss`) and the median over its
epochs of the epoch's training seconds over its steps. ``--rounds R`` repeats every (size,
path) R times, the paths interleaved within a round (a size over 1 GB stored runs once); the table gives the median over rounds
(the raw values are in the JSON). A size whose file or in-memory run does not fit the free
disk or memory is skipped with a printed reason.

With ``--baseline PYTHONPATH`` the same runs are also made with the jvae found there (e.g. a
checkout of the commit before a change), alternating with this one. The table gives the peak,
the dataset's stored size (``N * H * W * C`` bytes), their ratio, and the growth of the peak
between consecutive sizes of one image shape per byte of stored data (the issue's targets:
in-memory growth <= 1.5; out-of-core peak within 1.5x from 60 thousand to 6 million images).

    python -m experiments.bench_memory --sizes 60000,600000,6000000,200000@64x64x3 \\
        --rounds 3 --json docs/data/bench_memory.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "pytorch_example.py"
SIDE = 28
EVAL_SIZE = 1000
MODES = ("in-memory", "out-of-core")
ONE_ROUND_ABOVE = 10 ** 9          # stored bytes above which a size runs one round only


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="60000,600000",
                   help="comma-separated numbers of images, each optionally @HxWxC "
                        "(e.g. 60000,600000,6000000,200000@64x64x3)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (median over them)")
    p.add_argument("--rounds", type=int, default=1, help="runs of every (size, path)")
    p.add_argument("--modes", default=",".join(MODES), help="in-memory and/or out-of-core")
    p.add_argument("--budget", default="32MB",
                   help="dataset.memory_budget of the out-of-core runs (at most half the "
                        "stored size, so that they stream)")
    p.add_argument("--baseline", default="", help="PYTHONPATH of the jvae to compare with")
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--append", action="store_true",
                   help="add the rows to those of the --json file (another invocation's, "
                        "e.g. big sizes with fewer epochs; a size measured again replaces its "
                        "rows); each invocation is recorded")
    p.add_argument("--dir", default="", help="folder for the .npy files and work directories "
                                             "(default: a temporary folder, removed after)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)   # internal: one run
    args = p.parse_args(argv)
    if args.child:
        return _child(pathlib.Path(args.child), args.epochs, args.budget)
    try:
        sizes = [_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes must be numbers of images, each optionally @HxWxC, got {args.sizes!r}")
    if not sizes or min(n for n, _ in sizes) < 200:
        p.error(f"--sizes must be numbers of images, at least 200, got {args.sizes!r}")
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        p.error(f"--modes must be among {','.join(MODES)}, got {args.modes!r}")
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    codes = {"after": str(ROOT)}
    if args.baseline:
        if not (pathlib.Path(args.baseline) / "jvae").is_dir():
            p.error(f"--baseline {args.baseline}: no jvae package there")
        codes = {"before": args.baseline, **codes}
    with tempfile.TemporaryDirectory(dir=args.dir or None) as tmp:
        rows, skipped = _measure(sizes, codes, modes, pathlib.Path(args.dir or tmp), args)
    if not args.json:
        print(_table(_growth(rows)))
    if args.json:
        run = {"command": "python -m experiments.bench_memory " + " ".join(
                   a for a in (argv if argv is not None else sys.argv[1:]) if a != "--append"),
               "sizes": args.sizes, "epochs": args.epochs, "rounds": args.rounds,
               "budget": args.budget,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "load_average": os.getloadavg()[0],
               "commits": {k: _commit(v) for k, v in codes.items()}}
        for r in rows:
            r["epochs_run"] = args.epochs
        out = {"benchmark": "bench_memory", "dtype": "uint8", "config": "pytorch_example",
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "invocations": [], "rows": [], "skipped": []}
        if args.append and pathlib.Path(args.json).exists():
            out = json.loads(pathlib.Path(args.json).read_text())
        out["invocations"].append(run)
        fresh = {_key(r) for r in rows}         # a size measured again replaces its rows
        out["rows"] = _growth([r for r in out["rows"] if _key(r) not in fresh] + rows)
        out["skipped"] += skipped
        print(_table(out["rows"]))
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _size(text: str) -> tuple[int, tuple[int, int, int]]:
    """``"60000"`` or ``"200000@64x64x3"`` -> ``(count, (H, W, C))``."""
    count, _, shape = text.strip().partition("@")
    dims = tuple(int(d) for d in shape.split("x")) if shape else (SIDE, SIDE, 1)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(text)
    return int(count), dims


def _measure(sizes, codes, modes, folder: pathlib.Path, args) -> tuple[list[dict], list[str]]:
    rows, skipped = [], []
    for n, shape in sizes:
        stored = n * int(np.prod(shape))
        free, disk = _available_bytes(), shutil.disk_usage(folder).free
        if stored + (1 << 30) > disk:
            skipped.append(_skip(f"{n} images {_shape(shape)}: the {stored / 1e9:.1f} GB file "
                                 f"does not fit the {disk / 1e9:.1f} GB free on {folder}"))
            continue
        mine = list(modes)
        need = stored * 2 + (2 << 30)          # device copy + chunk + the process (in-memory)
        if "in-memory" in mine and free is not None and need > free:
            mine.remove("in-memory")
            skipped.append(_skip(f"in-memory at {n} images {_shape(shape)}: about "
                                 f"{need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB available"))
        if not mine:
            continue
        path = folder / f"images_{n}_{_shape(shape)}.npy"
        _write_images(path, n, shape)
        runs: dict = {}
        for _ in range(args.rounds if stored <= ONE_ROUND_ABOVE else 1):
            for name, code in codes.items():
                for mode in mine:
                    result = _run_child(path, name, code, mode, args)
                    runs.setdefault((name, mode), []).append(result)
                    print(f"{name:>6} {mode:>11} {n:>9} images {_shape(shape)}: peak "
                          f"{result['peak_rss_bytes'] / 1e9:.2f} GB, "
                          f"{result['seconds_per_step'] * 1e3:.2f} ms/step", flush=True)
        for (name, mode), results in runs.items():
            peak = statistics.median(r["peak_rss_bytes"] for r in results)
            rows.append({"code": name, "mode": mode, "images": n, "shape": list(shape),
                         "stored_bytes": stored, "peak_rss_bytes": peak,
                         "seconds_per_step": statistics.median(r["seconds_per_step"]
                                                               for r in results),
                         "steps_per_epoch": results[0]["steps_per_epoch"],
                         "epochs": results[0]["epochs"], "streamed": results[0]["streamed"],
                         "peak_over_stored": peak / stored,
                         "rounds": [{k: r[k] for k in ("peak_rss_bytes", "seconds_per_step")}
                                    for r in results]})
        path.unlink()
    return rows, skipped


def _key(row: dict) -> tuple:
    return row["code"], row["mode"], row["images"], tuple(row["shape"])


def _growth(rows: list[dict]) -> list[dict]:
    """Adds to each row the growth of the peak per stored byte from the next smaller size of
    the same code, path and image shape, and its peak over the smallest size's."""
    for r in rows:
        r.pop("growth_per_stored_byte", None)
        r.pop("peak_over_smallest", None)
    for key in {(r["code"], r["mode"], tuple(r["shape"])) for r in rows}:
        mine = sorted((r for r in rows if (r["code"], r["mode"], tuple(r["shape"])) == key),
                      key=lambda r: r["images"])
        for a, b in zip(mine, mine[1:]):
            b["growth_per_stored_byte"] = ((b["peak_rss_bytes"] - a["peak_rss_bytes"])
                                           / (b["stored_bytes"] - a["stored_bytes"]))
            b["peak_over_smallest"] = b["peak_rss_bytes"] / mine[0]["peak_rss_bytes"]
    return rows


def _run_child(path, name, code, mode, args) -> dict:
    env = dict(os.environ, PYTHONPATH=code, MPLBACKEND="Agg")
    budget = "none"
    if mode == "out-of-core":        # below the stored size, so that the split is streamed
        from jvae.runs.streaming import parse_budget

        stored = int(np.prod(np.load(path, mmap_mode="r").shape))
        budget = str(min(parse_budget(args.budget) or stored, stored // 2))
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", str(path),
           "--epochs", str(args.epochs), "--budget", budget]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(path.parent))
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {mode} on {path.name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["streamed"] != (mode == "out-of-core") and name == "after":
        raise RuntimeError(f"{mode} run on {path.name} streamed={result['streamed']}")
    return result


def _skip(reason: str) -> str:
    print(f"skip {reason}", flush=True)
    return reason


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _child(path: pathlib.Path, epochs: int, budget: str) -> int:
    """One run in this process; prints one JSON line: peak RSS and seconds per step."""
    import runpy

    from jvae import train_and_evaluate

    c = runpy.run_path(str(CONFIG))["get_config"]()
    c.dataset.name = f"npy:{path}"
    c.dataset.train_split, c.dataset.eval_split = "train", "validation"
    c.dataset.validation_size = min(EVAL_SIZE, _count(path) // 10)
    if "memory_budget" in c.dataset:            # (a baseline before out-of-core has none)
        c.dataset.memory_budget = budget
    c.num_epochs = epochs
    c.figures = False
    c.eval.ll_samples = 0
    c.checkpoint_every = epochs
    work = path.parent / f"work_{os.getpid()}"
    notes: list[str] = []
    train_and_evaluate(c, work, progress=False, log=notes.append)
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    steps = records[0]["step"]                                 # steps of one epoch
    per_step = [r["train/seconds"] / steps for r in records]
    peak = _peak_rss()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"peak_rss_bytes": peak, "seconds_per_step": statistics.median(per_step),
                      "steps_per_epoch": steps, "epochs": len(records),
                      "streamed": any("streaming" in line for line in notes)}))
    return 0


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` of ``/proc/self/status``,
    the high-water mark of this program's own memory since it started. (``getrusage``'s
    ``ru_maxrss`` is not used: Linux carries it across ``fork`` and ``exec``, so a child
    reports at least the parent's peak, e.g. the benchmark's own after writing a file.)
    Falls back to ``ru_maxrss`` where ``/proc`` is missing."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def _count(path: pathlib.Path) -> int:
    return len(np.load(path, mmap_mode="r"))


def _write_images(path: pathlib.Path, n: int, shape=(SIDE, SIDE, 1), chunk_bytes=1 << 27) -> None:
    """``[n, H, W]`` (one channel) or ``[n, H, W, C]`` uint8 uniform noise, written in
    chunks (bounded memory)."""
    rng = np.random.default_rng(0)
    dims = tuple(shape[:2]) if shape[2] == 1 else tuple(shape)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *dims))
    step = max(1, chunk_bytes // int(np.prod(dims)))
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = rng.integers(0, 256, (stop - start, *dims), dtype=np.uint8)
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
    lines = [f"{'code':>6} {'path':>11} {'images':>9} {'image':>8} {'stored MB':>9} "
             f"{'peak MB':>8} {'peak/stored':>11} {'growth':>7} {'x smallest':>10} {'ms/step':>8}"]
    for r in rows:
        growth, ratio = r.get("growth_per_stored_byte"), r.get("peak_over_smallest")
        lines.append(f"{r['code']:>6} {r['mode']:>11} {r['images']:>9} {_shape(r['shape']):>8} "
                     f"{r['stored_bytes'] / 1e6:>9.1f} {r['peak_rss_bytes'] / 1e6:>8.0f} "
                     f"{r['peak_over_stored']:>11.2f} "
                     f"{'' if growth is None else f'{growth:.2f}':>7} "
                     f"{'' if ratio is None else f'{ratio:.2f}':>10} "
                     f"{r['seconds_per_step'] * 1e3:>8.2f}")
    lines.append("growth: extra peak bytes per extra stored byte from the size above (in-memory "
                 "target <= 1.5); x smallest: peak over the smallest size's (out-of-core "
                 "target <= 1.5); medians over rounds")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
