"""A run written by jvae 0.1.0, before the package moved into layers, still restores: its
config.json loads, its checkpoint verifies, and the parameters are bit-identical to those the
release itself restored (tests/data/run_0.1.0, see its README)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil

import jax
import numpy as np

import jvae

RUN = pathlib.Path(__file__).resolve().parent / "data" / "run_0.1.0"


def test_a_run_of_the_previous_release_restores_bit_identically(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(RUN, workdir)        # restoring may write nothing, but never into tests/
    config, datasets, model, state = jvae.restore_run(workdir)
    assert config.dataset.name == "gaussian2d" and int(config.num_epochs) == 2
    assert int(state.step) == 20 and datasets.train.shape == (1400, 2)
    # What the release restored, leaf by leaf: dtype, shape and the SHA-256 of its bytes.
    expected = json.loads((RUN / "params_sha256.json").read_text())
    restored = {jax.tree_util.keystr(p): np.ascontiguousarray(np.asarray(v))
                for p, v in jax.tree_util.tree_leaves_with_path(state.params)}
    assert sorted(restored) == sorted(expected)
    for name, leaf in expected.items():
        value = restored[name]
        assert (str(value.dtype), list(value.shape)) == (leaf["dtype"], leaf["shape"]), name
        assert hashlib.sha256(value.tobytes()).hexdigest() == leaf["sha256"], name
    assert [r["epoch"] for r in jvae.read_metrics(workdir)] == [1, 2]
