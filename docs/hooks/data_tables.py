"""MkDocs hook: tables generated from ``docs/data/*.json``, so no number on a page is typed.

A page holds a marker line ``<!-- table: NAME -->``; the build replaces it with the table
that :data:`TABLES` renders for ``NAME`` from its data file. ``reliability-probe`` and
``kill-resume`` read ``docs/data/reliability.json``, written by ``python -m
tests.tools.probe_faults --record docs/data/reliability.json`` and ``python -m
tests.tools.kill_resume --record docs/data/reliability.json``; ``bench-epoch``,
``bench-seeds``, ``bench-conv`` and ``bench-memory`` read the ``--json`` file of
``experiments/bench_epoch.py``, ``bench_seeds.py``, ``bench_conv.py`` and ``bench_memory.py``
(``docs/data/bench_*.json``); ``bench-device`` renders ``docs/data/bench_device.json`` with
``experiments/bench_device_table.py``, the table that ``python -m experiments.bench_device``
prints. An unknown marker, or a data file without the key a table needs, fails the build.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from hook_common import DATA, load as _data, project_on_path, row as _row  # noqa: E402,F401
MARKER = re.compile(r"^<!-- table: ([a-z0-9-]+) -->$", re.MULTILINE)
#: The probe's verdicts, in the order of the table's columns.
VERDICTS = ("clear error", "ok", "unclear error", "internal exception", "silent wrong result",
            "records lost or duplicated", "hang", "probe failure")
SETS = {"old": "first probe's cases", "new": "issue 28's cases"}


def _load(key: str) -> dict:
    data = json.loads((DATA / "reliability.json").read_text())
    if key not in data:
        raise KeyError(f"docs/data/reliability.json has no {key!r}: run its --record command")
    return data[key]


def probe_table(summary: dict) -> str:
    """Counts per verdict of each case set of ``tests/tools/probe_faults.py``'s record."""
    counts = summary["counts"]
    others = sorted({v for c in counts.values() for v in c} - set(VERDICTS))
    columns = [*VERDICTS, *others]
    lines = [_row(["cases", "total", *columns]), _row(["---"] * (len(columns) + 2))]
    for name, per in counts.items():
        lines.append(_row([SETS.get(name, name), sum(per.values()),
                           *(per.get(v, 0) for v in columns)]))
    lines.append("")
    lines.append(f"Measured {summary['measured']} with `{summary['command']}`; "
                 f"{summary['faults']} of the cases are faults (signals, kills, records, "
                 f"launched jobs, damaged files, disks); "
                 f"{len(summary['not_ok'])} cases neither a clear error nor ok.")
    return "\n".join(lines)


def kill_resume_table(summary: dict) -> str:
    """One row per stop of ``tests/tools/kill_resume.py``'s record."""
    lines = [_row(["signal", "moment", "caught", "exit (expected)", "resume hint",
                   "checkpoints at the stop", "state", "records (lines)"]),
             _row(["---"] * 8)]
    for r in summary["rows"]:
        same = r.get("records_identical", {})
        records = ", ".join(f"{name} {'identical' if ok else 'DIFFERENT'} "
                            f"({r['record_counts'][name]})" for name, ok in same.items())
        lines.append(_row([
            r["signal"], r["moment"], r["caught"], f"{r['exit']} ({r['exit_expected']})",
            "yes" if r["hint"] else "NO", ", ".join(map(str, r["checkpoints_at_stop"]))
            or "none", "identical" if r.get("state_identical") else "DIFFERENT",
            records or f"resume failed: {r.get('resume_error')}"]))
    lines.append("")
    lines.append(f"Measured {summary['measured']} with `{summary['command']}`: "
                 f"{summary['identical']}/{summary['stops']} stopped and resumed runs identical "
                 f"to the uninterrupted run, whose logs hold "
                 + ", ".join(f"{n} {name}" for name, n in
                             summary["reference_records"].items()) + " records.")
    return "\n".join(lines)


def _f(v) -> str:
    return "" if v is None else f"{v:.2f}"


