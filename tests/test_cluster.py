"""Joining a cluster's job with JAX's own runtime (:mod:`jvae.runs.cluster`).

No cluster runs here: the environment of a SLURM job step of 2 tasks on one node is simulated
(``SLURM_*`` with ``SLURM_STEP_NODELIST=localhost``; ``JAX_COORDINATOR_PORT`` picks a free
port instead of the one JAX derives from the job id), and two processes of the training
command find the job through ``jax.distributed.initialize()`` with no arguments. Each reads
half of the 512 training examples; both end with the same parameters, which are those of
one process training on all of them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jvae.cli import launch
from jvae.runs.cluster import ClusterJob, detect_cluster, join_job

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_ARGS = [
    "--config", str(ROOT / "experiments/configs/gaussian2d.py"), "--noprogress",
    "--config.data_parallel=True", "--config.num_epochs=2", "--config.checkpoint_every=0",
    "--config.dataset.limit_train=512", "--config.dataset.limit_eval=256",
    "--config.batch_size=64", "--config.eval.batch_size=256", "--config.eval.ll_samples=0",
    "--config.model.encoder_hidden=(16,)", "--config.model.decoder_hidden=(16,)",
    "--config.figures=False",
]
# python -m jvae.train's own main(), which also saves each process's final parameters.
DUMP = ("import sys, jax, numpy as np\n"
        "from jvae.runs import loop\n"
        "from jvae.cli.train import main\n"
        "finish = loop.finish_run\n"
        "def dump(run, state, history):\n"
        "    leaves = jax.tree.leaves(jax.tree.map(np.asarray, state.params))\n"
        "    np.savez(f'{sys.argv[1]}/params-{jax.process_index()}.npz', *leaves)\n"
        "    finish(run, state, history)\n"
        "loop.finish_run = dump\n"
        "sys.exit(main(sys.argv[2:]))\n")
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
         "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}


def _clean_env(**extra) -> dict:
    """This environment without any job's variables, plus ``extra``; the session's XLA
    cache as tests/test_launch.py passes it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JVAE_", "SLURM_", "OMPI_", "JAX_COORDINATOR", "JAX_NUM_",
                                "JAX_PROCESS_", "TPU_", "MEGASCALE_"))}
    env.update(PYTHONPATH=str(ROOT), XLA_FLAGS=os.environ.get("XLA_FLAGS", ""),
               JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.update(extra)
    return env


def run_slurm_job(dump_dir: pathlib.Path, args: list[str]) -> list[str]:
    """Run ``python -m jvae.train ARGS`` (with :data:`DUMP`, saving each process's final
    parameters in ``dump_dir``) as the 2 tasks of a simulated SLURM job step; both must exit
    0. Returns each process's output."""
    port, procs = launch.free_port(), []
    for rank in (0, 1):
        env = _clean_env(**{**SLURM, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                         JAX_COORDINATOR_PORT=str(port), JVAE_INIT_TIMEOUT="60")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", DUMP, str(dump_dir), *args], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@pytest.fixture(scope="module")
def slurm_job(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    workdir = base / "run"
    t0 = time.perf_counter()
    outs = run_slurm_job(base, [*TRAIN_ARGS, "--workdir", str(workdir)])
    print(f"2 processes (simulated SLURM job): {time.perf_counter() - t0:.1f} s")
    return base, workdir, outs


def test_slurm_job_two_processes_each_read_half_and_agree(slurm_job):
    base, workdir, outs = slurm_job
    assert "note: process 0 of 2 reads training examples 0...255 of 512" in outs[0], outs[0]
    assert "note: process 1 of 2 reads training examples 256...511 of 512" in outs[1], outs[1]
    assert "done: epoch 2, step 16" in outs[0]
    got = [list(np.load(base / f"params-{i}.npz").values()) for i in (0, 1)]
    for a, b in zip(*got, strict=True):
        np.testing.assert_array_equal(a, b)         # one model, held by both processes
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2                          # written once, by process 0


def test_the_shares_together_train_as_one_process_on_all_examples(slurm_job, tmp_path):
    """The same run in this single process (one device, all 512 examples replicated)."""
    from jvae.cli.train import build_config, parse_args
    from jvae.runs import loop, setup
    from jvae.training import sharding

    base, _, _ = slurm_job
    kept = {}
    finish = loop.finish_run
    loop.finish_run = lambda run, state, history: kept.update(params=state.params)
    try:
        config = build_config(*parse_args([*TRAIN_ARGS, "--workdir", str(tmp_path)]))
        loop.train_and_evaluate(config, tmp_path, progress=False, log=lambda line: None)
    finally:
        loop.finish_run = finish
    ref = jax.tree.leaves(sharding.to_host(kept["params"]))
    got = list(np.load(base / "params-0.npz").values())
    datasets, model, optimizer = setup.build_run(config)
    init = jax.tree.leaves(setup.initial_state(config, model, optimizer,
                                               datasets.train[:1]).params)
    for a, b, c in zip(ref, got, init, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert max(float(np.max(np.abs(b - np.asarray(c)))) for b, c in zip(got, init)) > 1e-3


# ------------------------------------------------------------------ detection from variables


@pytest.mark.parametrize("env, job", [
    ({}, None),
    (SLURM, ClusterJob("slurm", 2, 0)),
    ({**SLURM, "SLURM_PROCID": "1"}, ClusterJob("slurm", 2, 1)),
    ({**SLURM, "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"}, None),
    ({**SLURM, "SLURM_STEP_NUM_TASKS": "1"}, None),       # sbatch script outside srun
    ({k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}, None),   # salloc shell
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3",
      "OMPI_MCA_orte_hnp_uri": "1:tcp://10.0.0.1:5000"}, ClusterJob("ompi", 4, 3)),
    ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_MCA_orte_hnp_uri": "x"}, None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     ClusterJob("jax", 2, 1, "h:1234")),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"},
     None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234", **SLURM}, ClusterJob("slurm", 2, 0)),
    ({"TPU_WORKER_HOSTNAMES": "w0,w1"}, ClusterJob("tpu")),
    ({"TPU_WORKER_HOSTNAMES": "w0"}, None),
    ({"JVAE_DISTRIBUTED": "never", **SLURM}, None),
    ({"JVAE_DISTRIBUTED": "always"}, ClusterJob("always")),
])
def test_detect_cluster(env, job):
    assert detect_cluster(env) == job


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     "JAX_NUM_PROCESSES, JAX_PROCESS_ID set but not JAX_COORDINATOR_ADDRESS"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     r"JAX_PROCESS_ID=2 must be in \[0, JAX_NUM_PROCESSES=2\)"),
    ({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     "JAX_COORDINATOR_ADDRESS='h' must be HOST:PORT"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_COORDINATOR_ADDRESS is set but neither"),
    ({**SLURM, "SLURM_NTASKS": "two"}, "SLURM_NTASKS='two' is not an integer"),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI job of 2 processes .* JAX_PROCESS_ID="
                                    r"\$OMPI_COMM_WORLD_RANK"),
    ({"JVAE_DISTRIBUTED": "yes"}, "JVAE_DISTRIBUTED='yes' must be auto, always or never"),
])
def test_bad_cluster_variables_are_one_line_errors(env, message):
    with pytest.raises(ValueError, match=message):
        detect_cluster(env)


def test_jvae_launch_variables_come_first():
    env = {"JVAE_NUM_PROCESSES": "1", **SLURM}    # jvae.launch -n 1 inside a SLURM step
    assert join_job(env) is False                 # the launcher's single process: no job
    assert jax.process_count() == 1
