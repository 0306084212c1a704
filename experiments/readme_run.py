"""Run the README's main commands as a new user would, and record what they print.

Reads the ``bash`` block under the README's "Train the reference model" heading, runs each
``python -m jvae...`` line of it in order (from the repository root, with ``runs/mnist``
replaced by a fresh temporary work directory so an existing run is never reused), and
writes ``docs/data/readme_run.json``: per command its wall time and the numbers it printed
(the training summary's ``test ELBO``, the evaluation's ``log_likelihood`` and ``elbo``), the
run's own training seconds, the machine and its load; then runs the README's library snippet
(the ``python`` block under "Use as a library") as a script in a fresh directory and records
what it prints. The README's and getting-started's
sentences about the main command are generated from that file
(:mod:`experiments.readme_results`, the ``readme-run`` docs table), so they state what the
current code prints.

    JVAE_DATA_DIR=../shared/data python -m experiments.readme_run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "data" / "readme_run.json"
HEADING = "## Train the reference model"
LIBRARY = "## Use as a library"
WORKDIR = "runs/mnist"


def readme_commands(text: str) -> list[str]:
    """The ``python -m jvae...`` lines of the first ``bash`` block under :data:`HEADING`."""
    if HEADING not in text:
        raise ValueError(f"README.md has no {HEADING!r} section")
    section = text[text.index(HEADING):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    if block is None:
        raise ValueError(f"no bash block under {HEADING!r} in README.md")
    lines = [ln.split("#")[0].strip() for ln in block.group(1).splitlines()]
    commands = [ln for ln in lines if ln.startswith("python -m jvae.")]
    if not commands:
        raise ValueError(f"no 'python -m jvae...' command under {HEADING!r} in README.md")
    return commands


def readme_snippet(text: str) -> str:
    """The first ``python`` block under :data:`LIBRARY`."""
    if LIBRARY not in text:
        raise ValueError(f"README.md has no {LIBRARY!r} section")
    block = re.search(r"```python\n(.*?)```", text[text.index(LIBRARY):], re.S)
    if block is None:
        raise ValueError(f"no python block under {LIBRARY!r} in README.md")
    return block.group(1)


def run_snippet(code: str) -> dict:
    """Run the library snippet as a script in a fresh directory (it writes ``samples.png``
    and ``checkpoints/`` there); its wall seconds and the numbers it printed."""
    import ast

    with tempfile.TemporaryDirectory() as tmp:
        script = pathlib.Path(tmp) / "snippet.py"
        script.write_text(code)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the README's library snippet failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    evaluation = next(ast.literal_eval(line) for line in proc.stdout.splitlines()
                      if line.startswith("{"))
    return {"wall_seconds": round(seconds, 1),
            "train_elbo_printed": summary_number(proc.stdout, "train ELBO"),
            "validation_printed": evaluation}


def printed_json(stdout: str) -> dict:
    """The JSON object a command printed (``jvae.evaluate`` prints its result as one)."""
    start = stdout.find("{\n")
    end = stdout.rfind("\n}")
    if start < 0 or end < 0:
        raise ValueError("the command printed no JSON object")
    return json.loads(stdout[start:end + 2])


def summary_number(stdout: str, label: str) -> float:
    """The number after ``label`` in the training command's closing summary."""
    match = re.search(re.escape(label) + r" (-?\d+(?:\.\d+)?)", stdout)
    if match is None:
        raise ValueError(f"the training command printed no {label!r}")
    return float(match.group(1))


def run(commands: list[str], workdir: pathlib.Path) -> list[dict]:
    """Run each command (``runs/mnist`` -> ``workdir``); its wall seconds and output."""
    out = []
    for command in commands:
        argv = [sys.executable if w == "python" else w
                for w in shlex.split(command.replace(WORKDIR, str(workdir)))]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"`{command}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        out.append({"command": command, "wall_seconds": round(seconds, 1),
                    "stdout": proc.stdout, "stderr": proc.stderr})
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(OUT))
    args = parser.parse_args(argv)
    if not os.environ.get("JVAE_DATA_DIR"):
        parser.error("set JVAE_DATA_DIR as the README does (export JVAE_DATA_DIR=../shared/data)")
    commands = readme_commands((ROOT / "README.md").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp) / "mnist"
        done = run(commands, workdir)
        metrics = [json.loads(line) for line in
                   (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train, *rest = done
    data = {
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "train": {"command": train["command"], "wall_seconds": train["wall_seconds"],
                  "train_seconds": round(sum(r["train/seconds"] for r in metrics), 1),
                  "epochs": metrics[-1]["epoch"],
                  "final": {k: metrics[-1].get(k) for k in ("eval/elbo", "eval/rate",
                                                             "eval/distortion", "train/loss")},
                  "test_elbo_printed": summary_number(train["stdout"], "test ELBO"),
                  "train_loss_printed": summary_number(train["stdout"], "train loss")},
    }
    if rest:
        result = printed_json(rest[0]["stdout"])
        data["evaluate"] = {"command": rest[0]["command"],
                            "wall_seconds": rest[0]["wall_seconds"],
                            **{k: result.get(k) for k in ("log_likelihood", "elbo", "num_samples",
                                                          "num_examples", "split", "epoch")}}
    data["library_snippet"] = run_snippet(readme_snippet((ROOT / "README.md").read_text()))
    path = pathlib.Path(args.json)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data, indent=1))
    from experiments.provenance import record_if_published
    record_if_published(path)
    return data


if __name__ == "__main__":
    main()