def dpm2_finished_table(data: dict) -> str:
    """The DPM2 experiment's runs that reached their last step, best dev ELBO first, and the
    control-variate ordering of the NVIL runs among them."""
    rows = sorted(data["rows"], key=lambda r: -r["elbo"])
    lines = [_row(["variant", "what", "steps", "dev ELBO", "D", "R", "L (K=100)",
                   "test ELBO", "mean dev ELBO of the last 5 assessments", "train s",
                   "measured"]),
             _row(["---"] * 11)]
    for r in rows:
        lines.append(_row([f"`{r['variant']}`", r["what"], r["steps"], _f(r["elbo"]),
                           _f(r["distortion"]), _f(r["rate"]), _f(r["log_likelihood"]),
                           _f(r["test_elbo"]), _f(r["elbo_last5"]),
                           f"{r['train_seconds']:.0f}", r.get("measured", data["measured"])]))
    for prefix, name in (("nvil_", "NVIL runs on the mixture posterior"),
                         ("extra_sfe_gaussian_", "score-function runs on the Gaussian "
                                                 "posterior (extras)")):
        group = [r for r in rows if r["variant"].startswith(prefix)]
        if not group:
            continue
        cut = len(prefix)
        lines.append("")
        lines.append(f"The control-variate chains of the finished {name} by final dev ELBO: "
                     + " > ".join(f"`{r['variant'][cut:]}` {_f(r['elbo'])}" for r in group)
                     + "; by the mean of the last five assessments: "
                     + " > ".join(f"`{r['variant'][cut:]}` {_f(r['elbo_last5'])}" for r in
                                  sorted(group, key=lambda r: -r["elbo_last5"])) + ".")
    return "\n".join(lines)


def dpm2_partial_table(data: dict) -> str:
    """The DPM2 experiment's runs stopped before their end: their last dev assessment."""
    lines = [_row(["variant", "what", "stopped at step", "dev ELBO", "D", "R", "L (K=10)",
                   "train s", "measured"]), _row(["---"] * 9)]
    for r in data["partial"]:
        lines.append(_row([f"`{r['variant']}`", r["what"], r["step"], _f(r["elbo"]),
                           _f(r["distortion"]), _f(r["rate"]), _f(r["log_likelihood"]),
                           f"{r['train_seconds']:.0f}", r.get("measured", data["measured"])]))
    return "\n".join(lines)


def dpm2_previous_table(data: dict) -> str:
    """The DPM2 runs made before issue 29's settings (``docs/data/dpm2_previous.json``), as
    measured then."""
    lines = [_row(["variant (then)", "what", "steps", "dev ELBO", "D", "R", "L (K=100)",
                   "test ELBO"]), _row(["---"] * 8)]
    for r in data["rows"]:
        lines.append(_row([f"`{r['variant']}`", r["what"], r["steps"], _f(r["elbo"]),
                           _f(r["distortion"]), _f(r["rate"]), _f(r["log_likelihood"]),
                           _f(r["test_elbo"])]))
    lines += ["", f"Measured {data['measured']}."]
    return "\n".join(lines)


def dpm2_dev_eval_table(d: dict) -> str:
    """``python -m experiments.bench_dev_eval``: an epoch as one program against compiled
    chunks with dev assessments, and the cost of one assessment with and without L."""
    a = d["assessment"]
    rows = [("epoch as one program (training)", f"{d['epoch_one_program']:.2f}"),
            ("epoch in chunks of 100 steps (training)",
             f"{d['epoch_chunked_training']:.2f} ({d['ratio_chunked_training']:.2f}x)"),
            (f"the chunked epoch's {d['assessments_per_epoch']} dev assessments",
             f"{d['epoch_chunked_dev']:.2f}"),
            ("one dev assessment without L", f"{a['K=0']['median']:.3f}"),
            ("one dev assessment with L, K = 100 (1000 images x 100 samples)",
             f"{a['K=100']['median']:.2f}"),
            ("compilation: one program / chunked (the plan and two chunk lengths, once per run)",
             f"{d['compile_one_program']:.2f} / {d['compile_chunked']:.2f}"),
            ("first dev assessment (compiling it): without L / with L",
             f"{a['K=0']['first_call']:.2f} / {a['K=100']['first_call']:.2f}")]
    lines = [_row(["", "seconds"]), "|---|---:|", *(_row(r) for r in rows)]
    chunked = " and ".join(f"{r['train_seconds']:.2f}" for r in d["runs"]["100"])
    whole = " and ".join(f"{r['train_seconds']:.2f}" for r in d["runs"]["0"])
    lines += ["", f"Medians of {d['rounds']} rounds; load average "
              f"{d['load'][0]:.1f} at the end. The chunked epoch's training takes "
              f"{(d['ratio_chunked_training'] - 1) * 100:.0f}% longer than the one-program "
              f"epoch (per round: {chunked} s chunked, {whole} s as one program); with K = 100 "
              f"one assessment takes {a['K=100']['median'] / a['K=0']['median']:.0f} times one "
              "without L."]
    return "\n".join(lines)


