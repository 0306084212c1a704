"""Timing helpers the benchmarks share: compile ahead of time with the compile seconds apart,
time one call to completion, and run several programs in interleaved rounds.

Interleaving: round ``r`` runs every program once, in an order rotated by ``r``, so that none
always runs first and a slow drift of the host's speed (another job starting) falls on all
programs alike; a benchmark reports the median over rounds (as ``bench_conv.py`` and
``bench_epoch.py`` do).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import jax


def compile_ahead(jitted, *args):
    """``(compiled, seconds)``: ``jitted.lower(*args).compile()`` and its wall time."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def compiled_bytes(compiled) -> int | None:
    """Bytes a compiled program holds while it runs (arguments, outputs and temporaries, less
    donated/aliased buffers) from XLA's memory analysis; ``None`` where the backend gives none."""
    try:
        m = compiled.memory_analysis()
    except Exception:                              # backends without the analysis raise
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def time_call(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn()``, waiting for every array it returns."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def interleaved_rounds(programs: dict[str, Callable[[], object]], rounds: int,
                       log: Callable[[str], None] | None = print) -> dict[str, list[float]]:
    """Run each of ``programs`` (already compiled and warmed up) once per round, the order
    rotated every round; returns each program's seconds, one per round."""
    names = list(programs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(programs[name]))
        if log:
            log(f"# round {r + 1}/{rounds}, load {_load():.2f}: "
                + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names))
    return times


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
