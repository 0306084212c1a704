"""Where every published number comes from, and which ones the code has moved since.

Every number on a results page and in the README's results table is read from a data file in
``docs/data/`` written by the command that measured it. :data:`PUBLISHED` names, per data
file, its producing module, the command that refreshes it and the pages that show its
numbers. ``docs/data/provenance.json`` records, per data file, the commit and date it was
written at, a SHA-256 of the file itself and one of every source file its producer depends
on: the producer's static import closure inside ``jvae`` and ``experiments`` (re-exports
resolved to the module that defines each imported name, so ``from jvae import
train_and_evaluate`` depends on ``jvae/runs/...`` and what that imports, not on all of
``jvae``).

    python -m experiments.provenance --check          # list stale numbers (CI runs this)
    python -m experiments.provenance --check --strict # ... and exit 1 if any
    python -m experiments.provenance --record docs/data/flows.json   # after writing it
    python -m experiments.provenance --backfill       # files without a record: from git

A data file is stale when a source file it depends on changed since its record, or when the
file was rewritten without a record (its own hash differs). ``--backfill`` records files that
have none from git: the source files as they were at the commit that last changed the data
file (marked ``"how": "backfilled from git"``).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import functools
import hashlib
import json
import pathlib
import subprocess
import sys
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data"
RECORD = DATA / "provenance.json"
PACKAGES = ("jvae", "experiments")


class Published(NamedTuple):
    """A data file's producers (module names: the script, or the CLI and the config it
    runs), its refresh command and the pages that show its numbers (repository-relative)."""

    producer: tuple[str, ...]
    command: str
    pages: tuple[str, ...]


_README = "README.md"
PUBLISHED: dict[str, Published] = {
    "pytorch_example_seeds.json": Published(
        ("jvae.cli.train", "experiments.configs.pytorch_example", "experiments.figures"),
        "python -m jvae.train --config experiments/configs/pytorch_example.py --workdir "
        "runs/seeds --config.num_seeds=8 (then python -m experiments.figures seeds)",
        (_README, "docs/results/pytorch_example.md", "docs/notebooks/lab5.md")),
    "readme_run.json": Published(
        ("experiments.readme_run", "jvae.cli.train", "jvae.cli.evaluate",
         "experiments.configs.pytorch_example"), "python -m experiments.readme_run",
        (_README, "docs/getting-started.md")),
    "pyro_vae.json": Published(
        ("experiments.pyro_reference", "experiments.bench_pyro", "jvae.cli.train",
         "experiments.configs.pyro_vae"),
        "python -m experiments.bench_pyro --epochs 10 --seeds 3 --pyro-threads 1; python -m "
        "jvae.train --config experiments/configs/pyro_vae.py --workdir runs/figures/pyro_vae",
        (_README, "docs/results/pyro_vae.md", "docs/notebooks/lab5.md")),
    "rate_distortion.json": Published(
        "experiments.rate_distortion", "python -m experiments.rate_distortion --workdir runs/rd",
        (_README, "docs/results/rate-distortion.md")),
    "iwae_compare.json": Published(
        "experiments.iwae_compare",
        "python -m experiments.iwae_compare --stages 3 --eval-limit 0",
        (_README, "docs/results/iwae.md")),
    "dpm2.json": Published(
        "experiments.dpm2", "python -m experiments.dpm2 --workdir runs/dpm2 --docs",
        (_README, "docs/results/dpm2.md")),
    "dpm2_dev_eval.json": Published(
        "experiments.bench_dev_eval", "python -m experiments.bench_dev_eval",
        ("docs/benchmarks.md",)),
    "dpm2_previous.json": Published(
        "experiments.dpm2", "(the DPM2 runs before issue 29's settings; kept as measured)",
        ("docs/results/dpm2.md",)),
    "estimator_variance.json": Published(
        "experiments.estimator_variance", "python -m experiments.estimator_variance",
        (_README, "docs/results/estimator-variance.md")),
    "estimator_report.json": Published(
        "experiments.estimator_report", "python -m experiments.estimator_report",
        ("docs/results/estimator-variance.md",)),
    "lecture.json": Published(
        "experiments.lecture", "python -m experiments.lecture --workdir runs/lecture --docs",
        (_README, "docs/results/lecture.md")),
    "linear_vae_ppca.json": Published(
        "experiments.linear_vae_ppca", "python -m experiments.linear_vae_ppca",
        (_README, "docs/results/linear-vae.md")),
    "snr_scaling.json": Published(
        "experiments.snr_scaling", "python -m experiments.snr_scaling",
        (_README, "docs/results/snr_scaling.md")),
    "flows.json": Published(
        "experiments.flows",
        "python -m experiments.flows --workdir runs/flows --epochs 5 --seeds 3 --test-size 500 "
        "--ll-samples 5000 --docs", (_README, "docs/results/flows.md")),
    "vampprior.json": Published(
        "experiments.vampprior",
        "python -m experiments.vampprior --workdir runs/vampprior --epochs 30 "
        "--warmup-epochs 10 --train-size 10000 --test-size 500 --ll-samples 1000",
        ("docs/results/vampprior.md",)),
    "likelihood_table.json": Published(
        "experiments.likelihood_table",
        "python -m experiments.likelihood_table (the budget flags: the JSON's command) --docs",
        ("docs/results/likelihood_table.md", "docs/results/index.md")),
    "numerics.json": Published(
        "experiments.numerics", "python -m experiments.numerics --docs",
        ("docs/results/numerics.md",)),
    "benchmarks.json": Published(
        "experiments.bench_epoch", "the benchmark commands on docs/benchmarks.md",
        ("docs/benchmarks.md",)),
    **{f"bench_{name}.json": Published(
        f"experiments.bench_{name}", f"python -m experiments.bench_{name} --json "
        f"docs/data/bench_{name}.json (the flags on docs/benchmarks.md)",
        ("docs/benchmarks.md",)) for name in ("epoch", "seeds", "conv")},
    "precision.json": Published(
        "experiments.precision", "python -m experiments.precision --json "
        "docs/data/precision.json", ("docs/guides/precision.md",)),
    "bench_memory.json": Published(
        "experiments.bench_memory", "the bench_memory commands in the file's invocations "
        "(python -m experiments.bench_memory --sizes ... --json docs/data/bench_memory.json "
        "--append)", ("docs/guides/data.md",)),
    "bench_device.json": Published(
        "experiments.bench_device", "python -m experiments.bench_device --quick --merge on a "
        "CPU, python -m experiments.bench_device --merge on a GPU", ("docs/benchmarks.md",)),
    "precision_seeds.json": Published(
        "experiments.precision_seeds", "python -m experiments.precision_seeds --merge --json "
        "docs/data/precision_seeds.json, once with each jax version",
        ("docs/guides/precision.md",)),
    "bench_is_eval.json": Published(
        "experiments.bench_is_eval", "python -m experiments.bench_is_eval --images 10000 "
        "--samples 1000 --rounds 3 --json docs/data/bench_is_eval.json",
        ("docs/benchmarks.md",)),
    "xla_workaround.json": Published(
        "experiments.bench_xla_workaround", "python -m experiments.bench_xla_workaround",
        ("docs/results/numerics.md",)),
    "reliability.json": Published(
        "tests.tools.probe_faults",
        "python -m tests.tools.probe_faults --record docs/data/reliability.json; python -m "
        "tests.tools.kill_resume --record docs/data/reliability.json", ("docs/benchmarks.md",)),
    **{f"notebook_{name}.json": Published(
        f"experiments.notebooks.{name}", f"python -m experiments.notebooks.{name} --docs",
        (f"docs/notebooks/{name}.md",) + ((_README, "docs/results/gaussian2d.md")
                                          if name == "homework2" else ()))
        for name in ("dpm2", "lab5", "homework2", "lecture")},
}


def _module_index() -> dict[str, pathlib.Path]:
    """Module name -> file, for every module of :data:`PACKAGES` and ``tests.tools``."""
    index = {}
    for base in [*PACKAGES, "tests/tools"]:
        for path in (ROOT / base).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            index[".".join(parts)] = path
    return index


@functools.lru_cache(maxsize=None)
def _parse(path: pathlib.Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_text())


def _tree(path: pathlib.Path) -> ast.Module:
    """``path``'s syntax tree, parsed once per version of the file."""
    return _parse(path, path.stat().st_mtime_ns)