def notebook_dpm2_table(data: dict) -> str:
    """The DPM2 port's full run beside the seed's printed numbers."""
    seed, run = data["seed"], data
    ff, sf = run["first_forward"], seed["first_forward"]
    d = run["dev_final"]
    lines = [_row(["", "the seed", "the port's full run"]), _row(["---"] * 3),
             _row(["image shape", seed["image_shape"], run["image_shape"]]),
             _row(["train / dev split", seed["split"], run["split"]]),
             *(_row([f"first forward pass: {k}", _f(sf[k]), _f(ff[k])])
               for k in ("loss", "ELBO", "D", "R", "cv_loss")),
             _row(["steps", "", run["steps"]]),
             _row(["final dev ELBO / D / R", "",
                   f"{_f(d['elbo'])} / {_f(d['distortion'])} / {_f(d['rate'])}"]),
             _row(["final dev L (K = 100)", "", _f(d["log_likelihood"])]),
             _row(["test ELBO", "", _f(run["test_elbo"])]),
             _row(["training seconds / wall seconds", "",
                   f"{run['train_wall_seconds']:.0f} / {run['wall_seconds']:.0f}"])]
    lines.append("")
    lines.append(f"Measured {run['measured']} on the 2-core CPU (load average at the end "
                 f"{run['load_average_at_end'][0]}); the seed prints no final numbers.")
    return "\n".join(lines)


def notebook_lab5_pyro_table(data: dict) -> str:
    """The Lab 5 port's Pyro part: the test loss every 5 epochs, and the command that ran it."""
    pyro = data["pyro"]
    lines = [_row(["epoch", *pyro["epochs"]]), _row(["---"] * (len(pyro["epochs"]) + 1)),
             _row(["test loss (nats per image)", *(_f(v) for v in pyro["test_loss"])])]
    run = next(c for c in reversed(data["commands"]) if "pyro" in c["command"]
               or "--parts" not in c["command"])
    lines += ["", f"Seed {pyro['seed']}; the t-SNE maps all {pyro['tsne_points']} test means. "
              f"`{run['command']}` took {run['seconds']:.0f} s (finished {run['finished']})."]
    return "\n".join(lines)


def notebook_commands_table(data: dict) -> str:
    """The commands that wrote a notebook port's data file, their wall seconds and when."""
    lines = [_row(["command", "wall seconds", "finished"]), _row(["---"] * 3)]
    lines += [_row([f"`{c['command']}`", f"{c['seconds']:.0f}", c["finished"]])
              for c in data["commands"]]
    return "\n".join(lines)


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _provenance(data: dict) -> str:
    """The line under a benchmark's table: its command, date, commit, machine and load."""
    commit = "" if data.get("commit", "unknown") == "unknown" else f" (commit {data['commit']})"
    return (f"`{data['command']}`, measured {data['measured']}{commit} on "
            f"{data['machine']}, load average {data['load_average']}.")


#: Display names of ``experiments/bench_epoch.py``'s programs, in the table's order.
EPOCH_PROGRAMS = {"jvae": "jvae", "numpyro": "NumPyro", "hand": "hand-written JAX",
                  "torch": "PyTorch"}


