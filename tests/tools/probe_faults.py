"""A hostile but fair probe: bad inputs and faults against the library and the command lines.

Usage::

    JVAE_DATA_DIR=../shared/data python -m tests.tools.probe_faults [--set all|old|new]
        [--only SUBSTRING] [--no-cli] [--json OUT.json] [--record docs/data/reliability.json]

``--set old`` runs the first probe's cases, ``--set new`` the cases on the features of issue
28 (:mod:`tests.tools.probe_config`: config fields and combinations;
:mod:`tests.tools.probe_library`: the newer APIs' input; :mod:`tests.tools.probe_runs`:
records, evaluation files, signals and launched jobs, full disks, command-line flags, TFDS),
``all`` (the default) both.

Every case states what a serious library must do (``expect``: a clear error, or success) and
is classified as one of

- ``clear error``: the documented exception (or, for a command line, exit status != 0) with
  a one-line message (for a command line: one ``error: ...`` line on stderr, no traceback);
- ``ok``: succeeded where success is expected (and its check passed);
- ``unclear error``: an error whose message spans lines, or a traceback on a command line;
- ``internal exception``: an exception type that says nothing to the user (KeyError,
  AttributeError, an XLA or tracer error, ...);
- ``silent wrong result``: no error where one was due, or a success whose check failed;
- ``records lost or duplicated``: a run's records do not match its state (record cases);
- ``hang``: ran past its time limit.

An error whose message does not name what a case says it must (``mentions``: the field, the
argument or the file) is an ``unclear error``. A case with ``known`` (a fault fixed under
another issue) that fails is counted as ``known: <issue>`` instead of its verdict, and
listed.

The library cases run in-process (each under ``signal.alarm``); the command-line cases and
the faults (kills, damaged checkpoints, locks, read-only and full disks) run ``python -m
jvae.train`` / ``jvae.evaluate`` as subprocesses with a timeout. Prints one line per case and
the counts per verdict; exits 1 unless every case is ``clear error`` or ``ok``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, NamedTuple

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
G2D = str(ROOT / "experiments/configs/gaussian2d.py")
SMALL = ["--config.model.encoder_hidden=(16,)", "--config.model.decoder_hidden=(16,)",
         "--config.batch_size=64", "--config.figures=False", "--noprogress"]
INTERNAL = (KeyError, AttributeError, IndexError, TypeError, ZeroDivisionError, NameError,
            AssertionError, RecursionError, NotImplementedError, UnboundLocalError)


class Case(NamedTuple):
    name: str
    run: Callable[[], object]          # library: raises or returns; CLI: a CompletedProcess
    expect: str = "error"              # "error" or "ok"
    check: Callable[[object], bool] | None = None
    timeout: int = 120
    cli: bool = False
    mentions: tuple = ()               # what a clear error must name
    known: str = ""                    # a fault fixed under another issue
    wrong: str = "silent wrong result"  # the verdict of a failed check


# ----------------------------------------------------------------------------- verdicts


def _classify(case: Case) -> tuple[str, str]:
    verdict, detail = _verdict(case)
    if verdict == "clear error" and case.mentions:
        missing = [m for m in case.mentions if m not in detail]
        if missing:
            verdict, detail = "unclear error", f"does not name {missing}: {detail}"
    if verdict not in ("clear error", "ok") and case.known:
        return f"known: {case.known}", f"{verdict}: {detail}"
    return verdict, detail


def _verdict(case: Case) -> tuple[str, str]:
    if case.cli:
        try:
            proc = case.run()
        except subprocess.TimeoutExpired:
            return "hang", f"no exit after {case.timeout} s"
        err = proc.stderr.strip()
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        if "Traceback" in err:
            return "unclear error", err.splitlines()[-1][:200]
        if proc.returncode != 0:
            if len(lines) == 1:
                return ("clear error", lines[0][:600]) if case.expect == "error" else \
                    ("silent wrong result", f"failed: {lines[0][:200]}")
            return "unclear error", f"exit {proc.returncode}: {err[-200:]}"
        if case.expect == "error":
            return "silent wrong result", "exit 0"
        ok = case.check is None or case.check(proc)
        return ("ok", "exit 0") if ok else (case.wrong, "exit 0, check failed")

    def alarm(signum, frame):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(case.timeout)
    try:
        result = case.run()
    except TimeoutError:
        return "hang", f"no return after {case.timeout} s"
    except INTERNAL as e:
        return "internal exception", f"{type(e).__name__}: {str(e)[:200]}"
    except Exception as e:  # noqa: BLE001 - classified below
        module = type(e).__module__
        if not (module.startswith("jvae") or module == "builtins"):
            return "internal exception", f"{module}.{type(e).__name__}: {str(e)[:160]}"
        msg = str(e)
        if "\n" in msg.strip() or not msg.strip():
            return "unclear error", f"{type(e).__name__}: {msg[:200]!r}"
        if case.expect == "ok":
            return "silent wrong result", f"failed: {type(e).__name__}: {msg[:200]}"
        return "clear error", f"{type(e).__name__}: {msg[:600]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if case.expect == "error":
        return "silent wrong result", f"returned {str(result)[:120]!r}"
    ok = case.check is None or case.check(result)
    return ("ok", "returned") if ok else (case.wrong, "check failed")


# ----------------------------------------------------------------------- library: data


def _library_cases(tmp: pathlib.Path) -> list[Case]:
    import jax
    import jax.numpy as jnp
    import optax

    import jvae

    def model_of(likelihood):
        c = jvae.default_config()
        c.latent_dim, c.model.encoder_hidden, c.model.decoder_hidden = 2, (8,), (8,)
        c.model.likelihood = likelihood
        return jvae.build_model(c, (28, 28, 1))

    bern, gauss = model_of("bernoulli"), model_of("gaussian")
    good = np.full((8, 28, 28, 1), 0.5, np.float32)
    key = jax.random.key(0)
    params = jvae.init_params(bern, key, good)
    gparams = jvae.init_params(gauss, key, good)
    loss = jvae.make_elbo_loss(bern)
    # The documented call passes the model (make_train_epoch reads nothing off the loss,
    # docs/guides/architecture.md): only then can the epoch check the likelihood's support.
    epoch = jvae.make_train_epoch(loss, optax.adam(1e-3), 4, model=bern)
    state = jvae.TrainState.create(params, optax.adam(1e-3), key)
    evaluator = jvae.make_evaluator(bern, batch_size=4)

    def bad(kind):
        x = good.copy()
        if kind == "nan pixel":
            x[3, 5, 7, 0] = np.nan
        elif kind == "inf pixel":
            x[0, 0, 0, 0] = np.inf
        elif kind == "uint8 0-255":
            x = (x * 255).astype(np.uint8)
        elif kind == "above 1":
            x[1, 2, 3, 0] = 1.5
        elif kind == "negative":
            x[2, 2, 2, 0] = -0.1
        elif kind == "no channel axis":
            x = x[..., 0]
        elif kind == "14x14 images":
            x = x[:, :14, :14]
        elif kind == "empty batch":
            x = x[:0]
        elif kind == "strings":
            x = np.array([["a"] * 4] * 2)
        elif kind == "flat vectors":
            x = x.reshape(8, 784)
        return x

    kinds = ["nan pixel", "inf pixel", "uint8 0-255", "above 1", "negative", "no channel axis",
             "14x14 images", "empty batch", "strings", "flat vectors"]
    entries = {
        "init_params": lambda x: jvae.init_params(bern, key, x),
        "train epoch": lambda x: epoch(state, jnp.asarray(x) if x.dtype.kind != "U" else x),
        "make_evaluator": lambda x: evaluator(params, key, x),
        "importance_log_likelihood": lambda x: jvae.importance_log_likelihood(
            bern, params, key, x, num_samples=4),
        "reconstruct": lambda x: jvae.reconstruct(bern, params, key, x),
    }
    def finite_tree(tree):
        return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))

    # init_params reads only the example's shape: its values cannot make parameters wrong.
    shape_only = {"nan pixel", "inf pixel", "uint8 0-255", "above 1", "negative"}
    def same_as_unit_floats(out):
        """uint8 pixels are stored 8-bit images (issue 31): the epoch trains exactly as on
        the same pixels read as float32 v / 255."""
        x = bad("uint8 0-255")
        ref = epoch(state, jnp.asarray(np.arange(256, dtype=np.float32)[x] / np.float32(255)))
        return all(bool(jnp.array_equal(a, b)) for a, b in
                   zip(jax.tree.leaves(out[0].params), jax.tree.leaves(ref[0].params)))

    def expectation(entry, kind):
        if entry == "init_params" and kind in shape_only:
            return {"expect": "ok", "check": finite_tree}
        if entry == "train epoch" and kind == "uint8 0-255":
            return {"expect": "ok", "check": same_as_unit_floats}
        return {}

    cases = [Case(f"library {entry}: {kind}", (lambda f=f, k=kind: f(bad(k))),
                  **expectation(entry, kind))
             for entry, f in entries.items() for kind in kinds]

    cases += [
        Case("library gaussian likelihood accepts values outside [0, 1]",
             lambda: jvae.make_evaluator(gauss, batch_size=4)(gparams, key, bad("above 1")),
             expect="ok", check=lambda m: all(np.isfinite(float(v)) for v in m.values())),
        Case("library validate=False lets in-range data through an epoch",
             lambda: jvae.make_train_epoch(loss, optax.adam(1e-3), 4, validate=False)(
                 state, jnp.asarray(good)),
             expect="ok", check=lambda out: finite_tree(out[0].params)),
        Case("library make_train_epoch batch_size 0",
             lambda: jvae.make_train_epoch(loss, optax.adam(1e-3), 0)),
        Case("library make_train_epoch batch larger than data",
             lambda: jvae.make_train_epoch(loss, optax.adam(1e-3), 64)(state, jnp.asarray(good))),
        Case("library make_elbo_loss num_samples 0", lambda: jvae.make_elbo_loss(bern,
                                                                                 num_samples=0)),
        Case("library make_elbo_loss beta -1", lambda: jvae.make_elbo_loss(bern, beta=-1.0)),
        Case("library make_elbo_loss kl typo", lambda: jvae.make_elbo_loss(bern, kl="analitic")),
        Case("library make_optimizer unknown name",
             lambda: jvae.make_optimizer(1e-3, name="adagradd")),
        Case("library make_optimizer lr 0", lambda: jvae.make_optimizer(0.0)),
        Case("library make_iwae_loss estimator typo",
             lambda: jvae.make_iwae_loss(bern, num_samples=4, estimator="dreg2")),
        Case("library load_dataset unknown name",
             lambda: jvae.load_dataset("mnsit", "train")),
        Case("library load_dataset unknown split",
             lambda: jvae.load_dataset("mnist", "tain")),
        Case("library load_dataset threshold 1.5",
             lambda: jvae.load_dataset("mnist", "test", binarize="static", threshold=1.5)),
        Case("library load_dataset limit -1", lambda: jvae.load_dataset("mnist", "test", limit=-1)),
        Case("library restore_run of a directory without config.json",
             lambda: jvae.restore_run(tmp)),
        Case("library Checkpointer.restore of an empty directory",
             lambda: jvae.Checkpointer(tmp / "none").restore(state)),
    ]
    return cases + _file_cases(tmp) + _config_cases()


def _file_cases(tmp: pathlib.Path) -> list[Case]:
    import jvae

    data = pathlib.Path(os.environ.get("JVAE_DATA_DIR", ROOT.parent / "shared/data"))

    def layout(name, files):
        root = pathlib.Path(tempfile.mkdtemp(dir=tmp))
        (root / name).mkdir()
        for dst, content in files.items():
            (root / name / dst).write_bytes(content)
        return root

    fashion = {f: (data / "fashion_mnist" / f).read_bytes() for f in
               ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    real = {f: (data / "mnist" / f).read_bytes() for f in fashion}
    trunc = dict(real, **{"t10k-images-idx3-ubyte.gz":
                          real["t10k-images-idx3-ubyte.gz"][:5000]})
    notgz = dict(real, **{"t10k-images-idx3-ubyte.gz": b"plain text, not gzip"})
    badmagic = dict(real, **{"t10k-images-idx3-ubyte.gz": gzip.compress(b"\0" * 64)})
    npz = (data / "binarized_mnist" / "binarized_mnist_test.npz").read_bytes()

    def load(root, name="mnist", **kw):
        return jvae.load_dataset(name, "test", data_dir=root, **kw)

    return [
        Case("files: fashion_mnist files under mnist/",
             lambda: load(layout("mnist", fashion))),
        Case("files: truncated gzip", lambda: load(layout("mnist", trunc))),
        Case("files: not a gzip file", lambda: load(layout("mnist", notgz))),
        Case("files: bad IDX magic (verify=False)",
             lambda: load(layout("mnist", badmagic), verify=False)),
        Case("files: truncated npz", lambda: load(layout("binarized_mnist", {
            "binarized_mnist_test.npz": npz[:1000]}), "binarized_mnist")),
        Case("files: truncated npz (verify=False)", lambda: load(layout("binarized_mnist", {
            "binarized_mnist_test.npz": npz[:1000]}), "binarized_mnist", verify=False)),
        Case("files: empty npz file (verify=False)", lambda: load(layout("binarized_mnist", {
            "binarized_mnist_test.npz": b""}), "binarized_mnist", verify=False)),
        Case("files: missing directory", lambda: load(tmp / "nowhere")),
        Case("files: the real files load", lambda: load(data), expect="ok",
             check=lambda x: x.shape == (10000, 28, 28, 1)),
    ]


def _config_cases() -> list[Case]:
    from jvae import default_config, validate_config

    bad = {
        "batch_size": 0, "num_epochs": -1, "latent_dim": 0, "num_seeds": 0, "seed": -1,
        "learning_rate": 0.0, "checkpoint_every": -1, "batch_size ": 1.5,
        "dataset.name": "mnsit", "dataset.binarize": "yes", "dataset.threshold": 1.5,
        "model.likelihood": "bernouli", "model.prior": "vampprior", "model.encoder": "cnn",
        "model.posterior": "flow", "model.init": "xavier", "objective.name": "elbow",
        "objective.kl": "exact", "objective.estimator": "dreg2", "objective.num_samples": 0,
        "objective.beta": -1.0, "objective.cv_decay": 1.0,
        "objective.control_variates": ("nope",), "optim.name": "adagradd", "optim.eps": 0.0,
        "optim.weight_decay": -1.0, "optim.rmsprop_decay": 1.0, "optim.schedule": "cosine",
        "eval.every": 0, "eval.batch_size": 0, "eval.ll_samples": -5,
        "divergence.factor": -1.0, "divergence.max_loss": "big",
        "dataset.data_seed": 2 ** 40, "dataset.order_seed": -7,
    }
    cases = []
    for field, value in bad.items():
        def run(field=field.strip(), value=value):
            c = default_config()
            node = c
            *parents, leaf = field.split(".")
            for p in parents:
                node = node[p]
            with node.ignore_type():    # what a config file may set; validation must catch it
                node[leaf] = value
            validate_config(c)
        cases.append(Case(f"config {field.strip()}={value!r}", run))

    def combo(**changes):
        def run():
            c = default_config()
            for k, v in changes.items():
                node = c
                *parents, leaf = k.split("__")
                for p in parents:
                    node = node[p]
                node[leaf] = v
            validate_config(c)
        return run

    cases += [
        Case("config vimco with 1 sample", combo(objective__name="vimco")),
        Case("config mixture posterior with elbo", combo(model__posterior="mixture")),
        Case("config mixture objective, gaussian posterior", combo(objective__name="mixture")),
        Case("config sweep lengths differ", combo(sweep__beta=(0.1, 1.0),
                                                  sweep__learning_rate=(1e-3,))),
        Case("config sweep with num_seeds 2", combo(sweep__beta=(0.1, 1.0), num_seeds=2)),
        Case("config gaussian2d with bernoulli", combo(dataset__name="gaussian2d")),
        Case("config seed 2**32 - 1 with 2 seeds", combo(seed=2 ** 32 - 1, num_seeds=2)),
        Case("config the default config is valid", combo(), expect="ok"),
    ]
    return cases


# ------------------------------------------------------------------ command lines, faults


def _cli(*args, timeout=180, env=None):
    full = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=full, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _train(workdir, *extra, timeout=180):
    return _cli("jvae.train", f"--config={G2D}", f"--workdir={workdir}", *SMALL, *extra,
                timeout=timeout)


@contextlib.contextmanager
def tiny_disk(mount: pathlib.Path, size: str):
    """A tmpfs of ``size`` (e.g. ``"200k"``) mounted at ``mount`` for the block (root only)."""
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _cli_cases(tmp: pathlib.Path) -> list[Case]:
    run_dir = tmp / "cli_run"
    cases = [Case(f"cli {' '.join(a)}", (lambda a=a: _train(tmp / f"c{abs(hash(a))}", *a)),
                  cli=True) for a in [
        ("--config.model.likelihod=gaussian",), ("--config.foo=1",),
        ("--config.batch_size=big",), ("--config.optim=adam",),
        ("--config.seed=36893488147419103232",), ("--config.num_epochs=0",),
        ("--config.dataset.name=mnsit",), ("--config.learning_rate=-1",),
        ("--config.num_epochs",)]]
    for body, what in [("def get_config():\n    return {'seed': 0}\n", "returns a dict"),
                       ("x = 1\n", "no get_config"), ("def get_config(:\n", "syntax error")]:
        path = tmp / f"cfg_{abs(hash(body))}.py"
        path.write_text(body)
        cases.append(Case(f"cli config file {what}", (lambda p=path: _cli(
            "jvae.train", f"--config={p}", f"--workdir={tmp / 'x'}")), cli=True))
    cases += [
        Case("cli empty --workdir", lambda: _cli("jvae.train", f"--config={G2D}",
                                                 "--workdir="), cli=True),
        Case("cli missing config file", lambda: _cli("jvae.train", "--config=nope.py",
                                                     f"--workdir={tmp / 'y'}"), cli=True),
        Case("cli evaluate: not a run directory",
             lambda: _cli("jvae.evaluate", f"--workdir={tmp}"), cli=True),
        Case("cli evaluate: --num-samples 0",
             lambda: _cli("jvae.evaluate", f"--workdir={tmp}", "--num-samples=0"), cli=True),
        Case("cli a 2-epoch run", lambda: _train(run_dir, "--config.num_epochs=2",
                                                 "--config.checkpoint_every=1"),
             expect="ok", cli=True,
             check=lambda p: (run_dir / "checkpoints/2/jvae_manifest.json").is_file()),
        Case("cli resume with another learning rate",
             lambda: _cli("jvae.train", f"--workdir={run_dir}", "--resume",
                          "--config.learning_rate=0.1"), cli=True),
        Case("cli resume with another latent size",
             lambda: _cli("jvae.train", f"--workdir={run_dir}", "--resume",
                          "--config.latent_dim=3"), cli=True),
        Case("cli resume with another dataset mode",
             lambda: _cli("jvae.train", f"--workdir={run_dir}", "--resume",
                          "--config.dataset.mode=multivariate"), cli=True),
        Case("cli new run into a directory with checkpoints", lambda: _train(run_dir), cli=True),
        Case("cli resume without --config, 3 epochs",
             lambda: _cli("jvae.train", f"--workdir={run_dir}", "--resume", "--noprogress",
                          "--config.num_epochs=3"), expect="ok", cli=True,
             check=lambda p: p.stdout.startswith("done: epoch 3")),
        Case("cli diverging learning rate 1e6", lambda: _train(tmp / "lr", "--config."
                                                               "learning_rate=1e6"), cli=True),
        Case("cli finite divergence (learning rate 1)",
             lambda: _train(tmp / "lr1", "--config.learning_rate=1.0"), cli=True),
    ]
    return cases + _fault_cases(tmp)


def _fault_cases(tmp: pathlib.Path) -> list[Case]:
    from jvae.runs.checkpoints import MANIFEST

    def fresh(name, epochs=3):
        workdir = tmp / name
        proc = _train(workdir, f"--config.num_epochs={epochs}", "--config.checkpoint_every=1")
        assert proc.returncode == 0, proc.stderr[-500:]
        return workdir

    def newest_data(workdir, epoch=3):
        files = json.loads((workdir / f"checkpoints/{epoch}/{MANIFEST}").read_text())["files"]
        return workdir / f"checkpoints/{epoch}" / max(files, key=lambda f: files[f][0])

    def resume_after(damage):
        def run():
            workdir = fresh(f"damage_{damage.__name__}")
            damage(workdir)
            proc = _cli("jvae.train", f"--workdir={workdir}", "--resume", "--noprogress",
                        "--config.num_epochs=4")
            run.proc = proc
            return proc
        return run

    def flip(workdir):
        f = newest_data(workdir)
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        f.write_bytes(bytes(raw))

    def truncate(workdir):
        f = newest_data(workdir)
        f.write_bytes(f.read_bytes()[:7])

    def drop_manifest(workdir):
        (workdir / f"checkpoints/3/{MANIFEST}").unlink()

    def drop_orbax(workdir):
        (workdir / "checkpoints/3/state/manifest.ocdbt").unlink()

    def half_deleted(workdir):
        shutil.rmtree(workdir / "checkpoints/3/state/d")

    def fell_back(proc):
        return (proc.stdout.startswith("done: epoch 4") and "skipped the checkpoint of epoch 3"
                in proc.stderr)

    cases = [Case(f"fault: newest checkpoint {d.__name__}, then --resume", resume_after(d),
                  expect="ok", check=fell_back, cli=True, timeout=400)
             for d in (flip, truncate, drop_manifest, drop_orbax, half_deleted)]

    def evaluate_damaged():
        workdir = fresh("eval_damaged")
        flip(workdir)
        return _cli("jvae.evaluate", f"--workdir={workdir}", "--num-samples=4", "--limit=100")

    def kill_then_resume():
        workdir = tmp / "killed"
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "jvae.train", f"--config={G2D}",
                                 f"--workdir={workdir}", *SMALL, "--config.num_epochs=8",
                                 "--config.checkpoint_every=1"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and not (workdir / "checkpoints/2").exists():
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        return _cli("jvae.train", f"--workdir={workdir}", "--resume", "--noprogress")

    def two_runs():
        workdir = tmp / "two_runs"
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
        first = subprocess.Popen([sys.executable, "-m", "jvae.train", f"--config={G2D}",
                                  f"--workdir={workdir}", *SMALL, "--config.num_epochs=5000"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
                time.sleep(0.2)
            return _train(workdir, "--resume", "--config.num_epochs=5000", timeout=60)
        finally:
            first.kill()
            first.wait()

    def read_only():
        workdir = tmp / "read_only"
        (workdir / "checkpoints").mkdir(parents=True)
        subprocess.run(["chattr", "+i", str(workdir / "checkpoints")], check=True)
        try:
            return _train(workdir, timeout=60)
        finally:
            subprocess.run(["chattr", "-i", str(workdir / "checkpoints")], check=True)

    def full_disk():
        with tiny_disk(tmp / "tiny", "200k") as mount:
            return _train(mount / "run", timeout=60)

    def stale_lock():
        workdir = fresh("stale", epochs=1)
        (workdir / ".jvae.lock").write_text(json.dumps({"pid": 999999, "host": "gone"}))
        return _cli("jvae.train", f"--workdir={workdir}", "--resume", "--noprogress",
                    "--config.num_epochs=2")

    return cases + [
        Case("fault: evaluate with a damaged newest checkpoint", evaluate_damaged, expect="ok",
             cli=True, timeout=400, check=lambda p: "skipped the checkpoint of epoch 3"
             in p.stderr and '"num_examples": 100' in p.stdout),
        Case("fault: kill -9 mid-run, then --resume", kill_then_resume, expect="ok", cli=True,
             timeout=400, check=lambda p: p.stdout.startswith("done: epoch 8")),
        Case("fault: a second run while the first is alive", two_runs, cli=True, timeout=300),
        Case("fault: read-only checkpoint directory", read_only, cli=True),
        Case("fault: full disk", full_disk, cli=True),
        Case("fault: stale lock of a dead run, then --resume", stale_lock, expect="ok",
             cli=True, timeout=400, check=lambda p: "stale lock" in p.stderr),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="all", choices=("all", "old", "new"),
                        help="the first probe's cases, issue 28's, or both")
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument("--skip", default=None, help="skip cases whose name contains this")
    parser.add_argument("--no-cli", action="store_true", help="library cases only (fast)")
    parser.add_argument("--json", default="", help="write every case's verdict here")
    parser.add_argument("--record", default="",
                        help="store the counts per verdict under 'probe_faults' in this JSON")
    args = parser.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="jvae-probe-"))
    groups = []
    if args.set in ("all", "old"):
        groups.append(("old", _library_cases(tmp) + ([] if args.no_cli else _cli_cases(tmp))))
    if args.set in ("all", "new"):
        from tests.tools import probe_config, probe_library, probe_runs

        new = (probe_config.config_cases() + probe_library.data_cases()
               + probe_config.combination_cases())
        groups.append(("new", new + ([] if args.no_cli else probe_runs.run_cases(tmp))))
    totals, rows = {}, []
    for group, cases in groups:
        counts = collections.Counter()
        for case in (c for c in cases if args.only in c.name
                     and (args.skip is None or args.skip not in c.name)):
            t0 = time.perf_counter()
            try:
                verdict, detail = _classify(case)
            except Exception as e:  # noqa: BLE001 - a broken case set-up is reported, not hidden
                verdict, detail = "probe failure", f"{type(e).__name__}: {e}"
            counts[verdict] += 1
            rows.append({"set": group, "case": case.name, "verdict": verdict,
                         "detail": detail, "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{verdict:28s} {case.name}: {detail}", flush=True)
        totals[group] = dict(counts.most_common())
    for group, counts in totals.items():
        print(f"\n{group} cases: {sum(counts.values())}: " + ", ".join(
            f"{n} {v}" for v, n in counts.items()))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.record:
        _record(pathlib.Path(args.record), totals, rows, argv)
    shutil.rmtree(tmp, ignore_errors=True)
    bad = {v for counts in totals.values() for v in counts} - {"clear error", "ok"}
    return 0 if not {v for v in bad if not v.startswith("known")} else 1


def _record(path: pathlib.Path, totals: dict, rows: list[dict], argv) -> None:
    import datetime

    data = json.loads(path.read_text()) if path.is_file() else {}
    data["probe_faults"] = {
        "command": "JVAE_DATA_DIR=../shared/data python -m tests.tools.probe_faults "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "measured": datetime.date.today().isoformat(), "counts": totals,
        "faults": sum(r["case"].startswith(("fault", "signal", "records", "launch"))
                      for r in rows),
        "not_ok": [r for r in rows if r["verdict"] not in ("clear error", "ok")]}
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
