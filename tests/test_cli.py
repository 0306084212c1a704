"""Tests for the command lines (``python -m jvae.train`` / ``python -m jvae.evaluate``) and the
start-up checks behind them.

One subprocess in all (it pays JAX's start-up, ~10-30 s on a busy 2-core machine): a one-epoch
MNIST run of ``python -m jvae.train`` with the pytorch_example config on a subset. Its
evaluation calls ``jvae.evaluate.main`` in-process with the same arguments (no second
start-up; it reuses the subprocess's compilations through the session's XLA cache). Every bad
input is checked in-process, where it fails before anything is compiled.
"""

import fnmatch
import json
import os
import pathlib
import re
import runpy
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

import jvae
from jvae import data as jdata
from jvae.cli import evaluate as evaluate_cli
from jvae.cli import train
from jvae.runs import read_metrics, train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
OVERRIDES = ["--config.dataset.limit_train=512", "--config.dataset.limit_eval=256",
             "--config.batch_size=64", "--config.num_epochs=1",
             "--config.model.encoder_hidden=(32,)", "--config.model.decoder_hidden=(32,)",
             "--config.eval.batch_size=256"]


def _cli(*args, timeout=240):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    cache = jax.config.jax_compilation_cache_dir
    if cache:   # the session's XLA cache (conftest): the in-process evaluation reuses its work
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def _describe(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


# ------------------------------------------------------------------- end to end on MNIST


@pytest.fixture(scope="module")
def trained(jvae_data_dir, tmp_path_factory):
    """``python -m jvae.train`` with the pytorch_example config, 1 epoch on 512 images."""
    workdir = tmp_path_factory.mktemp("cli") / "run"
    proc = _cli("jvae.train", f"--config={CONFIGS / 'pytorch_example.py'}",
                f"--workdir={workdir}", "--noprogress", *OVERRIDES)
    return workdir, proc


def test_train_cli_writes_a_complete_run(trained):
    workdir, proc = trained
    assert proc.returncode == 0, _describe(proc)
    assert proc.stdout.startswith("done: epoch 1, step 8\n"
                                  "  evaluated on the test split (256 images)\n")
    assert "test ELBO -" in proc.stdout and "nats per example" in proc.stdout
    assert "eval ELBO" not in proc.stdout
    # Every file it wrote, one line each with what it is (none unexplained).
    listed = _listed_outputs(proc.stdout)
    present = {p.name + ("/" if p.is_dir() else "") for p in workdir.iterdir()
               if not p.name.startswith(".")}
    assert set(listed) == present
    assert {"config.json", "metrics.jsonl", "steps.jsonl", "checkpoints/", "samples.png",
            "curves.png"} <= present
    for name, what in listed.items():
        assert what not in ("a figure", "not written by jvae"), (name, what)
    assert "newest: epoch 1" in listed["checkpoints/"]
    # What to run next, on which data, how long it takes at this run's measured speed.
    tail = proc.stdout[proc.stdout.index("next: "):].splitlines()
    assert tail[0] == f"next: python -m jvae.evaluate --workdir {workdir} --num-samples 1000"
    assert tail[1] == "  importance-sampled log p(x) of the 256 test images, K = 1000"
    assert "of evaluation at this run's speed" in tail[2] and "upper bound" in tail[2]
    assert tail[3] == f"  it writes {workdir / 'eval_test_K1000_epoch1_seed0.json'}"
    # the old hard-coded hint ("about 3 minutes on 2 CPU cores for 10000 images") is gone
    assert "10000 images" not in proc.stdout and "on 2 CPU cores" not in proc.stdout
    config = json.loads((workdir / "config.json").read_text())
    assert config["dataset"]["name"] == "mnist" and config["seed"] == 1   # the shipped config
    assert config["dataset"]["limit_train"] == 512 and config["batch_size"] == 64  # overrides
    assert config["model"]["encoder_hidden"] == [32]
    records = read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1]
    assert records[0]["step"] == 512 // 64
    assert np.isfinite(records[0]["train/loss"]) and np.isfinite(records[0]["eval/elbo"])
    assert (workdir / "checkpoints" / "1").is_dir()
    assert records[0]["eval/examples"] == 256
    for name in ("samples.png", "reconstructions.png", "curves.png", "latents_tsne.png",
                 "latent_kl.png"):
        assert (workdir / name).stat().st_size > 1000, name