def _is_package(index, name: str) -> bool:
    return index.get(name, pathlib.Path()).name == "__init__.py"


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _defining_module(index, package: str, name: str, seen=None) -> str | None:
    """The module of ``index`` where ``package``'s attribute ``name`` is defined: a submodule
    of that name, a module it re-exports the name from, or ``package`` itself."""
    seen = set() if seen is None else seen
    if f"{package}.{name}" in index:
        return f"{package}.{name}"
    if package not in index or package in seen:
        return None
    seen.add(package)
    for node in _tree(index[package]).body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(package, _is_package(index, package), node)
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    found = _defining_module(index, source, alias.name, seen)
                    return found or (source if source in index else None)
    return package


def imported_modules(index, module: str) -> set[str]:
    """The modules of ``index`` that ``module`` imports (anywhere in its text), re-exports
    resolved to their defining modules."""
    out = set()
    for node in ast.walk(_tree(index[module])):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                for i in range(len(parts), 0, -1):
                    if ".".join(parts[:i]) in index:
                        out.add(".".join(parts[:i]))
                        break
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, _is_package(index, module), node)
            for alias in node.names:
                found = (_defining_module(index, source, alias.name) if alias.name != "*"
                         else source)
                if found in index:
                    out.add(found)
                elif source in index and not _is_package(index, source):
                    out.add(source)
    return out


