"""The README's results table, generated from the data files in ``docs/data/``.

Every number in the table is read from the data file that the row's command wrote (see
:mod:`experiments.provenance` for which command and which code); the literature's numbers a
row compares with are quoted from the data files too where the experiment stored them, or
from :data:`QUOTED` (with their source). The README holds the table between two marker
lines, and the sentences about what the main commands and the library snippet print
between ``<!-- generated: NAME -->`` markers (:data:`BLOCKS`); ``--write`` replaces them,
``--check`` (and ``tests/test_readme_results.py``) fails when the README's are not what the
data files give.

    python -m experiments.readme_results --write
    python -m experiments.readme_results --check
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data"
README = ROOT / "README.md"
BEGIN = ("<!-- results-table: generated from docs/data by python -m experiments.readme_results "
         "--write; do not edit -->")
END = "<!-- results-table: end -->"
#: Published numbers of other work that a row compares with, where no data file stores them.
QUOTED = {"kingma2016": "Kingma et al. (2016): IAF tightens the bound"}


def _load(name: str) -> dict:
    path = DATA / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the README's results table reads it; run "
                                "the command that experiments/provenance.py names for it")
    return json.loads(path.read_text())


def _pm(mean: float, sd: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} +- {sd:.{digits}f}"


def _signed(mean: float, sd: float) -> str:
    return f"{mean:+.2f} +- {sd:.2f}"


def _links(page: str, figure: str) -> str:
    return f"[page](docs/results/{page}), [figure](docs/figures/{figure})"


def row_pytorch_example() -> list[str]:
    d = _load("pytorch_example_seeds.json")
    j, t = d["jvae"], d["pytorch"]
    return ["PyTorch-examples MNIST VAE, 10 epochs: test loss (-ELBO, nats)",
            f"{_pm(j['mean'], j['std'])} ({len(j['seeds'])} seeds)",
            f"PyTorch reference {_pm(t['mean'], t['std'])} ({len(t['seeds'])} seeds); "
            f"notebook {d['reference']['test_loss']:.2f}",
            f"`{j['command']}`", _links("pytorch_example.md", "pytorch_example_seeds.png")]


def row_pyro_vae() -> list[str]:
    d = _load("pyro_vae.json")
    b, r = d["bench"], d["run"]
    return ["Lab 5's Pyro VAE (z = 50): test loss (-ELBO, nats)",
            f"{-r['final']['eval/elbo']:.2f} after {r['final']['epoch']} epochs; "
            f"{_pm(b['jvae_mean'], b['jvae_sd'])} after 10 ({len(b['jvae_final_test_loss'])} "
            "seeds)",
            f"Pyro, same model: {_pm(b['pyro_mean'], b['pyro_sd'])} after 10 "
            f"({len(b['pyro_final_test_loss'])} seeds); time jvae / Pyro {b['ratio']:.2f} "
            f"(`{b['command'].removeprefix('python -m ')}`)",
            f"`{r['command']}` ({r['epochs'][-1]} epochs)",
            _links("pyro_vae.md", "pyro_vae_tsne.png")]


def row_rate_distortion() -> list[str]:
    d = _load("rate_distortion.json")
    return [f"Rate-distortion, {len(d['beta'])} betas in one program (Alemi et al., 2018)",
            f"R {d['rate'][0]:.2f} to {d['rate'][-1]:.2f}, D {d['distortion'][0]:.2f} to "
            f"{d['distortion'][-1]:.2f} nats for beta {d['beta'][0]:g} to {d['beta'][-1]:g}",
            'the trade-off of "Fixing a Broken ELBO"', f"`{d['command']}`",
            _links("rate-distortion.md", "rate_distortion.png")]


def row_iwae() -> list[str]:
    d = _load("iwae_compare.json")
    (vae, iwae), paper = d["rows"], d["paper"]
    return ["IWAE vs ELBO training: test log p(x), K = 5000",
            f"{vae['log_px_k5000'][0]:.2f} (k=1), {iwae['log_px_k5000'][0]:.2f} (k=5)",
            f"{paper['source']}: " + ", ".join(f"{v:.2f}" for v in paper["log_px"].values()),
            f"`{d['command']}` ({d['total_minutes']:.0f} min)",
            _links("iwae.md", "iwae_vs_elbo.png")]


def row_dpm2() -> list[str]:
    d = _load("dpm2.json")
    nvil = sorted((r for r in d["rows"] if r["variant"].startswith("nvil_")),
                  key=lambda r: -r["elbo"])
    stopped = [r for r in d["partial"] if r["variant"].startswith("nvil_")]
    steps = max(r["steps"] for r in nvil)
    return ["The DPM2 notebook's experiment: NVIL on the mixture posterior, dev ELBO after "
            f"{steps} steps (nats)",
            " > ".join(f"{r['variant'][5:]} {r['elbo']:.2f}" for r in nvil)
            + "".join(f"; {r['variant'][5:]} stopped by the divergence guard (dev ELBO "
                      f"{r['elbo']:.0f} at step {r['step']})" for r in stopped),
            "the notebook's control-variate chains (it prints no final numbers)",
            "`python -m experiments.dpm2 --workdir runs/dpm2 --docs`",
            _links("dpm2.md", "dpm2_dev_curves.png")]


def row_estimator_variance() -> list[str]:
    d = _load("estimator_variance.json")
    rows = {r[0]: r[1] for r in d["rows"]}
    return ["Gradient variance of the inference network / reparameterised (MNIST)",
            f"SFE {rows['SFE']:g}, + self-critic {rows['SFE + self-critic']:g}, mixture "
            f"estimator {rows['mixture posterior: mixture estimator']:g}",
            "the DPM2 notebook's estimators", f"`{d['command']}` ({d['seconds'] / 60:.0f} min)",
            _links("estimator-variance.md", "estimator_variance.png")]


def row_lecture() -> list[str]:
    d = _load("lecture.json")
    r = d["rows"]
    return ["Lecture: 2-D codes on MNIST, test reconstruction error (summed squared error per "
            "image)",
            f"PCA-2 {r['PCA-2']['sse'][0]:.2f}, AE-2 {r['AE-2']['sse'][0]:.2f}, VAE-2 "
            f"{r['VAE-2']['sse'][0]:.2f}; VAE-2 test ELBO {r['VAE-2']['elbo']:.2f}, log p(x) "
            f"{r['VAE-2']['log_px_importance']:.2f} (K = {d['ll_samples']})",
            "the lecture's PCA, autoencoder and 2-D VAE (it prints no numbers)",
            f"`python -m experiments.lecture --workdir runs/lecture` "
            f"({d['seconds']['total'] / 60:.0f} min)",
            _links("lecture.md", "lecture_vae_manifold.png")]


def row_linear_vae() -> list[str]:
    d = _load("linear_vae_ppca.json")
    rows = {r["case"]: r for r in d["rows"]}
    fixed = rows["MNIST k=10, sigma2=2"]["collapse"]
    return ["Linear VAE vs PPCA (Lucas et al., 2019): gap of the trained VAE's exact log p(x) "
            "to the PPCA optimum, nats per example",
            f"{rows['MNIST k=2']['train']['gap_log_px']:.3f} (MNIST k=2), "
            f"{rows['MNIST k=10']['train']['gap_log_px']:.3f} (k=10); collapsed dimensions "
            f"VAE {fixed['vae']} / PPCA {fixed['ppca']} at sigma^2 = 2",
            "PPCA's closed-form maximum likelihood",
            f"`{d['command']}` ({d['wall_seconds'] / 60:.0f} min)",
            _links("linear-vae.md", "linear_vae_ppca.png")]


def row_gaussian2d() -> list[str]:
    d = _load("notebook_homework2.json")
    s = d["task2"]["seed0"]
    return ["Homework 2's posterior collapse on 2-D Gaussian data: rate R (nats)",
            f"{s['univariate']['rate']:.3f} univariate, {s['multivariate']['rate']:.3f} "
            "multivariate", "homework 2: collapse only in the univariate case",
            f"`{d['command']}` ({d['wall_seconds'] / 60:.0f} min, all of homework 2)",
            _links("gaussian2d.md", "gaussian2d_univariate.png")]


def row_flows() -> list[str]:
    d = _load("flows.json")
    rows = {r["row"]: r for r in d["rows"]}
    b = d["budget"]
    seeds = len(rows["gaussian"]["seeds"])
    return [f"Flow posteriors on MNIST, {b['epochs']} epochs, {seeds} seeds: test ELBO gain "
            "over the diagonal Gaussian (nats)",
            ", ".join(f"{name} {_signed(rows[key]['elbo_gain_mean'], rows[key]['elbo_gain_std'])}"
                      for key, name in (("iaf", "IAF"), ("coupling", "coupling"),
                                        ("planar", "planar")) if key in rows),
            QUOTED["kingma2016"],
            f"`python -m experiments.flows --workdir runs/flows --epochs {b['epochs']} "
            f"--seeds {seeds} --test-size {b['test_size']} --docs`",
            _links("flows.md", "flows_gain.png")]


def row_snr_scaling() -> list[str]:
    d = _load("snr_scaling.json")
    fits = {(f["estimator"], f["group"]): f for f in d["setups"]["gaussian"]["fits"]}

    def slope(e, g):
        f = fits[e, g]
        return f"{f['slope']:+.2f} [{f['low']:+.2f}, {f['high']:+.2f}]"

    return ["Gradient SNR against K on Rainforth et al.'s Gaussian model: log-log slopes "
            "(95% bootstrap interval)",
            f"IWAE inference {slope('iwae', 'inference')} (signal from DReG's draws: "
            f"{slope('iwae_dreg_signal', 'inference')}), generative "
            f"{slope('iwae', 'generative')}; DReG inference {slope('dreg', 'inference')}",
            "Rainforth et al. (2018): -0.5 and +0.5; Tucker et al. (2019): DReG grows",
            f"`{d['command'].strip()}`", _links("snr_scaling.md", "snr_scaling.png")]
def row_likelihood_table() -> list[str]:
    d = _load("likelihood_table.json")
    status = ("full schedules" if d["full_schedules"] else
              "a CPU budget; the full table is ready, not yet run on an accelerator")
    return [f"Binarised-MNIST likelihood table: test NLL (nats), K = {d['ll_samples']} on "
            f"{d['eval_images']} test images ({status})",
            ", ".join(f"{r['row']} {r['test_nll']:.2f} ({r['epochs_run']}/"
                      f"{r['schedule_epochs']} epochs)" for r in d["rows"]),
            "papers: " + ", ".join(f"{r['row']} {r['paper']:.2f}" for r in d["rows"])
            + "; pythae: " + ", ".join(f"{r['pythae']:.2f}" for r in d["rows"]),
            f"`{d['command']}`", "[page](docs/results/likelihood_table.md)"]


def main_command_text() -> str:
    """What the README's two main commands took and printed (``docs/data/readme_run.json``,
    written by ``python -m experiments.readme_run``)."""
    d = _load("readme_run.json")
    t, e = d["train"], d["evaluate"]
    return (f"Measured {d['measured'][:10]} on {d['machine']} (load average "
            f"{d['load_average_at_end'][0]:.1f}): the first command took {t['wall_seconds']:.0f} s "
            f"from start to end ({t['train_seconds']:.0f} s of it training) and printed `test "
            f"ELBO {t['test_elbo_printed']:.2f}`; the second took {e['wall_seconds']:.0f} s and "
            f"printed `\"log_likelihood\": {e['log_likelihood']:.2f}...` (K = "
            f"{e['num_samples']}, all {e['num_examples']} {e['split']} images).")


def library_snippet_text() -> str:
    """What the README's library snippet printed (``docs/data/readme_run.json``)."""
    d = _load("readme_run.json")
    lib = d["library_snippet"]
    return (f"It prints `train ELBO {lib['train_elbo_printed']:.2f}` after one epoch and a "
            f"validation ELBO of {lib['validation_printed']['elbo']:.2f} ({lib['wall_seconds']:.0f} "
            f"s on {d['machine']}, measured {d['measured'][:10]}).")