def _listed_outputs(stdout: str) -> dict[str, str]:
    """The summary's ``name  what`` lines (indented by 4 under ``  in DIR/:``)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  in ")) + 1
    out = {}
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        name, what = line.strip().split(None, 1)
        out[name] = what
    return out


def test_getting_started_lists_every_file_of_the_main_commands_run(trained):
    """docs/getting-started.md lists, one line each, every file a run of the main command's
    config writes (this run is the same config, smaller)."""
    workdir, proc = trained
    assert proc.returncode == 0, _describe(proc)
    text = (ROOT / "docs" / "getting-started.md").read_text()
    cells = re.findall(r"^\| ([^|]*`[^|]*) \|", text, re.M)       # first cells of table rows
    listed = [name for cell in cells for name in re.findall(r"`([^`]+)`", cell)]
    present = {p.name + ("/" if p.is_dir() else "") for p in workdir.iterdir()
               if not p.name.startswith(".")}
    missing = [n for n in present if not any(fnmatch.fnmatchcase(n, p) for p in listed)]
    assert not missing, f"getting-started.md does not list {sorted(missing)}"


def test_evaluate_cli_log_likelihood_is_above_the_elbo(trained, capsys):
    workdir, proc = trained
    assert proc.returncode == 0, _describe(proc)
    returned = evaluate_cli.main([f"--workdir={workdir}", "--num-samples=20"])
    captured = capsys.readouterr()
    stdout = captured.out
    printed = json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])
    assert printed == returned
    path = workdir / "eval_test_K20_epoch1_seed0.json"
    # Says where, what and which split, in one line.
    assert captured.err.splitlines()[-1] == (
        f"wrote {path}: ELBO, distortion, rate and log p(x) with K = 20 of the 256 examples "
        "of the test split, checkpoint of epoch 1")
    assert "test: 256/256 examples" in captured.err
    saved = json.loads(path.read_text())
    assert printed == saved
    assert saved["split"] == "test" and saved["num_examples"] == 256 and saved["limit"] == 0
    assert saved["num_samples"] == 20 and saved["step"] == 512 // 64
    assert saved["epoch"] == 1 and saved["seed"] == 0
    np.testing.assert_allclose(saved["elbo"], -(saved["distortion"] + saved["rate"]),
                               rtol=1e-5)
    # Importance sampling with K=20 is a tighter bound than the one-sample ELBO; both are
    # averages over 256 images, so allow for the Monte Carlo noise of the ELBO only.
    assert saved["log_likelihood"] >= saved["elbo"] - 1.0, saved
    # Same checkpoint and images as the run's own last evaluation (other random draws).
    assert abs(saved["elbo"] - read_metrics(workdir)[-1]["eval/elbo"]) < 3.0


def test_evaluate_cli_limit_and_blocks_agree_with_one_call(trained, capsys):
    workdir, proc = trained
    assert proc.returncode == 0, _describe(proc)
    whole = evaluate_cli.main([f"--workdir={workdir}", "--num-samples=5", "--limit=100",
                               "--block-size=100"])
    blocks = evaluate_cli.main([f"--workdir={workdir}", "--num-samples=5", "--limit=100",
                                "--block-size=30"])
    assert whole["num_examples"] == blocks["num_examples"] == 100
    assert whole["split_size"] == 256
    assert whole["device"] == jax.devices()[0].device_kind
    assert "examples_per_second" not in whole            # one block: nothing compiled to time
    assert blocks["examples_per_second"] > 0             # blocks 2 and 3 of 30, 30, 30, 10
    assert "100/100 examples" in capsys.readouterr().err
    # Different random draws per block, same images: the means agree to Monte Carlo noise.
    for key in ("elbo", "log_likelihood", "rate"):
        assert abs(whole[key] - blocks[key]) < 2.0, key
    with pytest.raises(SystemExit):
        evaluate_cli.main([f"--workdir={workdir}", "--limit=-1"])


def test_evaluate_cli_never_overwrites_another_evaluation(trained, capsys):
    """Another limit, seed or block size is another evaluation: its own file, never over a
    full evaluation's; the same evaluation again replaces its own file."""
    workdir, proc = trained
    assert proc.returncode == 0, _describe(proc)
    args = [f"--workdir={workdir}", "--num-samples=3"]
    full = evaluate_cli.main(args)
    part = evaluate_cli.main([*args, "--limit=10"])
    seeded = evaluate_cli.main([*args, "--seed=7", "--limit=10"])
    blocks = evaluate_cli.main([*args, "--limit=10", "--block-size=4"])
    again = evaluate_cli.main([*args, "--limit=10"])
    wrote = [line.split(" ")[1].rstrip(":") for line in capsys.readouterr().err.splitlines()
             if line.startswith("wrote ")]
    stem = str(workdir / "eval_test_K3_epoch1")
    assert wrote == [f"{stem}_seed0.json", f"{stem}_seed0_limit10.json",
                     f"{stem}_seed7_limit10.json", f"{stem}_seed0_limit10_2.json",
                     f"{stem}_seed0_limit10.json"]
    for path, result in zip(wrote, [full, again, seeded, blocks]):
        assert json.loads(pathlib.Path(path).read_text()) == result
    assert full["num_examples"] == 256 and part["num_examples"] == 10
    assert blocks["block_size"] == 4 and again["block_size"] == 1000