def dependencies(producer: str | tuple[str, ...], index=None) -> list[str]:
    """Repository-relative paths of ``producer`` (a module name, or several) and every module
    it imports, transitively."""
    index = _module_index() if index is None else index
    producers = (producer,) if isinstance(producer, str) else tuple(producer)
    for name in producers:
        if name not in index:
            raise KeyError(f"no module {name!r} under {', '.join(PACKAGES)} or tests/tools")
    todo, seen = list(producers), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported_modules(index, name) - seen)
    return sorted(str(index[n].relative_to(ROOT)) for n in seen)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def _entry(name: str) -> Published:
    if name not in PUBLISHED:
        import difflib
        close = difflib.get_close_matches(name, PUBLISHED, n=1)
        raise KeyError(f"{name} is not a published data file"
                       + (f"; did you mean {close[0]!r}?" if close else "")
                       + " (add it to experiments/provenance.py's PUBLISHED)")
    return PUBLISHED[name]


def read_records() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def _write_records(records: dict) -> None:
    RECORD.write_text(json.dumps(dict(sorted(records.items())), indent=1) + "\n")


def record(data_file: str | pathlib.Path, *, command: str | None = None) -> dict:
    """Record ``data_file`` (a path or a name in ``docs/data``) as written now by the current
    code: its hash, the commit, the date and the hash of every source file it depends on.
    Producers call this right after writing their data file."""
    path = DATA / pathlib.Path(data_file).name
    entry = _entry(path.name)
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--", *dependencies(entry.producer)))
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    rec = {"producer": entry.producer, "command": command or entry.command,
           "commit": commit, "uncommitted_changes": dirty,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "how": "recorded", "data_sha256": _sha(path.read_bytes()),
           "code": {p: _sha((ROOT / p).read_bytes()) for p in dependencies(entry.producer)}}
    records = read_records()
    records[path.name] = rec
    _write_records(records)
    return rec


def record_if_published(path: str | pathlib.Path, *, command: str | None = None) -> None:
    """:func:`record` ``path`` when it is a published data file (in ``docs/data``, named in
    :data:`PUBLISHED`); anything else (a ``--json`` elsewhere, a quick run's file) is left
    alone. What producers call after writing their data."""
    path = pathlib.Path(path).resolve()
    if path.parent == DATA.resolve() and path.name in PUBLISHED:
        record(path, command=command)
        print(f"recorded the provenance of docs/data/{path.name} in {RECORD.relative_to(ROOT)}")


