"""Out-of-core training (``config.dataset.memory_budget``): a training split over the budget
is streamed from its file in compiled chunks of steps, with the in-memory run's parameters bit
for bit; a run stopped mid-epoch resumes to the uninterrupted run's parameters; the prefetch
thread ends on errors; bad budgets are refused in one line."""

import os
import threading

import jax
import numpy as np
import pytest
from PIL import Image

from jvae import default_config, train_and_evaluate
from jvae.data.rows import FolderRows, NpyRows
from jvae.runs import checkpoints, streaming
from jvae.runs.builders import load_data
from jvae.runs.schema import validate_config

SHAPE = (4, 3)


def _pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def _config(name, budget="none", **dataset):
    c = default_config()
    c.dataset.name = name
    c.dataset.validation_size = 16
    c.dataset.train_split, c.dataset.eval_split = "train", "validation"
    c.dataset.memory_budget = budget
    for k, v in dataset.items():
        c.dataset[k] = v
    c.batch_size, c.latent_dim, c.num_epochs = 8, 2, 2
    c.model.encoder_hidden = c.model.decoder_hidden = (8,)
    c.figures = False
    c.eval.ll_samples = 0
    return c


def _run(c, workdir, **kw):
    notes = []
    record = train_and_evaluate(c, workdir, progress=False, log=notes.append, **kw)
    return record, notes


def _final_params(c, workdir):
    """The parameters of the run in ``workdir`` (its last checkpoint), as numpy leaves."""
    from jvae.runs.setup import build_run, initial_state

    datasets, model, optimizer = build_run(c)
    template = initial_state(c, model, optimizer, datasets.train[:1])
    ckpt = checkpoints.Checkpointer(workdir / "checkpoints")
    try:
        state = ckpt.restore_latest(template, warn=False).state
    finally:
        ckpt.close()
    return jax.tree.leaves(jax.tree.map(np.asarray, state.params))


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8))


@pytest.mark.parametrize("drop_last", [True, False])
def test_a_streamed_run_gives_the_in_memory_runs_parameters_bit_for_bit(tmp_path, drop_last):
    np.save(tmp_path / "x.npy", _pixels(116))
    name = f"npy:{tmp_path / 'x.npy'}"
    mem = _config(name, dev_size=4)
    small = _config(name, budget="200", dev_size=4)          # 96 x 12 B > 200 B
    mem.drop_last = small.drop_last = drop_last
    r_mem, notes_mem = _run(mem, tmp_path / "mem")
    r_str, notes_str = _run(small, tmp_path / "str")
    assert not any("streaming" in n for n in notes_mem)
    assert any("streaming the 96 training examples" in n for n in notes_str), notes_str
    # 200 B budget: chunks of 50 B / (8 x 12 B) -> one step each: 12 or 13 chunks, 1 program
    assert r_mem["step"] == r_str["step"] and r_mem["train/loss"] == r_str["train/loss"]
    assert r_mem["eval/elbo"] == r_str["eval/elbo"]
    _same(_final_params(mem, tmp_path / "mem"), _final_params(small, tmp_path / "str"))


def test_chunks_have_at_most_two_lengths_and_cut_at_dev_assessments():
    assert streaming.stream_chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert streaming.stream_chunks(10, 2, every=5) == [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9),
                                                       (9, 10)]
    assert streaming.chunk_steps(8, 12, 10_000, every=6) in (1, 2, 3, 6)
    c = streaming.chunk_steps(8, 12, 10_000, every=6)
    for steps in (13, 24, 37):
        lengths = {b - a for a, b in streaming.stream_chunks(steps, c, 6)}
        assert len(lengths) <= 2


