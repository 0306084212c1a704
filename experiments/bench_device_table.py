"""The table of ``experiments/bench_device.py``'s JSON: one row per measurement, one column per
platform and compute dtype, a platform never measured shown as such. The command prints it and
the docs hook (``docs/hooks/data_tables.py``, marker ``bench-device``) renders it on the
benchmarks page. Standard library only, so the docs build does not import JAX for it."""

from __future__ import annotations

#: What ``--only`` selects (``seeds``: every ``seeds_S`` of ``--seeds``).
MEASURES = ("mlp_epoch", "seeds", "is_eval", "conv_dpm2_step", "conv_default_step")
#: Platforms always given a column, measured or not, in this order; others follow.
PLATFORMS = {"cpu": "CPU", "gpu": "GPU"}
GPU_COMMAND = ("pip install -r requirements-cuda.txt && JVAE_DATA_DIR=../shared/data "
               "python -m experiments.bench_device --merge")


def _seed_counts(data: dict) -> list[int]:
    return sorted({int(m.split("_")[1]) for p in data["platforms"].values()
                   for m in p["measurements"] if m.startswith("seeds_")})


TIME, NATS, OTHER = "time", "nats", "other"     # how a row compares dtypes: ratio, difference


def _rows(data: dict) -> list[tuple[str, str, object]]:
    """``(label, kind, value(entry, dtype) -> number | "n/a" | None)`` for each row."""
    def field(measure, key):
        def get(e, d):
            record = e["measurements"].get(measure, {}).get(d, {})
            return "n/a" if "unavailable" in record else record.get(key)
        return get

    def compile_total(e, d):
        parts = [r.get("compile_s", r.get("first_call_s")) for r in
                 (m.get(d, {}) for m in e["measurements"].values()) if "unavailable" not in r]
        return sum(parts) if parts and None not in parts else None

    def largest(e, d):
        sizes = [m.get(d, {}).get("compiled_bytes") for m in e["measurements"].values()]
        sizes = [s for s in sizes if s is not None]
        return max(sizes) / 1e6 if sizes else None

    seeds = _seed_counts(data)
    rows = [("pytorch_example epoch (s)", TIME, field("mlp_epoch", "median_s"))]
    rows += [(f"{s} seed{'s' * (s > 1)}, one vmapped epoch (s)", TIME,
              field(f"seeds_{s}", "median_s")) for s in seeds]
    if len(seeds) > 1:
        lo, hi = seeds[0], seeds[-1]
        rows.append((f"{hi} seeds / {lo} seed{'s' * (lo > 1)} (vmapped epochs)", OTHER,
                     lambda e, d: e["derived"].get(d, {}).get(f"seeds_{hi}_over_seeds_{lo}")))
    rows += [("IS log-likelihood evaluation (s)", TIME, field("is_eval", "median_s")),
             ("IS log-likelihood (nats; the '/ float32' column: the difference)", NATS,
              field("is_eval", "log_likelihood")),
             ("DPM2 CNN VAE training step (s)", TIME, field("conv_dpm2_step", "median_s")),
             ("default conv model training step (s)", TIME,
              field("conv_default_step", "median_s")),
             ("compile (and conv: first step), all programs (s)", TIME, compile_total),
             ("largest compiled program (MB, XLA memory analysis)", OTHER, largest),
             ("peak memory of the whole run (MB)", OTHER,
              lambda e, d: e["memory"]["peak_bytes"] / 1e6 if d == e["dtypes"][0] else None)]
    return rows


def _cell(value, record_unavailable: bool, kind: str = OTHER) -> str:
    if value is None:
        return "n/a" if record_unavailable else ""
    if isinstance(value, (int, float)):
        if kind == NATS:
            return f"{value:.2f}"
        a = abs(value)
        return f"{value:.0f}" if a >= 100 else f"{value:.2f}" if a >= 1 else f"{value:.3g}"
    return str(value)


def _compare(kind: str, value, base) -> str:
    """A dtype's cell against float32's: the ratio of times, the difference in nats."""
    if not all(isinstance(v, (int, float)) for v in (value, base)) or kind == OTHER:
        return ""
    if kind == NATS:
        return f"{value - base:+.3f}"
    return f"{value / base:.2f}" if base > 0 else ""


def _unavailable(entry: dict, dtype: str) -> bool:
    return all("unavailable" in m.get(dtype, {"unavailable": ""})
               for m in entry["measurements"].values())


def _sizes(entry: dict) -> str:
    s = entry["sizes"]
    return (f"{entry['mode']} sizes: epoch on {s['epoch_images']} training images (batch 128), "
            f"the seeds' epochs on {s['seed_images']}, IS evaluation on {s['eval_images']} test "
            f"images with K = {s['ll_samples']}, conv steps at batch {s['conv_batch']} (64x64); "
            f"medians of {s['rounds']} interleaved rounds")


def _eval_params(entry: dict) -> str:
    notes = {r.get("params") for r in entry["measurements"].get("is_eval", {}).values()}
    return ", ".join(sorted(n for n in notes if n)) or "(not recorded)"


def _footer(name: str, entry: dict) -> str:
    reasons = sorted({f"{d}: {r['unavailable']}" for m in entry["measurements"].values()
                      for d, r in m.items() if "unavailable" in r})
    commit = "" if entry.get("commit", "unknown") == "unknown" else f" (commit {entry['commit']})"
    return (f"**{name}**: {', '.join(entry['devices'])} ({entry['device_kind']}), jax "
            f"{entry['jax']}, jaxlib {entry['jaxlib']}, float32 matmul precision "
            f"{entry.get('matmul_precision') or 'the backend default'}; {_sizes(entry)}; "
            "IS at the parameters " + _eval_params(entry) + "; peak memory: "
            f"{entry['memory']['source']}."
            + (f" Not available: {'; '.join(reasons)}." if reasons else "")
            + f" `{entry['command']}`, measured {entry['measured']}{commit} on "
            f"{entry['machine']}, load average {entry['load_average']}.")


def table(data: dict, platforms=None) -> str:
    """Markdown table of ``data`` (``{"platforms": {name: entry}}``); ``platforms``: the columns'
    platforms (default: CPU and GPU, then any other measured)."""
    measured = data["platforms"]
    if platforms is None:
        platforms = list(PLATFORMS) + [p for p in measured if p not in PLATFORMS]
    columns = []                  # (header, entry or None, dtype, compared with float32)
    for p in platforms:
        name = PLATFORMS.get(p, p.upper())
        if p not in measured:
            columns.append((name, None, None, False))
            continue
        dtypes = measured[p]["dtypes"]
        columns += [(f"{name} {d}", measured[p], d, False) for d in dtypes]
        if "float32" in dtypes:
            columns += [(f"{name} {d} / float32", measured[p], d, True) for d in dtypes
                        if d != "float32" and not _unavailable(measured[p], d)]
    lines = ["| measurement | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for label, kind, value in _rows(data):
        cells = ["not yet measured" if e is None else
                 _compare(kind, value(e, d), value(e, "float32")) if versus else
                 _cell(value(e, d), _unavailable(e, d), kind) for _, e, d, versus in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for p in platforms:
        name = PLATFORMS.get(p, p.upper())
        lines.append(_footer(name, measured[p]) if p in measured else
                     f"**{name}**: not yet measured; on a machine with an NVIDIA GPU: "
                     f"`{GPU_COMMAND}`.")
        lines.append("")
    return "\n".join(lines[:-1])
