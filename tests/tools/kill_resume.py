"""``kill -9`` a training run at many moments, resume it, and compare with an uninterrupted run.

Usage::

    python -m tests.tools.kill_resume [--kills 10] [--epochs 12] [--seed 0]

Trains the small 2-D Gaussian run (``experiments/configs/gaussian2d.py``, 16 hidden units,
batch 32, a checkpoint every epoch) once without interruption. Then, for kill ``i`` of
``--kills``, it starts the same run and sends SIGKILL at a moment chosen by watching the
checkpoint directory: kill 1 during start-up (before any checkpoint), the even-numbered kills
while the checkpoint of an epoch is being written (its hidden ``.tmp-*`` directory exists;
if that moment is missed, right after the checkpoint appears), the others in the middle of an
epoch. It then runs ``--resume`` to the end and compares every array of the final train
state (parameters, optimiser state, step, key) with the uninterrupted run's, bit for bit.
Prints one line per kill and exits 1 unless every resumed run is identical.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _command(workdir: pathlib.Path, epochs: int, seed: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "jvae.train",
            f"--config={ROOT / 'experiments/configs/gaussian2d.py'}", f"--workdir={workdir}",
            "--noprogress", f"--config.num_epochs={epochs}", f"--config.seed={seed}",
            "--config.checkpoint_every=1", "--config.batch_size=32",
            "--config.model.encoder_hidden=(16,)", "--config.model.decoder_hidden=(16,)",
            "--config.figures=False"] + (["--resume"] if resume else [])


def _state_arrays(workdir: pathlib.Path) -> list[np.ndarray]:
    import jax

    from jvae import restore_run

    state = restore_run(workdir, log=lambda line: None)[3]
    state = state._replace(key=jax.random.key_data(state.key))
    return [np.asarray(a) for a in jax.tree.leaves(state)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="jvae-kill-"))

    t0 = time.perf_counter()
    subprocess.run(_command(tmp / "reference", args.epochs, args.seed, False), env=env,
                   check=True, capture_output=True)
    total = time.perf_counter() - t0
    reference = _state_arrays(tmp / "reference")
    print(f"uninterrupted run: {total:.1f} s, {args.epochs} epochs")

    identical = 0
    for i in range(args.kills):
        workdir = tmp / f"kill{i}"
        ckdir = workdir / "checkpoints"
        epoch = 1 + (i * (args.epochs - 2)) // max(args.kills - 1, 1)
        proc = subprocess.Popen(_command(workdir, args.epochs, args.seed, False), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_start = time.perf_counter()
        moment = "start-up"
        if i > 0:
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline and proc.poll() is None:
                if i % 2 == 1 and list(ckdir.glob(f".tmp-{epoch}-*")):
                    moment = f"writing the checkpoint of epoch {epoch}"
                    break
                if (ckdir / str(epoch)).is_dir():
                    moment = (f"just after the checkpoint of epoch {epoch} appeared"
                              if i % 2 == 1 else
                              f"0.4 s after the checkpoint of epoch {epoch} appeared")
                    break
                time.sleep(0.002)
            if moment.startswith("0.4 s"):
                time.sleep(0.4)
        else:
            time.sleep(2.0)
        delay = time.perf_counter() - t_start
        proc.kill()
        proc.wait()
        ckpts = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*")
                       if p.name.isdigit()) if (workdir / "checkpoints").is_dir() else []
        leftovers = [p.name for p in (workdir / "checkpoints").glob(".*")] if ckpts or (
            workdir / "checkpoints").is_dir() else []
        resumed = subprocess.run(_command(workdir, args.epochs, args.seed, True), env=env,
                                 capture_output=True, text=True)
        if resumed.returncode != 0:
            print(f"kill {i + 1} at {delay:.1f} s: resume FAILED: "
                  f"{resumed.stderr.strip().splitlines()[-1:]}")
            continue
        same = all(np.array_equal(a, b) for a, b in zip(_state_arrays(workdir), reference))
        identical += same
        notes = [line for line in resumed.stderr.splitlines() if line.startswith(
            ("note:", "warning:"))]
        print(f"kill {i + 1} at {delay:5.1f} s, {moment} (exit {proc.returncode}): checkpoints at the "
              f"kill {ckpts or 'none'}, leftovers {leftovers or 'none'}; resumed "
              f"{'IDENTICAL' if same else 'DIFFERENT'}; {'; '.join(notes) or 'no notes'}")
    print(f"{identical}/{args.kills} resumed runs identical to the uninterrupted run")
    return 0 if identical == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
