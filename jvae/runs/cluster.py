"""Joining a cluster's multi-process job with JAX's own runtime (SLURM, Open MPI, TPU pods).

``python -m jvae.train`` calls :func:`join_job` before any JAX computation. It chooses, from
the environment alone, one of:

- the ``JVAE_*`` variables of ``python -m jvae.launch`` (one machine):
  :func:`jvae.runs.distributed.initialize_from_env`;
- JAX's own variables ``JAX_COORDINATOR_ADDRESS`` (``HOST:PORT``), ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` (any launcher; e.g. ``mpirun`` of Open MPI 5, whose environment JAX does
  not detect): ``jax.distributed.initialize(address, num_processes, process_id)``;
- a cluster that JAX detects by itself, ``jax.distributed.initialize()`` with no arguments:
  SLURM (``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``, ``SLURM_PROCID``,
  ``SLURM_LOCALID`` all set, the variables JAX 0.10's ``jax/_src/clusters/slurm_cluster.py``
  reads) with more than one task in the step; Open MPI 4 and older
  (``OMPI_MCA_orte_hnp_uri``, ``ompi_cluster.py``) with ``OMPI_COMM_WORLD_SIZE > 1``; a TPU
  pod on GKE (``TPU_WORKER_HOSTNAMES`` or ``TPU_PROCESS_ADDRESSES`` listing several hosts,
  or ``MEGASCALE_NUM_SLICES > 1``);
- nothing (one process).

``JVAE_DISTRIBUTED`` overrides the choice: ``auto`` (the default: as above), ``always``
(``jax.distributed.initialize()`` even where jvae sees no job: Cloud TPU VM pods, whose
workers JAX finds through the metadata server, Kubernetes, ``mpi4py``) or ``never``.
``JVAE_INIT_TIMEOUT`` (seconds) is passed on as ``initialization_timeout``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["ClusterJob", "detect_cluster", "initialize_cluster", "join_job", "ENV_MODE"]

ENV_MODE = "JVAE_DISTRIBUTED"
_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
          "SLURM_LOCALID")
_JAX = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class ClusterJob(NamedTuple):
    """A multi-process job described by the environment (:func:`detect_cluster`).

    Attributes:
      kind: ``"jax"`` (the ``JAX_*`` variables), ``"slurm"``, ``"ompi"``, ``"tpu"`` or
        ``"always"`` (``JVAE_DISTRIBUTED=always``).
      num_processes: the job's process count where the environment says it (else ``None``:
        JAX finds it).
      process_id: this process's rank, or ``None`` as above.
      coordinator: ``HOST:PORT`` for ``kind="jax"``; ``None`` (JAX derives it) otherwise.
    """

    kind: str
    num_processes: int | None = None
    process_id: int | None = None
    coordinator: str | None = None

    def describe(self) -> str:
        """e.g. ``a slurm job (process 1 of 4)``."""
        where = (f" (process {self.process_id} of {self.num_processes})"
                 if self.num_processes is not None else "")
        return f"a {self.kind} job{where}"


def detect_cluster(environ=None) -> ClusterJob | None:
    """The multi-process job the environment describes, or ``None`` (one process).

    The ``JVAE_*`` variables of ``jvae.launch`` are not looked at here (:func:`join_job`
    checks them first). Reads only ``environ``; starts nothing.

    Args:
      environ: the variables (default ``os.environ``).

    Raises:
      ValueError: a variable is malformed or the ``JAX_*`` set is incomplete (one line,
        naming the variable).
    """
    env = os.environ if environ is None else environ
    mode = env.get(ENV_MODE, "auto").strip().lower() or "auto"
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"{ENV_MODE}={env[ENV_MODE]!r} must be auto, always or never.")
    if mode == "never":
        return None
    if "JAX_NUM_PROCESSES" in env or "JAX_PROCESS_ID" in env:
        return _jax_job(env)
    if all(name in env for name in _SLURM):
        tasks = _int(env, "SLURM_NTASKS")
        # An sbatch script outside srun has SLURM_NTASKS of the allocation but a batch step
        # of one task: that is one process, not a job to join.
        if min(tasks, _int(env, "SLURM_STEP_NUM_TASKS", str(tasks))) > 1:
            return ClusterJob("slurm", tasks, _int(env, "SLURM_PROCID"))
    size = _int(env, "OMPI_COMM_WORLD_SIZE", "1")
    if size > 1:
        if "OMPI_MCA_orte_hnp_uri" not in env:
            raise ValueError(
                f"an Open MPI job of {size} processes (OMPI_COMM_WORLD_SIZE) that JAX cannot "
                "join by itself (no OMPI_MCA_orte_hnp_uri: Open MPI 5 or later); set "
                "JAX_COORDINATOR_ADDRESS=HOST:PORT, JAX_NUM_PROCESSES=$OMPI_COMM_WORLD_SIZE "
                "and JAX_PROCESS_ID=$OMPI_COMM_WORLD_RANK.")
        return ClusterJob("ompi", size, _int(env, "OMPI_COMM_WORLD_RANK", "0"))
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1 or _int(
            env, "MEGASCALE_NUM_SLICES", "1") > 1:
        return ClusterJob("tpu")
    if mode == "always":
        return ClusterJob("always")
    if "JAX_COORDINATOR_ADDRESS" in env:
        raise ValueError("JAX_COORDINATOR_ADDRESS is set but neither JAX_NUM_PROCESSES and "
                         "JAX_PROCESS_ID nor a SLURM or Open MPI job: set all three JAX_* "
                         "variables, or unset it to run one process.")
    return None


def initialize_cluster(environ=None) -> bool:
    """Join the job :func:`detect_cluster` finds, if any; True when this process joined one.

    Calls ``jax.distributed.initialize()`` with no arguments (JAX reads the cluster's
    variables itself), or with the ``JAX_*`` values; on CPU it selects gloo for the
    cross-process collectives first (as :func:`jvae.runs.distributed.initialize_from_env`).

    Raises:
      ValueError: see :func:`detect_cluster`.
      RuntimeError: JAX could not join the job (one line, naming the job and JAX's reason).
    """
    env = os.environ if environ is None else environ
    job = detect_cluster(env)
    if job is None:
        return False
    kwargs = {}
    if job.kind == "jax":
        kwargs = dict(coordinator_address=job.coordinator, num_processes=job.num_processes,
                      process_id=job.process_id)
    if "JVAE_INIT_TIMEOUT" in env:
        kwargs["initialization_timeout"] = _int(env, "JVAE_INIT_TIMEOUT")
    import jax

    if jax.config.values.get("jax_cpu_collectives_implementation") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - jaxlib raises XlaRuntimeError, ValueError and others
        first = " ".join(str(e).split())[:300]
        raise RuntimeError(f"could not join {job.describe()} with jax.distributed.initialize "
                           f"({type(e).__name__}: {first}); {ENV_MODE}=never runs this "
                           "process alone.") from e
    return jax.process_count() > 1


def join_job(environ=None) -> bool:
    """Join the multi-process job the environment describes: ``jvae.launch``'s ``JVAE_*``
    variables first (:func:`jvae.runs.distributed.initialize_from_env`), else a cluster's
    (:func:`initialize_cluster`). Must run before any JAX computation; True when this
    process is one of several."""
    from jvae.runs.distributed import ENV_NUM_PROCESSES, initialize_from_env

    env = os.environ if environ is None else environ
    if ENV_NUM_PROCESSES in env:
        return initialize_from_env(env)
    return initialize_cluster(env)


def _jax_job(env) -> ClusterJob | None:
    missing = [name for name in _JAX if name not in env]
    if missing:
        given = [name for name in _JAX if name in env]
        raise ValueError(f"{', '.join(given)} set but not {', '.join(missing)}: set all three "
                         "JAX_* variables (or none, to let JAX detect a SLURM or Open MPI job).")
    num = _int(env, "JAX_NUM_PROCESSES")
    pid = _int(env, "JAX_PROCESS_ID")
    address = env["JAX_COORDINATOR_ADDRESS"].strip()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"JAX_COORDINATOR_ADDRESS={address!r} must be HOST:PORT.")
    if num < 1 or not 0 <= pid < num:
        raise ValueError(f"JAX_PROCESS_ID={pid} must be in [0, JAX_NUM_PROCESSES={num}).")
    return ClusterJob("jax", num, pid, address) if num > 1 else None


def _int(env, name: str, default: str | None = None) -> int:
    raw = env.get(name, default)
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer.") from None
