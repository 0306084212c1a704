"""A run's scalars in TensorBoard (``config.tensorboard``, :mod:`jvae.runs.tensorboard`),
read back with TensorBoard's own event reader.

The round trip needs the optional packages ``tensorboardX`` (the writer) and ``tensorboard``
(the reader): ``pip install 'jvae[tensorboard]'`` (the ``dev`` extra has them); without them
those tests skip and say so.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys

import numpy as np
import pytest

from jvae.runs import read_metrics, train_and_evaluate
from jvae.runs.steplog import DEV_FILE, STEPS_FILE, read_jsonl
from jvae.runs.tensorboard import TB_DIR, check_available, scalars

_MISSING = [name for name in ("tensorboardX", "tensorboard")
            if importlib.util.find_spec(name) is None]
needs_tensorboard = pytest.mark.skipif(
    bool(_MISSING), reason=f"{' and '.join(_MISSING)} not installed: pip install "
    "'jvae[tensorboard]' (tensorboardX>=2.6 writes the events, tensorboard>=2.15 reads them)")


def _config(small_g2d_config):
    """2 epochs of 8 steps (640 points, 128 of them the dev split, batch 64), the dev split
    assessed every 4 steps."""
    return small_g2d_config(**{"num_epochs": 2, "tensorboard": True, "checkpoint_every": 1,
                               "dataset.limit_train": 640, "dataset.dev_size": 128,
                               "eval.every_steps": 4})


def _events(workdir, run: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(workdir / TB_DIR / run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for tag, value in scalars(r).items():
            out.setdefault(tag, []).append((r["step"], float(np.float32(value))))
    return out


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        np.testing.assert_array_equal([v for _, v in got[tag]], [v for _, v in want[tag]])


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory, small_g2d_config):
    if _MISSING:
        pytest.skip(needs_tensorboard.kwargs["reason"])
    workdir = tmp_path_factory.mktemp("tb") / "run"
    train_and_evaluate(_config(small_g2d_config), workdir, progress=False,
                       log=lambda line: None)
    return workdir


@needs_tensorboard
def test_events_hold_the_records_of_the_three_files(tb_run):
    metrics = read_metrics(tb_run)
    assert [r["epoch"] for r in metrics] == [1, 2]
    got = _events(tb_run, "epochs")
    assert {"train/loss", "eval/elbo", "eval/rate", "train/seconds"} <= set(got)
    _assert_same(got, _expected(metrics))
    steps = read_jsonl(tb_run / STEPS_FILE)
    assert [r["step"] for r in steps] == list(range(1, 17))
    _assert_same(_events(tb_run, "steps"), _expected(steps))
    dev = read_jsonl(tb_run / DEV_FILE)
    assert [r["step"] for r in dev] == [0, 4, 8, 12, 16]
    _assert_same(_events(tb_run, "dev"), _expected(dev))


@needs_tensorboard
def test_a_resumed_run_hides_the_points_past_its_checkpoint(tb_run, tmp_path,
                                                            small_g2d_config):
    """The run cut back to its epoch-1 checkpoint (as if killed during epoch 2) and resumed:
    TensorBoard shows each step once, the resumed run's values."""
    workdir = tmp_path / "run"
    shutil.copytree(tb_run, workdir)
    shutil.rmtree(workdir / "checkpoints" / "2")
    notes = []
    train_and_evaluate(_config(small_g2d_config), workdir, resume=True, progress=False,
                       log=notes.append)
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2] and not notes
    assert read_jsonl(workdir / STEPS_FILE)[8]["step"] == 9          # epoch 2 written again
    assert len(list((workdir / TB_DIR / "epochs").iterdir())) == 2      # a second event file
    _assert_same(_events(workdir, "epochs"), _expected(read_metrics(workdir)))
    _assert_same(_events(workdir, "steps"), _expected(read_jsonl(workdir / STEPS_FILE)))


def test_off_by_default_and_a_missing_writer_is_one_line(monkeypatch):
    from jvae.runs.defaults import default_config

    assert default_config().tensorboard is False
    check_available(False)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)     # import now fails
    with pytest.raises(ImportError, match=r"config.tensorboard is on but tensorboardX is not "
                                          r"installed: pip install 'jvae\[tensorboard\]'"):
        check_available(True)


def test_scalars_of_a_record():
    record = {"epoch": 3, "step": 30, "train/loss": 2.5, "eval/elbo": [-1.0, -2.0],
              "eval/elbo_mean": -1.5, "eval/elbo_std": 0.5, "seeds": [0, 1],
              "sweep/beta": [1.0, 2.0], "dev/ok": True, "note": "x"}
    assert scalars(record) == {"train/loss": 2.5, "eval/elbo/0": -1.0, "eval/elbo/1": -2.0,
                               "eval/elbo_mean": -1.5, "eval/elbo_std": 0.5}
