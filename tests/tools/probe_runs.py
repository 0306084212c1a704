"""The probe's new run cases (issue 28): records after restarts and kills, evaluation files
that never overwrite another evaluation, SIGTERM and SIGINT to ``jvae.train``,
``jvae.evaluate`` and ``jvae.launch`` jobs (and ``kill -9`` of the launcher), a disk that
fills during a checkpoint write, the command lines' flags, TFDS without prepared data. Used
by :mod:`tests.tools.probe_faults` (``--set new``)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from tests.tools.probe_faults import G2D, ROOT, SMALL, Case, _cli, _train, tiny_disk

RECORDS = ("--config.num_epochs=3", "--config.checkpoint_every=1",
           "--config.dataset.limit_train=1200", "--config.dataset.dev_size=200",
           "--config.eval.every_steps=5")
LOGS = ("metrics.jsonl", "steps.jsonl", "dev.jsonl")
RECORD_WRONG = "records lost or duplicated"


def run_cases(tmp: pathlib.Path) -> list[Case]:
    return (_record_cases(tmp) + _signal_cases(tmp) + _flag_cases(tmp)
            + [_full_disk_case(tmp), _tfds_cli_case(tmp), _tfds_library_case(tmp)])


# ----------------------------------------------------------------------------- records


def _records(workdir: pathlib.Path) -> dict:
    from jvae.runs.steplog import read_jsonl

    return {n: [{k: v for k, v in r.items() if "seconds" not in k}
                for r in read_jsonl(workdir / n)] for n in LOGS}


def _env() -> dict:
    return dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))


def _start(workdir, *extra):
    return subprocess.Popen([sys.executable, "-m", "jvae.train", f"--config={G2D}",
                             f"--workdir={workdir}", *SMALL, *RECORDS, *extra], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait(path: pathlib.Path, proc=None, timeout=300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if path.exists() and (path.is_dir() or path.read_text().strip()):
            return True
        time.sleep(0.01)
    return False


def _record_cases(tmp: pathlib.Path) -> list[Case]:
    reference = tmp / "records-reference"
    cache: dict = {}

    def ref() -> dict:
        if "records" not in cache:
            proc = _train(reference, *RECORDS, timeout=600)
            assert proc.returncode == 0, proc.stderr[-500:]
            cache["records"] = _records(reference)
        return cache["records"]

    def same(workdir):
        def check(_):
            return _records(workdir) == ref()
        return check

    def restart(resume: bool):
        workdir = tmp / f"records-restart-{resume}"

        def run():
            ref()
            workdir.mkdir(parents=True)
            (workdir / "steps.jsonl").write_text("".join(
                json.dumps({"step": s, "epoch": 1, "train/loss": 9.0}) + "\n"
                for s in range(1, 29)))
            (workdir / "dev.jsonl").write_text(json.dumps({"step": 0, "epoch": 0}) + "\n")
            (workdir / "metrics.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
            proc = _train(workdir, *RECORDS, *(["--resume"] if resume else []), timeout=600)
            assert proc.returncode == 0, proc.stderr[-500:]
            return proc
        return Case(f"records: {'--resume' if resume else 'a fresh start'} in a directory "
                    "with a dead run's lines and no checkpoint", run, expect="ok",
                    check=same(workdir), timeout=900, wrong=RECORD_WRONG)

    def stopped(signum: int):
        workdir = tmp / f"records-{signal.Signals(signum).name}"

        def run():
            ref()
            proc = _start(workdir)
            _wait(workdir / "dev.jsonl", proc)
            if (workdir / "checkpoints" / "1").exists():
                raise RuntimeError("missed the moment before the first checkpoint")
            proc.send_signal(signum)
            proc.communicate(timeout=120)
            resumed = _cli("jvae.train", f"--workdir={workdir}", "--resume", "--noprogress",
                           timeout=600)
            assert resumed.returncode == 0, resumed.stderr[-500:]
            return resumed
        return Case(f"records: {signal.Signals(signum).name} before the first checkpoint, "
                    "then --resume", run, expect="ok", check=same(workdir), timeout=900,
                    wrong=RECORD_WRONG)

    def lost_checkpoint():
        workdir = tmp / "records-lost-checkpoint"

        def run():
            ref()
            shutil.copytree(reference, workdir)
            shutil.rmtree(workdir / "checkpoints" / "3")
            (workdir / ".jvae.lock").unlink(missing_ok=True)
            resumed = _cli("jvae.train", f"--workdir={workdir}", "--resume", "--noprogress",
                           timeout=600)
            assert resumed.returncode == 0, resumed.stderr[-500:]
            return resumed
        return Case("records: --resume after the newest checkpoint was lost", run,
                    expect="ok", check=same(workdir), timeout=900, wrong=RECORD_WRONG)

    def evaluations():
        def run():
            ref()
            results = []
            for extra in ((), ("--limit=10",), ("--seed=3",), ("--limit=10", "--block-size=4")):
                proc = _cli("jvae.evaluate", f"--workdir={reference}", "--num-samples=3", *extra)
                assert proc.returncode == 0, proc.stderr[-500:]
                # the last line: "wrote PATH: what it holds"
                line = proc.stderr.strip().splitlines()[-1]
                path = pathlib.Path(line.removeprefix("wrote ").split(".json:", 1)[0] + ".json")
                results.append((path, json.loads(proc.stdout[proc.stdout.index("{"):])))
            return results

        def check(results):
            paths = [p for p, _ in results]
            return len(set(paths)) == 4 and all(json.loads(p.read_text()) == r
                                                for p, r in results)
        return Case("records: four different evaluations of one run write four files",
                    run, expect="ok", check=check, timeout=900, wrong=RECORD_WRONG)

    return [restart(False), restart(True), stopped(signal.SIGKILL), stopped(signal.SIGTERM),
            lost_checkpoint(), evaluations()]


# ----------------------------------------------------------------------------- signals


def _signal_cases(tmp: pathlib.Path) -> list[Case]:
    def single(signum: int):
        workdir = tmp / f"signal-{signal.Signals(signum).name}"

        def run():
            proc = _start(workdir, "--config.num_epochs=100000")
            _wait(workdir / "metrics.jsonl", proc)
            t0 = time.monotonic()
            proc.send_signal(signum)
            err = proc.communicate(timeout=120)[1]
            return {"code": proc.returncode, "err": err, "seconds": time.monotonic() - t0}

        def check(r):
            lines = [line for line in r["err"].splitlines() if line.startswith("error:")]
            return (r["code"] == 128 + signum and len(lines) == 1 and r["seconds"] < 60
                    and f"stopped by {signal.Signals(signum).name}" in lines[0]
                    and "--resume" in lines[0] and "Traceback" not in r["err"])
        return Case(f"signal: {signal.Signals(signum).name} to jvae.train", run, expect="ok",
                    check=check, timeout=600)

    def evaluate():
        def run():
            workdir = tmp / "signal-evaluate-run"
            proc = _train(workdir, "--config.num_epochs=1", timeout=600)
            assert proc.returncode == 0, proc.stderr[-300:]
            ev = subprocess.Popen([sys.executable, "-m", "jvae.evaluate", f"--workdir={workdir}",
                                   "--num-samples=2000", "--block-size=10"], cwd=ROOT,
                                  env=_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            first = ev.stderr.readline()             # the first block's progress line
            ev.send_signal(signal.SIGTERM)
            err = first + ev.communicate(timeout=120)[1]
            return {"code": ev.returncode, "err": err}
        return Case("signal: SIGTERM to jvae.evaluate", run, expect="ok", timeout=900,
                    check=lambda r: r["code"] == 143 and "error: stopped by SIGTERM" in r["err"]
                    and "Traceback" not in r["err"])

    return [single(signal.SIGTERM), single(signal.SIGINT), evaluate(),
            *(_launch_case(tmp, action) for action in ("SIGTERM to the launcher",
                                                       "SIGTERM to process 1",
                                                       "SIGKILL to the launcher"))]


def _job(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"JVAE_LAUNCHER_PID={pid}".encode() in (
                    entry / "environ").read_bytes().split(b"\0") and (
                    entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _launch_case(tmp: pathlib.Path, action: str) -> Case:
    workdir = tmp / f"launch-{action.replace(' ', '-')}"

    def run():
        launcher = subprocess.Popen(
            [sys.executable, "-m", "jvae.launch", "-n", "2", "--devices-per-process", "1", "--",
             f"--config={G2D}", f"--workdir={workdir}", *SMALL, "--config.data_parallel=True",
             "--config.num_epochs=100000", "--config.dataset.limit_train=512"],
            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait(workdir / "metrics.jsonl", launcher, timeout=400)
            workers = _job(launcher.pid)
            t0 = time.monotonic()
            if action == "SIGTERM to the launcher":
                launcher.send_signal(signal.SIGTERM)
            elif action == "SIGTERM to process 1":
                os.kill(max(workers), signal.SIGTERM)
            else:
                launcher.kill()
            err = launcher.communicate(timeout=120)[1]
            while _job(launcher.pid) and time.monotonic() - t0 < 90:
                time.sleep(0.2)
            return {"code": launcher.returncode, "err": err, "workers": len(workers),
                    "left": _job(launcher.pid), "seconds": time.monotonic() - t0}
        finally:
            for pid in _job(launcher.pid):
                os.kill(pid, signal.SIGKILL)

    def check(r):
        code = -9 if action.startswith("SIGKILL") else 143
        return (r["workers"] == 2 and not r["left"] and r["seconds"] < 60
                and r["code"] == code and "stopped by SIGTERM" in r["err"])
    return Case(f"launch: {action}: every process ends within 60 s", run, expect="ok",
                check=check, timeout=900)


# ----------------------------------------------------------------- flags, disks, TFDS


def _flag_cases(tmp: pathlib.Path) -> list[Case]:
    run_dir = tmp / "flags"
    evaluate = [("--seed", str(2 ** 32)), ("--seed", "-1"), ("--epoch", "-1"), ("--limit", "-1"),
                ("--num-samples", "2.5"), ("--num-samples", "0"), ("--chunk-size", "0"),
                ("--batch-size", "-2"), ("--block-size", "0"), ("--split", " ")]
    cases = [Case(f"cli evaluate {flag} {value!r}",
                  (lambda f=flag, v=value: _cli("jvae.evaluate", f"--workdir={run_dir}", f, v)),
                  cli=True, mentions=(flag,)) for flag, value in evaluate]
    train = [("--config.batch_size=2.5", "config.batch_size"),
             ("--config.seed=4294967296", "config.seed"),
             ("--config.sweep.beta=(-1.0,)", "config.sweep.beta"),
             ("--config.sweep.beta=('a',)", "config.sweep.beta"),
             ("--config.model.prior=vamp", "model.prior"),
             ("--config.objective.estimator=dreg", "config.objective.estimator"),
             ("--config.eval.ll_every=2", "config.eval.ll_every")]
    cases += [Case(f"cli train {arg}", (lambda a=arg: _train(tmp / "t", a, *(
        ("--config.model.kind=autoencoder",) if "prior" in a else ()))), cli=True,
        mentions=(field,)) for arg, field in train]
    launch = [(("-n", "0"), "number of processes"), (("-n", "2.5"), "-n"),
              (("-n", "2", "--devices-per-process", "0"), "--devices-per-process"),
              (("-n", "2", "--init-timeout", "0"), "--init-timeout"),
              (("-n", "2", "--port", "abc"), "--port"), (("-n", "2", "--port", "70000"), "--port"),
              (("-n", "2"), "after --")]
    cases += [Case(f"cli launch {' '.join(args)}", (lambda a=args: _cli(
        "jvae.launch", *a, *(("--", "true") if "--" not in a and a != ("-n", "2") else ()))),
        cli=True, mentions=(word,)) for args, word in launch]
    return cases


def _full_disk_case(tmp: pathlib.Path) -> Case:
    script = ("import sys\nfrom jvae.runs import loop\n"
              "loop.check_space = lambda ckpt, state: None\n"
              "from jvae.cli import train\nsys.exit(train.main(sys.argv[1:]))\n")

    def run():
        with tiny_disk(tmp / "tiny-write", "256k") as mount:
            return subprocess.run(
                [sys.executable, "-c", script, f"--config={G2D}", f"--workdir={mount / 'run'}",
                 *SMALL, "--config.eval.log_steps=False", "--config.num_epochs=2",
                 "--config.checkpoint_every=1", "--config.model.encoder_hidden=(64,64,64)"],
                cwd=ROOT, env=_env(), text=True, capture_output=True, timeout=600)
    return Case("fault: the disk fills during a checkpoint write (one line, no orbax "
                "traceback)", run, cli=True, timeout=700, mentions=("no space left",))


def _tfds_cli_case(tmp: pathlib.Path) -> Case:
    home = tmp / "empty-home"
    home.mkdir(exist_ok=True)
    return Case("cli train tfds:cifar10 with no prepared data",
                lambda: _cli("jvae.train", "--config=experiments/configs/cifar10_beta_vae.py",
                             f"--workdir={tmp / 'tfds'}", "--config.dataset.name=tfds:cifar10",
                             env={"HOME": str(home)}),
                cli=True, mentions=("tfds build cifar10",))


def _tfds_library_case(tmp: pathlib.Path) -> Case:
    def run():
        import jvae

        old = os.environ.get("HOME")
        os.environ["HOME"] = str(tmp / "empty-home")
        try:
            return jvae.load_dataset("tfds:cifar10", "train")
        finally:
            os.environ["HOME"] = old or ""
    return Case("library load_dataset tfds:cifar10 with no prepared data (default data dir)",
                run, mentions=("not prepared", "tfds build cifar10"))