def test_a_streamed_run_with_dev_assessments_matches_in_memory(tmp_path):
    np.save(tmp_path / "x.npy", _pixels(116))
    name = f"npy:{tmp_path / 'x.npy'}"
    kw = dict(dev_size=8)
    mem, small = _config(name, **kw), _config(name, budget="300", **kw)
    for c in (mem, small):
        c.eval.every_steps = 5
    _run(mem, tmp_path / "mem")
    _run(small, tmp_path / "str")
    _same(_final_params(mem, tmp_path / "mem"), _final_params(small, tmp_path / "str"))
    dev = [(tmp_path / d / "dev.jsonl").read_text() for d in ("mem", "str")]
    strip = [[{k: v for k, v in __import__("json").loads(line).items() if k != "dev/seconds"}
              for line in text.splitlines()] for text in dev]
    assert strip[0] == strip[1] and len(strip[0]) > 3


class _Stop(RuntimeError):
    pass


def test_a_run_stopped_mid_epoch_resumes_to_the_uninterrupted_runs_parameters(tmp_path,
                                                                            monkeypatch):
    np.save(tmp_path / "x.npy", _pixels(116))
    name = f"npy:{tmp_path / 'x.npy'}"
    c = _config(name, budget="200")
    c.num_epochs, c.checkpoint_every = 3, 1
    _run(c, tmp_path / "whole")
    reads = {"n": 0}
    original = NpyRows._read

    def failing(self, idx):               # the process dies during epoch 2's sixth chunk
        reads["n"] += 1
        if reads["n"] == 12 + 6:
            raise _Stop("killed")
        return original(self, idx)

    monkeypatch.setattr(NpyRows, "_read", failing)
    with pytest.raises(_Stop):
        _run(c, tmp_path / "cut")
    assert not [t for t in threading.enumerate() if t.name == "jvae-prefetch"]
    monkeypatch.setattr(NpyRows, "_read", original)
    _run(c, tmp_path / "cut", resume=True)
    _same(_final_params(c, tmp_path / "whole"), _final_params(c, tmp_path / "cut"))


def test_the_prefetch_thread_hands_errors_over_and_ends():
    def make(i):
        if i == 2:
            raise ValueError("bad chunk 2")
        return i

    got = []
    with pytest.raises(ValueError, match="bad chunk 2"):
        for x in streaming.Prefetcher(make, range(5)):
            got.append(x)
    assert got == [0, 1]
    assert not [t for t in threading.enumerate() if t.name == "jvae-prefetch"]
    p = streaming.Prefetcher(lambda i: i, range(100))      # consumer stops early
    next(iter(p))
    p.close()
    assert not p.alive


@pytest.mark.parametrize("value, bytes_", [("none", 0), ("0", 0), ("2GB", 2 * 10 ** 9),
                                           ("512MiB", 512 * 2 ** 20), ("1e6", 10 ** 6),
                                           (1000, 1000), ("auto", None)])
def test_budgets_are_parsed(value, bytes_):
    assert streaming.parse_budget(value) == bytes_
    assert streaming.resolve_budget("auto") > 0


@pytest.mark.parametrize("value", ["-1", "lots", "2XB", "0.5", True])
def test_bad_budgets_are_refused_in_one_line(value):
    with pytest.raises(ValueError, match="memory_budget") as e:
        streaming.parse_budget(value)
    assert "\n" not in str(e.value)


def test_a_bad_budget_in_a_config_is_refused_before_anything_runs(tmp_path):
    c = _config(f"npy:{tmp_path / 'x.npy'}", budget="-5MB")
    with pytest.raises(ValueError, match="config.dataset.memory_budget"):
        validate_config(c)


def test_a_split_over_the_budget_that_cannot_be_streamed_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", _pixels(116))
    c = _config(f"npy:{tmp_path / 'x.npy'}", budget="200", binarize="static")
    with pytest.raises(ValueError, match="binarize=static cannot be applied"):
        load_data(c, stored=True, rows=True)
    np.savez(tmp_path / "x.npz", x=_pixels(116))
    c = _config(f"npz:{tmp_path / 'x.npz'}", budget="200")
    with pytest.raises(ValueError, match="only npy:, folder: and tfds: data are streamed"):
        load_data(c, stored=True, rows=True)