def bench_epoch_table(data: dict) -> str:
    """``python -m experiments.bench_epoch --json``: one row per program, its median epoch
    (wall and process CPU time) and jvae's time over it."""
    programs = {n: p for n, p in data["programs"].items() if n in EPOCH_PROGRAMS}
    cpu = any(p.get("median_cpu_seconds") is not None for p in programs.values())
    lines = [_row(["program", "median epoch (wall)", *(["median epoch (CPU)"] if cpu else []),
                   "jvae / program (wall)", "jvae / program (CPU)"]),
             _row(["---"] + ["---:"] * (4 if cpu else 3))]
    for name, label in EPOCH_PROGRAMS.items():
        if name not in programs:
            continue
        p = programs[name]
        ratio = data["ratios"].get(f"jvae/{name}", 1.0 if name == "jvae" else None)
        cpu_ratio = data["cpu_ratios"].get(f"jvae/{name}", 1.0 if name == "jvae" else None)
        lines.append(_row([label, f"{p['median_seconds']:.3f} s",
                           *([_num(p.get("median_cpu_seconds"), ".3f")] if cpu else []),
                           _num(ratio, ".2f"), _num(cpu_ratio, ".2f")]))
    lines.append("")
    lines.append(f"Medians of rounds 2 to {data['rounds']} ({data['images']} images an epoch); "
                 "from the start of the command to the end of jvae's first epoch (imports, "
                 "data, compilation, one epoch): "
                 f"{data['start_to_first_jvae_epoch_seconds']:.1f} s. " + _provenance(data))
    return "\n".join(lines)


def bench_seeds_table(data: dict) -> str:
    """``python -m experiments.bench_seeds --json``: one row per number of seeds S."""
    columns = {"sequential_seconds": "S single-seed epochs in sequence (median, s)",
               "vmapped_seconds": "one vmapped epoch of S seeds (median, s)",
               "ratio": "vmapped / sequential (medians)",
               "min_ratio": "vmapped / sequential (fastest repeats)"}
    runs = sorted(data["seeds"].items(), key=lambda kv: int(kv[0]))
    shown = [k for k in columns if any(r.get(k) is not None for _, r in runs)]
    lines = [_row(["seeds S", *(columns[k] for k in shown)]), _row(["---:"] * (len(shown) + 1))]
    for s, r in runs:
        lines.append(_row([s, *(_num(r.get(k), ".1f" if k.endswith("seconds") else ".2f")
                                for k in shown)]))
    lines.append("")
    lines.append(_provenance(data))
    return "\n".join(lines)


def conv_label(name: str) -> str:
    """``dpm2_encoder_grad`` -> ``DPM2 encoder, gradient``: a program of
    ``experiments/bench_conv.py`` by its display name."""
    arch, _, rest = name.partition("_")
    model = {"dpm2": "DPM2 CNN VAE", "default": "default conv model"}.get(arch, arch)
    if rest == "step":
        return f"{model}: training step"
    part, _, what = rest.partition("_")
    return f"{model}: {part} {dict(fwd='forward', grad='gradient').get(what, what)}"


def bench_conv_table(data: dict) -> str:
    """``python -m experiments.bench_conv --json``: one row per program, the medians of jvae's
    CPU convolutions (``auto``), Flax's (``native``) and PyTorch's, and two ratios."""
    lines = [_row([f"program (batch {data['batch']}, {data['size']}x{data['size']})",
                   "jvae auto", "jvae native", "PyTorch", "auto / PyTorch", "native / auto"]),
             _row(["---"] + ["---:"] * 5)]
    for name, r in data["rows"].items():
        lines.append(_row([conv_label(name), _num(r["subpixel_s"], ".3f"),
                           _num(r["native_s"], ".3f"), _num(r["torch_s"], ".3f"),
                           _num(r["subpixel_over_torch"], ".2f"),
                           _num(r["native_over_subpixel"], ".1f")]))
    lines.append("")
    lines.append(f"Seconds, medians of {data['rounds']} rounds. " + _provenance(data))
    return "\n".join(lines)


