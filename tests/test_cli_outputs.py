"""What a run says when it ends: the closing summary of ``python -m jvae.train`` (the split,
every file with what it is, the next command with a time estimate from the run's own speed),
the progress bar's fields, and ``--resume`` on a finished run. In-process, on the small
gaussian2d config (no data files)."""

import json

import pytest

from jvae.cli import train
from jvae.runs.outputs import progress_fields
from jvae.runs.outputs import (data_noun, describe_outputs, evaluated_split,
                               evaluation_estimate, run_summary)


@pytest.fixture(scope="module")
def finished(small_g2d_config, tmp_path_factory):
    """A 2-epoch gaussian2d run with figures, through the command line with the progress bar
    on; its stdout and stderr."""
    workdir = tmp_path_factory.mktemp("outputs") / "run"
    config = small_g2d_config(num_epochs=2, figures=True, **{"eval.tsne_points": 0})
    out, err = _main(config, workdir, "--progress=True")
    return config, workdir, out, err


def _main(config, workdir, *flags):
    """``jvae.train``'s main with ``config`` (the config file bypassed); (stdout, stderr)."""
    import contextlib
    import io

    loader = train.load_config_file
    train.load_config_file = lambda spec: config.copy_and_resolve_references()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = train.main(["--config=given.py", f"--workdir={workdir}", *flags])
    finally:
        train.load_config_file = loader
    assert rc == 0, err.getvalue()[-2000:]
    return out.getvalue(), err.getvalue()


def test_summary_names_the_split_every_file_and_the_next_step(finished):
    _, workdir, out, _ = finished
    lines = out.splitlines()
    assert lines[0] == "done: epoch 2, step 328"
    assert lines[1] == "  evaluated on the test split (4500 points)"   # 30% of 15000, not images
    assert lines[2].startswith("  train loss ") and ", test ELBO -" in lines[2]
    assert lines[3] == f"  in {workdir}/:"
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in workdir.iterdir()
                     if not p.name.startswith("."))
    listed = [line.split()[0] for line in lines[4:4 + len(present)]]
    assert sorted(listed) == present and listed[:2] == ["config.json", "metrics.jsonl"]
    assert {"samples_2d.png", "curves.png", "steps.jsonl", "checkpoints/"} <= set(listed)
    assert "images" not in out
    nxt = lines[4 + len(present):]
    assert nxt[0] == f"next: python -m jvae.evaluate --workdir {workdir} --num-samples 1000"
    assert nxt[1] == "  importance-sampled log p(x) of the 4500 test points, K = 1000"
    # Two evaluations: the faster one's time per pass, times K (not an upper bound).
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    fastest = min(r["eval/seconds"] for r in records)
    assert f"took {fastest:.2g} s" in nxt[2] and "upper bound" not in nxt[2]
    assert nxt[3] == f"  it writes {workdir / 'eval_test_K1000_epoch2_seed0.json'}"


def test_progress_bar_fields_say_what_they_are(finished):
    _, _, _, err = finished
    assert "train loss " in err and ", test ELBO -" in err
    assert "loss=" not in err and "elbo=" not in err
    record = {"train/loss": 3.0, "eval/elbo": -2.5, "eval/distortion": 2.0}
    assert progress_fields([record], record, "validation") == \
        "train loss 3.00, validation ELBO -2.50"
    ae = {"train/loss_mean": 1.5, "eval/distortion_mean": 4.25}         # autoencoder, seeds
    assert progress_fields([ae], ae, "test") == "train loss 1.50, test distortion 4.25"
    no_eval = {"train/loss": 3.0}                                        # eval.every > 1
    assert progress_fields([no_eval], no_eval, "test") == "train loss 3.00"


def test_resume_of_a_finished_run_trains_nothing_and_keeps_the_figures(finished):
    config, workdir, _, _ = finished
    metrics = (workdir / "metrics.jsonl").read_text()
    (workdir / "curves.png").unlink()
    out, err = _main(config, workdir, "--resume", "--noprogress")
    assert "already finished at epoch 2; nothing to train" in err
    assert "--redraw" in err and err.count("\n") == 1
    assert out.startswith("done: epoch 2, step 328\n")
    assert not (workdir / "curves.png").exists()                         # not redrawn
    assert (workdir / "metrics.jsonl").read_text() == metrics
    out, err = _main(config, workdir, "--resume", "--redraw", "--progress=False")
    assert "already finished at epoch 2; nothing to train (figures redrawn)" in err
    assert (workdir / "curves.png").stat().st_size > 1000
    assert (workdir / "metrics.jsonl").read_text() == metrics


