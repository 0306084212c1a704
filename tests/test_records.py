"""A run's records always match the state it continues from (jvae.runs.records.cut_records).

The step, dev and metrics logs of a run that stopped after its last checkpoint, or of an
earlier run in a directory without checkpoints, must not survive next to the lines the
continuing run writes again. Small gaussian2d runs (1000 training points, batch 64, 15 steps
per epoch, a 200-point dev split assessed every 6 steps), in-process.
"""

import json
import shutil

import pytest

from jvae.runs import read_metrics, train_and_evaluate
from jvae.runs.records import cut_records
from jvae.runs.steplog import DEV_FILE, STEPS_FILE, read_jsonl

STEPS = (1000 - 200) // 64          # 12 steps per epoch


@pytest.fixture(scope="module")
def config(small_g2d_config):
    def make(**changes):
        return small_g2d_config(**{"num_epochs": 2, "checkpoint_every": 1,
                                   "dataset.limit_train": 1000, "dataset.limit_eval": 500,
                                   "dataset.dev_size": 200, "eval.every_steps": 6, **changes})
    return make


def _records(workdir):
    """Every record of the three logs without its timings (which differ run to run)."""
    def strip(rows):
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]
    return {name: strip(read_jsonl(workdir / name))
            for name in ("metrics.jsonl", STEPS_FILE, DEV_FILE)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config):
    workdir = tmp_path_factory.mktemp("records") / "reference"
    train_and_evaluate(config(), workdir, progress=False)
    return workdir, _records(workdir)


def _dead_run_lines(workdir):
    """What a run killed in its first epoch, before any checkpoint, leaves behind."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / STEPS_FILE).write_text("".join(json.dumps({"step": s, "epoch": 1,
                                                          "train/loss": 99.0}) + "\n"
                                              for s in range(1, 9)))
    (workdir / DEV_FILE).write_text(json.dumps({"step": 0, "epoch": 0, "dev/elbo": -99.0})
                                    + "\n")
    (workdir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": STEPS}) + "\n")


def test_reference_run_has_one_record_per_step_assessment_and_epoch(reference):
    records = reference[1]
    assert [r["step"] for r in records[STEPS_FILE]] == list(range(1, 2 * STEPS + 1))
    assert [r["step"] for r in records[DEV_FILE]] == [0, 6, 12, 18, 24]
    assert [r["epoch"] for r in records["metrics.jsonl"]] == [1, 2]


@pytest.mark.parametrize("resume", [False, True], ids=["restart", "resume-without-checkpoint"])
def test_a_start_without_checkpoint_drops_a_dead_runs_records(reference, config, tmp_path,
                                                              resume):
    workdir = tmp_path / "run"
    _dead_run_lines(workdir)
    train_and_evaluate(config(), workdir, resume=resume, progress=False)
    assert _records(workdir) == reference[1]


def test_a_resume_cuts_every_log_back_to_the_restored_checkpoint(reference, config, tmp_path):
    """Epoch 2's checkpoint is lost (the kill came during its write): its records, written
    before it, are dropped and written again from epoch 1's state."""
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    shutil.rmtree(workdir / "checkpoints" / "2")
    train_and_evaluate(config(), workdir, resume=True, progress=False)
    assert _records(workdir) == reference[1]


def test_cut_records_keeps_what_the_checkpoint_holds(tmp_path):
    _dead_run_lines(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "step": 2 * STEPS}) + "\n")
    history = cut_records(tmp_path, 1, 5)
    assert history == [{"epoch": 1, "step": STEPS}]
    assert [r["step"] for r in read_jsonl(tmp_path / STEPS_FILE)] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in read_jsonl(tmp_path / DEV_FILE)] == [0]
    assert cut_records(tmp_path, 0, 0) == []            # a fresh start keeps nothing
    assert not (tmp_path / STEPS_FILE).exists() and not (tmp_path / DEV_FILE).exists()
    assert read_metrics(tmp_path) == []