def bench_memory_table(data: dict) -> str:
    """``python -m experiments.bench_memory --json``: one row per (path, size), the median
    over rounds of the peak resident memory and seconds per step."""
    lines = [_row(["path", "images", "image", "stored", "peak memory", "peak / stored",
                   "growth per stored byte", "peak / smallest size's", "ms per step",
                   "rounds", "epochs"]),
             _row(["---"] * 3 + ["---:"] * 8)]
    for r in data["rows"]:
        lines.append(_row([r["mode"], f"{r['images']:,}", "x".join(map(str, r["shape"])),
                           f"{r['stored_bytes'] / 1e6:,.0f} MB",
                           f"{r['peak_rss_bytes'] / 1e6:,.0f} MB",
                           f"{r['peak_over_stored']:.2f}",
                           _num(r.get("growth_per_stored_byte"), ".2f"),
                           _num(r.get("peak_over_smallest"), ".2f"),
                           f"{r['seconds_per_step'] * 1e3:.2f}", len(r["rounds"]),
                           r.get("epochs_run", "")]))
    lines.append("")
    runs = "; ".join(f"`{i['command']}` measured {i['date']} (commit "
                     f"{i['commits'].get('after', 'unknown')[:10]}, load average "
                     f"{i['load_average']:.1f})" for i in data["invocations"])
    skipped = "; ".join(data.get("skipped", [])) or "none"
    lines.append(f"{runs}; on {data['machine']['platform']}, {data['machine']['cpus']} CPUs; "
                 f"skipped: {skipped}.")
    return "\n".join(lines)


def _readme_results():
    project_on_path()
    from experiments import readme_results
    return readme_results


def bench_device_table(data: dict) -> str:
    """``python -m experiments.bench_device``: the table its command prints, with a column per
    platform (CPU and GPU always; one not measured says so and how to measure it)."""
    project_on_path()
    from experiments.bench_device_table import table
    return table(data)


def bench_is_eval_table(data: dict) -> str:
    """``python -m experiments.bench_is_eval --json``: the table its command prints, and the
    command's provenance."""
    project_on_path()
    from experiments.bench_is_eval import table
    return table(data) + " " + _provenance(data)


def pytorch_seeds_table(data: dict) -> str:
    """``docs/data/pytorch_example_seeds.json``: jvae's seeds, the PyTorch reference's, the
    epsilon-matched jvae run and the notebook's number, then their difference in standard
    errors."""
    import math

    j, t, e = data["jvae"], data["pytorch"], data["jvae_eps_matched"]

    def losses(r):
        return ", ".join(f"{v:.2f}" for v in r["test_loss"])
    lines = [_row(["run", "test loss per seed (nats)", "mean", "standard deviation"]),
             _row(["---"] * 4),
             _row([f"jvae, seeds {j['seeds'][0]}-{j['seeds'][-1]} ({j['note']})", losses(j),
                   f"**{j['mean']:.2f}**", _f(j["std"])]),
             _row([f"PyTorch reference, seeds {t['seeds'][0]}-{t['seeds'][-1]}", losses(t),
                   f"**{t['mean']:.2f}**", _f(t["std"])]),
             _row([f"jvae, `{e['command'].split('num_seeds=8 ')[-1]}` ({e['note']})", "",
                   _f(e["mean"]), _f(e["std"])]),
             _row(["the notebook", "", _f(data["reference"]["test_loss"]), ""])]
    se = math.sqrt(j["std"] ** 2 / len(j["seeds"]) + t["std"] ** 2 / len(t["seeds"]))
    diff = j["mean"] - t["mean"]
    lines += ["", f"The means differ by {diff:.2f} nats, {diff / se:.1f} standard errors. "
              f"Measured {data['measured']}."]
    return "\n".join(lines)


def pytorch_main_run_table(data: dict) -> str:
    """The main command's run as ``python -m experiments.readme_run`` last made it: test loss,
    rate, distortion, its evaluation with K importance samples and the times."""
    t, e = data["train"], data["evaluate"]
    f = t["final"]
    lines = [_row(["run", "test loss (-ELBO, nats)", "rate R", "distortion D",
                   f"test log p(x), K = {e['num_samples']}", "measured"]), _row(["---"] * 6),
             _row(["the main command (config as shipped)", f"**{-f['eval/elbo']:.2f}**",
                   _f(f["eval/rate"]), _f(f["eval/distortion"]), f"**{e['log_likelihood']:.2f}**",
                   data["measured"][:10]])]
    lines += ["", f"Training took {t['train_seconds']:.0f} s ({t['epochs']} epochs; "
              f"{t['wall_seconds']:.0f} s from start to end with start-up, compilation and "
              f"figures) and the evaluation {e['wall_seconds']:.0f} s for the "
              f"{e['num_examples']} test images, on {data['machine']} (load average "
              f"{data['load_average_at_end'][0]:.1f} at the end)."]
    return "\n".join(lines)


