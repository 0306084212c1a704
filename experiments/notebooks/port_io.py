"""What the notebook ports share: their mode (quick or full), where they write, and how a
full run's numbers and figures reach the docs.

A port runs as ``python -m experiments.notebooks.NAME`` (full), with ``--quick`` or
``JVAE_NOTEBOOK_QUICK=1`` (small data, few steps: the test suite runs it end to end), with
``--docs`` (write ``docs/data/notebook_NAME.json`` and copy its figures into ``docs/figures``
with manifest entries) and ``--workdir DIR`` (default ``runs/notebooks/NAME``, or
``$JVAE_NOTEBOOK_WORKDIR``). Opened in Jupyter, unknown kernel arguments are ignored.

Training runs live in ``WORKDIR/NAME`` and are reused when the port runs again with the same
workdir and config (a finished run is not trained again; a run with another config is
replaced): use a new workdir to time everything afresh. A port with parts (``--parts a,b``,
Lab 5's ``example``, ``question``, ``pyro``) runs only those, merging its numbers into the
workdir's ``results.json``; ``commands`` there lists every command run into the workdir with
its seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclass
class Port:
    """One run of a port: its name, mode, directories and the results it collects.

    Attributes:
      name: the port's name (``lab5``, ``homework2``, ``lecture``).
      quick: the quick mode (small data, few steps).
      docs: write the results and figures into ``docs/``.
      workdir: where runs, figures and ``results.json`` go.
      results: what the port records (numbers for the docs page), JSON-ready.
      figures: the figures drawn so far (paths under ``workdir/figures``).
    """

    name: str
    quick: bool
    docs: bool
    workdir: pathlib.Path
    parts: tuple = ()
    results: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def figdir(self) -> pathlib.Path:
        path = self.workdir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def figure(self, stem: str) -> pathlib.Path:
        """The path of the port's figure ``nb_NAME_STEM.png`` (recorded for the docs)."""
        path = self.figdir / f"nb_{self.name}_{stem}.png"
        if path not in self.figures:
            self.figures.append(path)
        return path

    def wants(self, part: str) -> bool:
        """Whether this run includes ``part`` (every part when none was named)."""
        return not self.parts or part in self.parts

    def run_dir(self, name: str, config=None) -> pathlib.Path:
        """The training-run directory ``workdir/NAME``: kept when it holds a run of
        ``config`` (which ``train`` then resumes or reuses), emptied otherwise."""
        import shutil

        from jvae.runs import config_from_json, normalised

        path = self.workdir / name
        stored = path / "config.json"
        same = (config is not None and stored.exists()
                and normalised(config_from_json(stored)) == normalised(config))
        if path.exists() and not same:
            shutil.rmtree(path)
        return path

    def train(self, config, name: str) -> tuple[pathlib.Path, dict]:
        """Train ``config`` into ``workdir/NAME`` (reusing a finished run of the same config);
        returns the directory and the last epoch's record."""
        import jvae

        path = self.run_dir(name, config)
        return path, jvae.train_and_evaluate(config, path, resume=True, progress=False)

    def _earlier_results(self) -> list[dict]:
        """The numbers this run's parts are merged into: the published data file (with
        ``--docs``: parts run in another workdir stay published) and this workdir's
        ``results.json``, later first-class over earlier; a quick run never merges into a
        full one."""
        earlier = []
        published = ROOT / "docs" / "data" / f"notebook_{self.name}.json"
        for path in ([published] if self.docs else []) + [self.workdir / "results.json"]:
            if path.exists():
                data = json.loads(path.read_text())
                if bool(data.get("quick")) == self.quick:
                    earlier.append(data)
        return earlier

    def finish(self, code: tuple[str, ...], source: dict) -> dict:
        """Record the wall time, write ``workdir/results.json`` and, with ``docs``, the data
        file and the figures (``code``: files whose text the figures depend on; ``source``:
        the configs and settings)."""
        seconds = round(time.perf_counter() - self.started, 1)
        if self.parts:                       # merge into the other parts' numbers
            self.results = merge_parts(self._earlier_results(), self.results)
        command = (f"python -m experiments.notebooks.{self.name}"
                   + (" --quick" if self.quick else "") + (" --docs" if self.docs else "")
                   + (f" --parts {','.join(self.parts)}" if self.parts else ""))
        history = self.results.setdefault("commands", [])   # every command into this workdir
        history.append({"command": command, "seconds": seconds,
                        "finished": datetime.datetime.now().isoformat(timespec="seconds")})
        self.results.update({
            "measured": datetime.date.today().isoformat(), "quick": self.quick,
            "wall_seconds": seconds,
            "command": command,
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                     "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        })
        text = json.dumps(self.results, indent=2, default=_plain) + "\n"
        (self.workdir / "results.json").write_text(text)
        if self.docs:
            from experiments.figures import record_script_figures

            (ROOT / "docs" / "data" / f"notebook_{self.name}.json").write_text(text)
            if not self.quick:
                from experiments.provenance import record_if_published
                record_if_published(ROOT / "docs" / "data" / f"notebook_{self.name}.json",
                                    command=command)
            for line in record_script_figures(self.figures, command=self.results["command"],
                                              code=code, source=source,
                                              generated=self.results["measured"]):
                print(line)
        print(f"{self.name}: {self.results['wall_seconds']} s; results in "
              f"{self.workdir / 'results.json'}")
        return self.results


def start(name: str, argv=None) -> Port:
    """Parse the port's options (unknown ones, e.g. a Jupyter kernel's, are ignored)."""
    parser = argparse.ArgumentParser(prog=f"python -m experiments.notebooks.{name}")
    parser.add_argument("--quick", action="store_true",
                        help="small data, few steps (also JVAE_NOTEBOOK_QUICK=1)")
    parser.add_argument("--docs", action="store_true",
                        help=f"write docs/data/notebook_{name}.json and the figures")
    parser.add_argument("--workdir", default=os.environ.get("JVAE_NOTEBOOK_WORKDIR", ""))
    parser.add_argument("--parts", default="", help="comma-separated parts to run (default all)")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    quick = args.quick or os.environ.get("JVAE_NOTEBOOK_QUICK", "") not in ("", "0")
    if quick and args.docs:
        parser.error("--docs publishes a full run's numbers; drop --quick")
    workdir = pathlib.Path(args.workdir or ROOT / "runs" / "notebooks" / name)
    workdir.mkdir(parents=True, exist_ok=True)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    return Port(name, quick, args.docs, workdir, parts)


def _plain(value):
    """JSON for numpy and JAX scalars and arrays."""
    import numpy as np

    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else arr.tolist()


def merge_parts(earlier: list[dict], results: dict) -> dict:
    """``results`` (this command's parts) over the ``earlier`` result dicts, oldest first:
    every part a command did not run keeps its earlier numbers, and the command histories
    (``commands``) are concatenated, so the data file says which command produced what."""
    merged, history = {}, []
    for data in earlier:
        history += [c for c in data.get("commands", []) if c not in history]
        merged.update(data)
    merged.update(results)
    merged["commands"] = history + [c for c in results.get("commands", []) if c not in history]
    return merged