#: Generated paragraphs of the README, by marker name.
BLOCKS = {"main-command": main_command_text, "library-snippet": library_snippet_text}


def block_markers(name: str) -> tuple[str, str]:
    return (f"<!-- generated: {name} (python -m experiments.readme_results --write) -->",
            f"<!-- end: {name} -->")


ROWS = (row_pytorch_example, row_pyro_vae, row_rate_distortion, row_iwae, row_dpm2,
        row_estimator_variance, row_snr_scaling, row_lecture, row_linear_vae, row_gaussian2d,
        row_flows)
#: Rows of the results index (``docs/results/index.md``) only: the README has no room.
DOCS_ROWS = (row_likelihood_table,)


def render(rows=ROWS) -> str:
    """The table (its header and one line per row of ``rows``, default :data:`ROWS`),
    between the markers."""
    lines = [BEGIN, "| experiment | jvae | reference | command | details |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row()) + " |" for row in rows]
    return "\n".join(lines + [END])


def current(text: str) -> str:
    """The README's table between the markers (markers included)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{README} has no results-table markers ({BEGIN!r} ... {END!r})")
    start = text.index(BEGIN)
    return text[start:text.index(END, start) + len(END)]


def rewrite(text: str) -> str:
    """``text`` (the README) with its table and every generated block rendered afresh."""
    text = text.replace(current(text), render())
    for name, block in BLOCKS.items():
        begin, end = block_markers(name)
        if begin not in text or end not in text:
            raise ValueError(f"{README} has no {name!r} markers ({begin!r} ... {end!r})")
        start = text.index(begin)
        stop = text.index(end, start) + len(end)
        text = text[:start] + f"{begin}\n{block()}\n{end}" + text[stop:]
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite the README's table")
    group.add_argument("--check", action="store_true",
                       help="exit 1 if the README's table is not what the data files give")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = rewrite(text)
    if args.write:
        README.write_text(new)
        print(f"wrote the results table ({len(ROWS)} rows) and the generated paragraphs "
              f"({', '.join(BLOCKS)}) of {README.name}")
        return 0
    if new != text:
        print(f"{README.name}'s generated table or paragraphs are not what docs/data gives: "
              "run python -m experiments.readme_results --write")
        return 1
    print(f"{README.name}'s generated table and paragraphs match docs/data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