def test_npy_rows_are_memory_mapped_and_read_in_any_order(tmp_path):
    u = _pixels(50)
    np.save(tmp_path / "x.npy", u)
    rows = NpyRows(tmp_path / "x.npy")
    assert rows.shape == (50, *SHAPE, 1) and rows.dtype == np.uint8 and rows.nbytes == 600
    idx = np.array([7, 3, 3, 49, 0])
    np.testing.assert_array_equal(rows.read(idx), u[idx][..., None])
    np.testing.assert_array_equal(rows[2:4], u[2:4][..., None])
    with pytest.raises(TypeError, match="read in chunks"):
        np.asarray(rows)
    np.save(tmp_path / "f.npy", np.array([[0.5, np.nan], [0.1, 0.2]]))
    with pytest.raises(ValueError, match="non-finite values.*example 0"):
        NpyRows(tmp_path / "f.npy").read([1, 0])


def test_npy_rows_are_read_by_positioned_reads_equal_to_numpy(tmp_path, monkeypatch):
    """Rows of C-ordered files come from ``os.preadv`` (never through the memory map, whose
    page-cache folios would count in resident memory), a run of consecutive rows in one call;
    a Fortran-ordered file is read through the map."""
    rng = np.random.default_rng(3)
    arrays = {"u8": rng.integers(0, 256, (300, 5, 7), dtype=np.uint8),
              "rgb": rng.integers(0, 256, (120, 4, 4, 3), dtype=np.uint8),
              "f64": rng.random((200, 12)), "f16": rng.random((90, 6)).astype(np.float16),
              "bool": rng.random((80, 3, 3)) > 0.5,
              "fortran": np.asfortranarray(rng.integers(0, 256, (60, 6, 5), dtype=np.uint8))}
    mapped = []
    original = NpyRows._read_mapped
    monkeypatch.setattr(NpyRows, "_read_mapped",
                        lambda self, *a: (mapped.append(self.name), original(self, *a))[1])
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
        rows = NpyRows(tmp_path / f"{name}.npy")
        want = a.reshape(rows.shape).astype(rows.dtype)
        n = len(a)
        for idx in (np.arange(n), rng.permutation(n), rng.integers(0, n, 500), np.arange(0),
                    np.arange(10, 20)[::-1], np.r_[np.arange(5), np.arange(3, 9), [0, 0, 0]]):
            got = rows.read(idx)
            assert got.dtype == rows.dtype and got.shape == (len(idx), *rows.shape[1:])
            np.testing.assert_array_equal(got, want[idx], err_msg=f"{name} {idx[:8]}")
    assert set(mapped) == {f"npy:{tmp_path / 'fortran.npy'}"}


def test_a_npy_file_truncated_after_opening_is_named_in_one_line(tmp_path):
    np.save(tmp_path / "x.npy", _pixels(50))
    rows = NpyRows(tmp_path / "x.npy")
    os.truncate(tmp_path / "x.npy", os.path.getsize(tmp_path / "x.npy") - 30)
    np.testing.assert_array_equal(rows.read([0, 1]), _pixels(50)[:2][..., None])
    with pytest.raises(ValueError, match=r"x\.npy: the file ends \d+ bytes short .*truncated"):
        rows.read([3, 49])


def test_folder_rows_decode_each_image_as_the_folder_reader(tmp_path):
    from jvae.data.folder import read_folder

    u = np.random.default_rng(1).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    for i, a in enumerate(u):
        d = tmp_path / "imgs" / ("a" if i < 3 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"{i}.png")
    rows = FolderRows(tmp_path / "imgs")
    whole, labels = read_folder(tmp_path / "imgs")
    assert rows.shape == whole.shape and rows.labels == list(labels)
    idx = np.array([5, 0, 2])
    np.testing.assert_array_equal(rows.read(idx), whole[idx])


def test_a_streamed_folder_run_matches_in_memory(tmp_path):
    u = np.random.default_rng(2).integers(0, 256, (60, 4, 3), dtype=np.uint8)
    (tmp_path / "imgs").mkdir()
    for i, a in enumerate(u):
        Image.fromarray(a).save(tmp_path / "imgs" / f"{i:03d}.png")
    name = f"folder:{tmp_path / 'imgs'}"
    mem, small = _config(name), _config(name, budget="300")
    _run(mem, tmp_path / "mem")
    _, notes = _run(small, tmp_path / "str")
    assert any("streaming the 44 training examples" in n for n in notes), notes
    _same(_final_params(mem, tmp_path / "mem"), _final_params(small, tmp_path / "str"))


