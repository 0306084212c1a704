"""Stop a training run with SIGKILL, SIGTERM or SIGINT at chosen moments, resume it, and
compare its state and every record with an uninterrupted run's.

Usage::

    python -m tests.tools.kill_resume [--rounds 1] [--epochs 6] [--seed 0]
        [--signals KILL,TERM,INT] [--record docs/data/reliability.json]

The run is the small 2-D Gaussian one (``experiments/configs/gaussian2d.py``, 16 hidden
units, batch 32, a checkpoint every epoch) with a 500-point dev split assessed every 50
steps, so all three logs (``metrics.jsonl``, ``steps.jsonl``, ``dev.jsonl``) are written.
It trains once without interruption. Then, for every round, signal and moment, it starts
the same run and sends the signal

- ``before the first checkpoint``: once the step-0 dev assessment is written, before
  ``checkpoints/1`` exists;
- ``mid-epoch``: half an epoch (timed on the uninterrupted run) after ``checkpoints/2``
  appeared;
- ``during a checkpoint write``: while the hidden ``.tmp-3-*`` directory of epoch 3's
  checkpoint exists (if that moment is missed, right after the checkpoint appears; the line
  says which).

It checks how the run ended (SIGKILL: killed; SIGTERM and SIGINT: status 143 or 130 with the
one-line resume hint), runs ``--resume`` to the end, and compares every array of the final
train state (parameters, optimiser state, step, key) bit for bit and every record of the
three logs (without their ``*seconds*`` timings) with the uninterrupted run's. Prints one line
per stop and exits 1 unless every resumed run is identical. ``--record`` stores the summary
under ``"kill_resume"`` in a JSON file (other keys kept).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
MOMENTS = ("before the first checkpoint", "mid-epoch", "during a checkpoint write")
LOGS = ("metrics.jsonl", "steps.jsonl", "dev.jsonl")


def _command(workdir: pathlib.Path, epochs: int, seed: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "jvae.train",
            f"--config={ROOT / 'experiments/configs/gaussian2d.py'}", f"--workdir={workdir}",
            "--noprogress", f"--config.num_epochs={epochs}", f"--config.seed={seed}",
            "--config.checkpoint_every=1", "--config.batch_size=32",
            "--config.model.encoder_hidden=(16,)", "--config.model.decoder_hidden=(16,)",
            "--config.figures=False", "--config.dataset.dev_size=500",
            "--config.eval.every_steps=50"] + (["--resume"] if resume else [])


def _state_arrays(workdir: pathlib.Path) -> list[np.ndarray]:
    import jax

    from jvae import restore_run

    state = restore_run(workdir, log=lambda line: None)[3]
    state = state._replace(key=jax.random.key_data(state.key))
    return [np.asarray(a) for a in jax.tree.leaves(state)]


def _records(workdir: pathlib.Path) -> dict[str, list[dict]]:
    from jvae.runs.steplog import read_jsonl

    return {name: [{k: v for k, v in r.items() if "seconds" not in k}
                   for r in read_jsonl(workdir / name)] for name in LOGS}


def _wait_for(moment: str, workdir: pathlib.Path, proc, half_epoch: float) -> str:
    """Block until ``moment`` (see the module docstring); returns what was caught."""
    ckdir = workdir / "checkpoints"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if moment == MOMENTS[0]:
            if (workdir / "dev.jsonl").is_file() and (workdir / "dev.jsonl").read_text():
                return ("after the step-0 dev assessment, no checkpoint yet"
                        if not (ckdir / "1").exists() else "after checkpoint 1 (missed)")
        elif moment == MOMENTS[1]:
            if (ckdir / "2").is_dir():
                time.sleep(half_epoch)
                return f"{half_epoch:.2f} s after checkpoint 2 appeared"
        else:
            if ckdir.is_dir() and list(ckdir.glob(".tmp-3-*")):
                return "while .tmp-3-* existed"
            if (ckdir / "3").is_dir():
                return "just after checkpoint 3 appeared (the write was missed)"
        time.sleep(0.002)
    return "the run ended first"


def _stop_once(workdir: pathlib.Path, args, signum: int, moment: str, half_epoch: float,
               env: dict, reference) -> dict:
    proc = subprocess.Popen(_command(workdir, args.epochs, args.seed, False), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    caught = _wait_for(moment, workdir, proc, half_epoch)
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    want = -signal.SIGKILL if signum == signal.SIGKILL else 128 + signum
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    hint = (signum == signal.SIGKILL or (len(lines) == 1 and lines[0].startswith(
        f"error: stopped by {signal.Signals(signum).name}; continue with")))
    ckpts = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*")
                   if p.name.isdigit()) if (workdir / "checkpoints").is_dir() else []
    resumed = subprocess.run(_command(workdir, args.epochs, args.seed, True), env=env,
                             capture_output=True, text=True)
    row = {"signal": signal.Signals(signum).name, "moment": moment, "caught": caught,
           "exit": proc.returncode, "exit_expected": want, "hint": bool(hint),
           "checkpoints_at_stop": ckpts, "resume_exit": resumed.returncode}
    if resumed.returncode == 0:
        row["state_identical"] = all(np.array_equal(a, b) for a, b in
                                     zip(_state_arrays(workdir), reference[0], strict=True))
        got = _records(workdir)
        row["records_identical"] = {name: got[name] == reference[1][name] for name in LOGS}
        row["record_counts"] = {name: len(got[name]) for name in LOGS}
    else:
        row["resume_error"] = resumed.stderr.strip().splitlines()[-1:]
    row["identical"] = bool(row.get("state_identical") and all(
        row.get("records_identical", {}).values()) and proc.returncode == want and hint)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signals", default="KILL,TERM,INT")
    parser.add_argument("--record", default="", help="write the summary into this JSON file")
    args = parser.parse_args(argv)
    signums = [getattr(signal, f"SIG{s.strip().upper()}") for s in args.signals.split(",")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="jvae-kill-"))

    t0 = time.perf_counter()
    subprocess.run(_command(tmp / "reference", args.epochs, args.seed, False), env=env,
                   check=True, capture_output=True)
    total = time.perf_counter() - t0
    reference = (_state_arrays(tmp / "reference"), _records(tmp / "reference"))
    from jvae import read_metrics

    epoch_seconds = float(np.median([r["train/seconds"] + r.get("dev/seconds_in_epoch", 0.0)
                                     for r in read_metrics(tmp / "reference")]))
    counts = {name: len(rows) for name, rows in reference[1].items()}
    print(f"uninterrupted run: {total:.1f} s, {args.epochs} epochs, {epoch_seconds:.2f} s per "
          f"epoch; records {counts}", flush=True)

    rows = []
    for r in range(args.rounds):
        for signum in signums:
            for moment in MOMENTS:
                workdir = tmp / f"r{r}-{signal.Signals(signum).name}-{MOMENTS.index(moment)}"
                row = _stop_once(workdir, args, signum, moment, epoch_seconds / 2, env,
                                 reference)
                rows.append(row)
                print(f"{row['signal']:7s} {moment:27s} ({row['caught']}): exit {row['exit']}"
                      f" (expected {row['exit_expected']}, hint {'yes' if row['hint'] else 'NO'})"
                      f", checkpoints {row['checkpoints_at_stop'] or 'none'}; resumed: state "
                      f"{'IDENTICAL' if row.get('state_identical') else 'DIFFERENT'}, records "
                      f"{row.get('records_identical', row.get('resume_error'))}", flush=True)
    identical = sum(r["identical"] for r in rows)
    print(f"{identical}/{len(rows)} stopped and resumed runs identical to the uninterrupted run "
          "(state bit for bit, every record of the three logs)")
    if args.record:
        _write_record(pathlib.Path(args.record), {
            "command": "python -m tests.tools.kill_resume " + " ".join(argv or sys.argv[1:]),
            "measured": datetime.date.today().isoformat(), "stops": len(rows),
            "identical": identical, "reference_records": counts, "rows": rows})
    return 0 if identical == len(rows) else 1


def _write_record(path: pathlib.Path, summary: dict) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["kill_resume"] = summary
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