def test_time_estimate_comes_from_the_runs_own_evaluations():
    config = {"eval": {"elbo_samples": 1, "ll_samples": 100}}
    first = {"epoch": 1, "eval/seconds": 4.0, "train/compile_seconds": 9.0}   # compiles
    later = [{"epoch": 2, "eval/seconds": 0.5}, {"epoch": 3, "eval/seconds": 0.4}]
    seconds, how = evaluation_estimate([first, *later], config, 1000)
    assert seconds == pytest.approx(400.0) and "0.4 s" in how and "upper bound" not in how
    # An evaluation with the log-likelihood made 1 + 100 passes.
    ll = {"epoch": 4, "eval/seconds": 10.1, "eval/log_likelihood": -90.0}
    assert evaluation_estimate([first, ll], config, 1000)[0] == pytest.approx(100.0)
    seconds, how = evaluation_estimate([first], config, 10)
    assert seconds == pytest.approx(40.0) and "upper bound" in how
    assert evaluation_estimate([{"epoch": 1}], config, 1000) is None
    # An autoencoder's evaluation (K = 0) is one pass.
    assert evaluation_estimate(later, config, 0)[0] == pytest.approx(0.4)


def test_summary_of_an_image_run_says_images_and_scales_with_k(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"dataset": {"name": "mnist", "eval_split": "validation"},
         "eval": {"elbo_samples": 1, "ll_samples": 0}}))
    records = [{"epoch": 1, "step": 10, "train/loss": 100.0, "eval/elbo": -99.0,
                "eval/seconds": 3.0, "eval/examples": 10000},
               {"epoch": 2, "step": 20, "train/loss": 98.0, "eval/elbo": -97.0,
                "eval/seconds": 0.18, "eval/examples": 10000}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = run_summary(tmp_path, records[-1], num_samples=1000)
    assert "evaluated on the validation split (10000 images)" in text
    assert "validation ELBO -97.00" in text
    assert "of the 10000 validation images, K = 1000" in text
    assert "about 3 minutes of evaluation at this run's speed" in text      # 1000 x 0.18 s
    assert "eval_validation_K1000_epoch2_seed0.json" in text
    assert "about 18 s" in run_summary(tmp_path, records[-1], num_samples=100)


def test_describe_outputs_explains_known_files_and_flags_strangers(tmp_path):
    for name in ("config.json", "latents.png", "new_figure.png", "notes.txt", ".jvae.lock",
                 "eval_test_K5_epoch1_seed0.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoints" / "3").mkdir(parents=True)
    (tmp_path / "checkpoints" / "12").mkdir()
    rows = dict(describe_outputs(tmp_path, "test", "images"))
    assert list(rows)[:2] == ["config.json", "checkpoints/"]
    assert ".jvae.lock" not in rows
    assert rows["checkpoints/"].endswith("newest: epoch 12")
    assert rows["latents.png"] == "posterior means of the test images in the 2-D latent space"
    assert "jvae.evaluate" in rows["eval_test_K5_epoch1_seed0.json"]
    assert rows["new_figure.png"] == "a figure" and rows["notes.txt"] == "not written by jvae"


def test_split_and_noun_of_a_config():
    assert evaluated_split({"dataset": {"name": "mnist", "eval_split": "validation"}}) == \
        "validation"
    # The 2-D data have one held-out split, the test split, whatever eval_split says.
    assert evaluated_split({"dataset": {"name": "gaussian2d", "eval_split": "validation"}}) == \
        "test"
    assert [data_noun(n) for n in ("gaussian2d", "mnist", "cifar10", "tfds:svhn_cropped")] == \
        ["points", "images", "images", "examples"]


def test_summary_of_a_run_without_sizes_or_times_still_reads(tmp_path):
    """A run recorded before ``eval/examples`` existed, evaluated only with --noprogress."""
    (tmp_path / "config.json").write_text(json.dumps({"dataset": {"name": "mnist",
                                                                   "eval_split": "test"}}))
    text = run_summary(tmp_path, {"epoch": 1, "step": 5, "eval/elbo": -90.0}, history=[])
    assert "  evaluated on the test split\n" in text
    assert "importance-sampled log p(x) of the test images, K = 1000" in text
    assert "of the the" not in text and "at this run's speed" not in text