# ------------------------------------------------------------ bad inputs, in-process


def test_unknown_config_file_is_a_one_line_error(tmp_path, capsys):
    assert train.main(["--config=experiments/configs/no_such_config.py",
                       f"--workdir={tmp_path / 'run'}", "--noprogress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such_config.py" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.fixture
def cli_main(monkeypatch):
    """Run ``jvae.train.main`` in-process with a given config (the config file bypassed)."""

    def run(config, workdir):
        monkeypatch.setattr(train, "load_config_file", lambda spec: config)
        return train.main(["--config=given.py", f"--workdir={workdir}", "--noprogress"])

    return run


def test_unknown_dataset_name_lists_the_valid_choices(small_g2d_config, tmp_path, cli_main,
                                                      capsys):
    config = small_g2d_config(**{"dataset.name": "nope"})
    with pytest.raises(ValueError, match="nope") as info:
        train_and_evaluate(config, tmp_path / "a", progress=False)
    for choice in ("mnist", "fashion_mnist", "binarized_mnist", "gaussian2d"):
        assert choice in str(info.value)
    assert not (tmp_path / "a").exists()
    assert cli_main(config, tmp_path / "b") == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope" in err and "gaussian2d" in err


@pytest.mark.parametrize("field", ["batch_size", "latent_dim", "num_epochs"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_are_rejected(small_g2d_config, tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field}.*{value}"):
        train_and_evaluate(small_g2d_config(**{field: value}), tmp_path, progress=False)
    assert not (tmp_path / "config.json").exists()


def test_missing_data_files_name_the_files_and_jvae_data_dir(small_g2d_config, tmp_path,
                                                             monkeypatch, cli_main, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("JVAE_CACHE_DIR", str(tmp_path / "cache"))   # not ~/.cache/jvae
    config = small_g2d_config(**{"dataset.name": "mnist", "dataset.data_dir": str(empty),
                                 "model.likelihood": "bernoulli"})
    with pytest.raises(FileNotFoundError) as info:
        train_and_evaluate(config, tmp_path / "run", progress=False)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "JVAE_DATA_DIR" in msg
    assert str(empty / "mnist") in msg
    assert not (tmp_path / "run").exists()
    assert cli_main(config, tmp_path / "run") == 1
    assert "JVAE_DATA_DIR" in capsys.readouterr().err


def test_nan_in_the_data_is_rejected(small_g2d_config, tmp_path, monkeypatch):
    def load_with_nan(name, split, **kwargs):
        x = np.array(np.zeros((64, 28, 28, 1), np.float32))
        if split == "train":
            x[3, 5, 7, 0] = np.nan
        return x

    monkeypatch.setattr(jdata, "load_dataset", load_with_nan)
    config = small_g2d_config(**{"dataset.name": "binarized_mnist",
                                 "model.likelihood": "bernoulli"})
    with pytest.raises(ValueError, match=r"non-finite.*\(3, 5, 7, 0\)"):
        train_and_evaluate(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_evaluate_without_a_run_is_a_clear_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate_cli.main(["--workdir", str(tmp_path)])
    # As a command line: a one-line error and exit status 1, no traceback.
    monkeypatch.setattr(sys, "argv", ["jvae.evaluate", "--workdir", str(tmp_path)])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as info:
        # runpy warns that jvae.evaluate is already imported; running it as __main__ anyway
        # is exactly what `python -m jvae.evaluate` does.
        warnings.simplefilter("ignore", RuntimeWarning)
        runpy.run_module("jvae.evaluate", run_name="__main__")
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "config.json" in err and "jvae.train" in err


@pytest.mark.parametrize("flag, value", [("--num-samples", "0"), ("--chunk-size", "-1"),
                                         ("--batch-size", "0"), ("--block-size", "0"),
                                         ("--limit", "-1"), ("--seed", str(2 ** 32)),
                                         ("--seed", "-1"), ("--epoch", "-2"), ("--split", " "),
                                         ("--num-samples", "2.5")])
def test_evaluate_rejects_bad_flags_naming_them(tmp_path, capsys, flag, value):
    assert evaluate_cli.run(["--workdir", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and flag in err and err.count("\n") == 1, err


def test_public_names_do_not_shadow_submodules():
    """``jvae.evaluate`` once named both the CLI module and a re-exported function: importing
    the module rebound the attribute. No public name may equal a submodule's name."""
    package = pathlib.Path(jvae.__file__).parent
    submodules = {p.stem for p in package.glob("*.py")} | {
        p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert "evaluate" in submodules and "train" in submodules
    assert not set(jvae.__all__) & submodules
