"""The XLA CPU miscompilation of jaxlib 0.10 (tests/tools/xla_reduce_fusion_repro.py) and jvae's
workaround (jvae/xla.py): a jvae process computes the reproduction correctly at XLA's default
flags; the reproduction does find the bug where jaxlib has it and the workaround is off (so
the first test fails on an affected, unmitigated setting); and the workaround's decisions."""

import os
import pathlib
import subprocess
import sys

import jaxlib
import pytest

import jvae
from jvae import xla

ROOT = pathlib.Path(__file__).resolve().parents[1]
AFFECTED = (0, 10) <= tuple(int(p) for p in jaxlib.__version__.split(".")[:2]) < (0, 11)
REPRO = "from tests.tools.xla_reduce_fusion_repro import main; raise SystemExit(main() > 0)"


def _run(code: str, **env) -> subprocess.CompletedProcess:
    """``python -c code`` from the repository root with XLA's default flags (the suite's
    optimisation level 0 removed) and ``env`` added."""
    full = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, text=True,
                          capture_output=True, timeout=600)


def test_a_jvae_process_compiles_the_reproduction_correctly():
    """What jvae ships: ``import jvae`` first, then the reproduction at default flags. Fails
    on jaxlib 0.10 with ``JVAE_XLA_WORKAROUND=off`` in the environment (or without the
    workaround): the unmitigated setting."""
    proc = _run("import jvae; " + REPRO)
    assert proc.returncode == 0, f"wrong outputs in a jvae process:\n{proc.stdout}{proc.stderr}"
    assert "0 of 50000 outputs wrong" in proc.stdout, proc.stdout


def test_the_reproduction_finds_the_bug_where_jaxlib_has_it():
    """Without jvae and without the flag: wrong outputs on jaxlib 0.10 (the reproduction is
    live, so the test above can fail), none on the other supported jaxlib (0.12)."""
    proc = _run(REPRO)
    assert proc.returncode == (1 if AFFECTED else 0), proc.stdout + proc.stderr
    if AFFECTED:
        assert "17495 of 50000 outputs wrong" in proc.stdout, proc.stdout


def test_a_jvae_process_with_the_workaround_off_is_caught_where_jaxlib_has_it():
    """The unmitigated setting, as a user gets it with ``JVAE_XLA_WORKAROUND=off``: jvae
    imported, its workaround disabled. On jaxlib 0.10 the reproduction finds wrong outputs
    (what the first test would see without the workaround); on jaxlib 0.12 none."""
    proc = _run("import jvae; assert jvae.xla_workarounds().state == "
                f"{'disabled' if AFFECTED else 'not needed'!r}; " + REPRO,
                JVAE_XLA_WORKAROUND="off")
    assert proc.returncode == (1 if AFFECTED else 0), proc.stdout + proc.stderr
    if AFFECTED:
        assert "17495 of 50000 outputs wrong" in proc.stdout, proc.stdout


def test_the_status_of_this_process():
    status = jvae.xla_workarounds()
    assert status.jaxlib_version == jaxlib.__version__ and status.needed == AFFECTED
    # The suite imports jvae before any computation: the flag is in place where needed.
    assert status.state == ("applied" if AFFECTED else "not needed")
    assert (xla.YNN_REDUCE_FLAG in os.environ.get("XLA_FLAGS", "")) == AFFECTED


@pytest.mark.parametrize("version, flags, switch, started, state", [
    ("0.10.2", "", "", False, "applied"),
    ("0.10.2", "--xla_backend_optimization_level=0", "", False, "applied"),
    ("0.10.2", "", "off", False, "disabled"),
    ("0.10.2", "--xla_cpu_experimental_ynn_fusion_type=", "", False, "user flag"),
    ("0.10.2", "", "", True, "too late"),
    ("0.12.1", "", "", False, "not needed"),
    ("0.11.0", "", "", True, "not needed"),
])
def test_decisions(version, flags, switch, started, state):
    got, new_flags = xla._decide(version, flags, switch, started)
    assert got == state
    if state == "applied":
        assert new_flags.split() == flags.split() + [xla.YNN_REDUCE_FLAG]
    else:
        assert new_flags == flags


def test_too_late_is_a_one_line_warning(monkeypatch):
    """In this process JAX's backend has started: on an affected jaxlib, jvae can only warn."""
    import jax.numpy as jnp
    from jaxlib import version

    jnp.ones(2).block_until_ready()                 # the backend has started
    monkeypatch.setattr(version, "__version__", "0.10.2")
    monkeypatch.delenv(xla.WORKAROUND_ENV, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    with pytest.warns(xla.XLAWorkaroundWarning, match="import jvae before") as caught:
        status = xla._apply()
    assert status == xla.XLAWorkaround("0.10.2", True, "too late")
    assert "\n" not in str(caught[0].message)
    assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=0"