def test_two_processes_stream_their_shares_and_train_the_one_process_model(tmp_path):
    """A simulated two-process SLURM job (as tests/test_cluster.py) streaming an npy file:
    both processes end with the parameters of the same run in one process in memory."""
    import subprocess
    import sys

    from tests.test_cluster import DUMP, ROOT, _clean_env, run_slurm_job

    np.save(tmp_path / "x.npy", _pixels(116))
    args = ["--config", str(ROOT / "experiments/configs/pytorch_example.py"), "--noprogress",
            f"--config.dataset.name=npy:{tmp_path / 'x.npy'}",
            "--config.dataset.train_split=train", "--config.dataset.eval_split=validation",
            "--config.dataset.validation_size=20", "--config.batch_size=8",
            "--config.num_epochs=2", "--config.latent_dim=2", "--config.figures=False",
            "--config.eval.ll_samples=0", "--config.model.encoder_hidden=(8,)",
            "--config.model.decoder_hidden=(8,)", "--config.data_parallel=True"]
    outs = run_slurm_job(tmp_path, [*args, "--config.dataset.memory_budget=200",
                                    "--workdir", str(tmp_path / "job")])
    for out in outs:
        assert "streaming the 96 training examples" in out, out[-3000:]
    got = [list(np.load(tmp_path / f"params-{i}.npz").values()) for i in (0, 1)]
    one = subprocess.run([sys.executable, "-c", DUMP.replace("params-", "one-"), str(tmp_path),
                          *args, "--config.dataset.memory_budget=none",
                          "--workdir", str(tmp_path / "one")],
                         env=_clean_env(), cwd=ROOT, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    ref = list(np.load(tmp_path / "one-0.npz").values())
    for a, b, c in zip(got[0], got[1], ref, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)   # (all-reduced gradients)


def test_a_streamed_multi_seed_run_matches_in_memory(tmp_path):
    """Two seeds as one vmapped program: the chunk's batch indices are stacked per seed."""
    np.save(tmp_path / "x.npy", _pixels(116))
    name = f"npy:{tmp_path / 'x.npy'}"
    mem, small = _config(name), _config(name, budget="1000")
    for c in (mem, small):
        c.num_seeds, c.num_epochs = 2, 1
    r_mem, _ = _run(mem, tmp_path / "mem")
    r_str, notes = _run(small, tmp_path / "str")
    assert any("streaming" in n for n in notes)
    assert r_mem["train/loss"] == r_str["train/loss"] and len(r_mem["train/loss"]) == 2
    _same(_final_params(mem, tmp_path / "mem"), _final_params(small, tmp_path / "str"))


class _FakeDataSource:
    """What ``tfds.data_source`` returns: a sequence of example dicts (ArrayRecord-backed)."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, *SHAPE, 1), dtype=np.uint8)
        self.labels = rng.integers(0, 3, n)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i]}


def test_a_streamed_tfds_run_matches_in_memory(tmp_path, monkeypatch):
    from jvae.data import tfds_source

    sources = {"train": _FakeDataSource(96, 3), "test": _FakeDataSource(24, 4)}
    monkeypatch.setattr(tfds_source, "_import_tfds", lambda: None)
    monkeypatch.setattr(tfds_source, "_open", lambda tfds, name, split, data_dir: sources[split])
    tfds_source._read.cache_clear()
    mem, small = _config("tfds:fake"), _config("tfds:fake", budget="500")
    for c in (mem, small):
        c.dataset.eval_split = "test"
    _run(mem, tmp_path / "mem")
    _, notes = _run(small, tmp_path / "str")
    tfds_source._read.cache_clear()
    assert any("streaming the 96 training examples" in n and "tfds:fake" in n for n in notes)
    _same(_final_params(mem, tmp_path / "mem"), _final_params(small, tmp_path / "str"))