def figure_run_line(figure: str) -> str:
    """The final metrics of the run that drew ``figure`` (``docs/figures/manifest.json``)."""
    entry = json.loads((DATA.parent / "figures" / "manifest.json").read_text())[figure]
    run = entry["run_summary"]
    return (f"The run that drew these figures (`{entry['source'].split(' --workdir')[0]}`, "
            f"{entry['generated']}) reached a test ELBO of {run['eval/elbo']:.2f}, rate "
            f"{run['eval/rate']:.2f}, distortion {run['eval/distortion']:.2f} after epoch "
            f"{run['epoch']} (recorded in `docs/figures/manifest.json`).")


def results_summary_table() -> str:
    """The README's results table (:mod:`experiments.readme_results`), its links made
    relative to ``docs/results/``."""
    module = _readme_results()
    lines = module.render(module.ROWS + module.DOCS_ROWS).splitlines()[1:-1]   # no markers
    return "\n".join(line.replace("](docs/results/", "](").replace("](docs/figures/",
                                                                    "](../figures/")
                     for line in lines)


TABLES = {"results-summary": results_summary_table,
          "pytorch-seeds": lambda: pytorch_seeds_table(_data("pytorch_example_seeds.json")),
          "pytorch-main-run": lambda: pytorch_main_run_table(_data("readme_run.json")),
          "figure-run-pytorch-example": lambda: figure_run_line("pytorch_example_curves.png"),
          "readme-main-command": lambda: _readme_results().main_command_text(),
          "readme-library-snippet": lambda: _readme_results().library_snippet_text(),
          "bench-epoch": lambda: bench_epoch_table(_data("bench_epoch.json")),
          "bench-seeds": lambda: bench_seeds_table(_data("bench_seeds.json")),
          "bench-conv": lambda: bench_conv_table(_data("bench_conv.json")),
          "bench-device": lambda: bench_device_table(_data("bench_device.json")),
          "bench-memory": lambda: bench_memory_table(_data("bench_memory.json")),
          "bench-is-eval": lambda: bench_is_eval_table(_data("bench_is_eval.json")),
          "notebook-dpm2": lambda: notebook_dpm2_table(_data("notebook_dpm2.json")),
          "dpm2-finished": lambda: dpm2_finished_table(_data("dpm2.json")),
          "notebook-lab5-pyro": lambda: notebook_lab5_pyro_table(_data("notebook_lab5.json")),
          "notebook-lab5-commands": lambda: notebook_commands_table(
              _data("notebook_lab5.json")),
          "dpm2-partial": lambda: dpm2_partial_table(_data("dpm2.json")),
          "dpm2-dev-eval": lambda: dpm2_dev_eval_table(_data("dpm2_dev_eval.json")),
          "dpm2-previous": lambda: dpm2_previous_table(_data("dpm2_previous.json")),
          "reliability-probe": lambda: probe_table(_load("probe_faults")),
          "kill-resume": lambda: kill_resume_table(_load("kill_resume"))}


def render(markdown: str) -> str:
    """``markdown`` with every ``<!-- table: NAME -->`` line replaced by its table."""
    def table(match: re.Match) -> str:
        if match.group(1) not in TABLES:
            raise KeyError(f"unknown table marker {match.group(0)}; known: {sorted(TABLES)}")
        return TABLES[match.group(1)]()
    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return render(markdown)

# Tables of the results pages (docs/hooks/tables_results.py).
from tables_results import TABLES as _RESULTS_TABLES  # noqa: E402
TABLES.update(_RESULTS_TABLES)

# Tables of the notebook and lecture pages (docs/hooks/tables_notebooks.py).
from tables_notebooks import TABLES as _NOTEBOOK_TABLES  # noqa: E402
TABLES.update(_NOTEBOOK_TABLES)

# Table of the mixed-precision guide (docs/hooks/tables_precision.py).
from tables_precision import TABLES as _PRECISION_TABLES  # noqa: E402
TABLES.update(_PRECISION_TABLES)
# Tables of the SNR-scaling page (docs/hooks/tables_snr.py).
from tables_snr import TABLES as _SNR_TABLES  # noqa: E402
TABLES.update(_SNR_TABLES)