def backfill() -> list[str]:
    """Record, from git, every published data file that has no record: the commit that last
    changed it, and its producer's source files as they were at that commit."""
    records, done = read_records(), []
    for name, entry in PUBLISHED.items():
        path = DATA / name
        if name in records or not path.exists():
            continue
        if "transcribed" in str(json.loads(path.read_text()).get("source", "")):
            continue        # copied from a page, not written by its command: stays unrecorded
        commit = _git("log", "-1", "--format=%H", "--", str(path.relative_to(ROOT)))
        if not commit:
            continue
        code = {}
        for p in dependencies(entry.producer):
            try:
                code[p] = _sha(subprocess.run(["git", "show", f"{commit}:{p}"], cwd=ROOT,
                                              capture_output=True, check=True).stdout)
            except subprocess.CalledProcessError:
                code[p] = None                      # the file did not exist then
        records[name] = {"producer": entry.producer, "command": entry.command,
                         "commit": commit,
                         "date": _git("log", "-1", "--format=%cI", commit),
                         "how": "backfilled from git", "data_sha256": _sha(path.read_bytes()),
                         "code": code}
        done.append(name)
    _write_records(records)
    return done


class Stale(NamedTuple):
    """A published data file whose numbers the current code may no longer give."""

    data_file: str
    reasons: tuple[str, ...]
    pages: tuple[str, ...]
    command: str


def stale(overrides: dict[str, str] | None = None) -> list[Stale]:
    """Every published data file whose record no longer matches: a source file it depends on
    changed (or appeared, or went), the file itself was rewritten without a record, or it has
    no record. ``overrides`` (path -> text) stands in for files' current text (for tests)."""
    overrides = overrides or {}
    records, index, out = read_records(), _module_index(), []

    def current(p: str) -> str | None:
        if p in overrides:
            return _sha(overrides[p].encode())
        return _sha((ROOT / p).read_bytes()) if (ROOT / p).exists() else None

    for name, entry in PUBLISHED.items():
        path = DATA / name
        if not path.exists():
            continue
        rec = records.get(name)
        if rec is None:
            reasons = ("no provenance record (python -m experiments.provenance --backfill)",)
        else:
            now = set(dependencies(entry.producer, index))
            reasons = tuple(
                [f"{p} changed" for p in sorted(now & set(rec["code"]))
                 if current(p) != rec["code"][p]]
                + [f"{p} is a new dependency" for p in sorted(now - set(rec["code"]))]
                + [f"{p} is no longer a dependency" for p in sorted(set(rec["code"]) - now)]
                + (["the file was rewritten after its record (python -m "
                    f"experiments.provenance --record docs/data/{name})"]
                   if _sha(path.read_bytes()) != rec["data_sha256"] else []))
        if reasons:
            out.append(Stale(name, reasons, entry.pages, entry.command))
    return out


def report(items: list[Stale], limit: int = 4) -> str:
    """One paragraph per stale data file: the pages it feeds, why, and the command."""
    if not items:
        return "every published number is up to date with the code that produced it"
    lines = [f"{len(items)} published data files may no longer match the code:"]
    for s in items:
        shown = list(s.reasons[:limit]) + ([f"... and {len(s.reasons) - limit} more"]
                                           if len(s.reasons) > limit else [])
        lines.append(f"- docs/data/{s.data_file} (shown on {', '.join(s.pages)}): "
                     f"{'; '.join(shown)}. Refresh: {s.command}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list stale published numbers")
    parser.add_argument("--strict", action="store_true", help="with --check: exit 1 if any")
    parser.add_argument("--record", nargs="+", default=[], metavar="DATA_FILE",
                        help="record data files as written now by the current code")
    parser.add_argument("--backfill", action="store_true",
                        help="record, from git, data files that have no record")
    args = parser.parse_args(argv)
    if not (args.check or args.record or args.backfill):
        parser.error("give --check, --record FILE... or --backfill")
    for name in args.record:
        try:
            record(name)
        except KeyError as e:
            parser.error(str(e.args[0]))
        print(f"recorded {name}")
    if args.backfill:
        print("backfilled: " + (", ".join(backfill()) or "nothing (every file has a record)"))
    if args.check:
        items = stale()
        print(report(items))
        return 1 if (args.strict and items) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
