"""Tables and sentences of the notebook and lecture pages, rendered from ``docs/data/*.json``.

Registered in ``docs/hooks/data_tables.py`` (its ``TABLES``): a page's line ``<!-- table: NAME
-->`` becomes what ``TABLES[NAME]()`` returns. The pages and their data files:

- ``docs/results/lecture.md`` (``lecture-*``): ``lecture.json``, written by ``python -m
  experiments.lecture --workdir runs/lecture --docs``.
- ``docs/results/gaussian2d.md`` (``gaussian2d-*``): ``notebook_homework2.json`` (the port's
  seed-0 runs and its five seeds) and ``docs/figures/manifest.json`` (the figure runs).
- ``docs/notebooks/{lab5,homework2,lecture,dpm2}.md`` (``lab5-*``, ``homework2-*``,
  ``nb-lecture-*``, ``nb-dpm2-*``): ``notebook_<name>.json``, written by ``python -m
  experiments.notebooks.<name> --docs``; Lab 5 also quotes ``pytorch_example_seeds.json``.

Numbers the seed notebooks print or assert (not measurements of jvae) come from the data file
where it stores them (``notebook_lab5.json``'s ``seed_log``); the homework's asserted helper
values are :data:`HOMEWORK2_SEED_ASSERTS`, quoted from the seed file.
"""

from __future__ import annotations

import json
import math
import pathlib

from hook_common import DATA, load as _data, row as _row  # noqa: F401
FIGURES = DATA.parent / "figures"

#: The values Homework 2's own asserts compare ``get_normal_KL`` and ``get_normal_nll`` with
#: (``../shared/seeds/002_53e461ead3fb5cf8.txt``, lines 293-295 and 314-316): the seed's
#: numbers, quoted for comparison, not measured by jvae.
HOMEWORK2_SEED_ASSERTS = {"normal_kl": ("200.2144", "1.50925", "[49.2990, 1498.479]"),
                          "normal_nll": ("3.9189", "6.9191", "[3.9982, 5.9197]")}
#: The homework's tolerance in those asserts, as the seed writes it.
HOMEWORK2_RTOL = "1e-3"
#: The standard deviations of Homework 2's 2-D Gaussian data (``jvae/data/synthetic.py``'s
#: ``sigma``; the rotation of the "multivariate" data keeps them). The data's expected
#: log-density, ``-(log(2 pi e) + sum log sigma)``, follows from them: a definition, not a
#: measurement.
GAUSSIAN2D_SIGMA = (3.0, 1.0)
MODES = {"univariate": "univariate (axis-aligned)", "multivariate": "multivariate (rotated)"}


def _table(header, rows) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _mean(values) -> float:
    return sum(values) / len(values)


def _join(values, fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


# --- docs/results/lecture.md: lecture.json -------------------------------------------------

#: ``lecture.json``'s rows, in the table's order, with their labels.
LECTURE_ROWS = {"PCA-2": "PCA, 2 components", "PPCA-2": "PPCA, 2 latent dimensions",
                "AE-2": "autoencoder, 2-D code", "VAE-2": "VAE, 2-D latent",
                "BCE floor (the data itself)": "the data itself (BCE floor)"}
_CLIPPED = ("PCA-2", "PPCA-2")
_FLOOR = "BCE floor (the data itself)"


def lecture_timing(d: dict) -> str:
    """The command's wall time and its parts (``seconds``)."""
    s = d["seconds"]
    return (f"it took **{s['total']:.0f} s** (device {d['device']}, measured "
            f"{d['measured']}): PCA and PPCA {s['pca_ppca']:.0f} s, training "
            f"{s['autoencoder_train']:.0f} s (autoencoder) and {s['vae_train']:.0f} s (VAE), "
            f"the autoencoder's evaluation {s['autoencoder_eval']:.0f} s, the VAE's "
            f"importance-sampled log-likelihood {s['vae_eval']:.0f} s, the t-SNE "
            f"{s['tsne']:.0f} s.")


def lecture_numbers(d: dict) -> str:
    """The four models and the BCE floor on the test images: SSE and BCE (mean +- standard
    error), the VAE's ELBO (rate, distortion) and log p(x); the best model value in bold."""
    rows = d["rows"]
    models = [k for k in LECTURE_ROWS if k in rows and k != _FLOOR]
    best = {m: min(models, key=lambda k: rows[k][m][0]) for m in ("sse", "bce")}

    def cell(key, metric):
        mean, se = rows[key][metric]
        if key == _FLOOR and metric == "sse":
            return f"{mean:.0f}"
        value = f"**{mean:.2f}**" if best[metric] == key else f"{mean:.2f}"
        return f"{value} +- {se:.2f}" + (" (clipped)" if metric == "bce" and key in _CLIPPED
                                         else "")

    out = []
    for key, label in LECTURE_ROWS.items():
        r = rows[key]
        elbo = (f"**{r['elbo']:.2f}** (rate {r['rate']:.2f}, distortion {r['distortion']:.2f})"
                if "elbo" in r else "")
        if "log_px_importance" in r:
            logp = f"**{r['log_px_importance']:.2f}** (K = {d['ll_samples']})"
        elif "log_px_exact_gaussian" in r:
            m, se = r["log_px_exact_gaussian"]
            logp = f"{m:.2f} +- {se:.2f} (exact Gaussian density on R^784; not comparable)"
        else:
            logp = ""
        out.append([label, cell(key, "sse"), cell(key, "bce"), elbo, logp])
    return "\n".join(_table(["model", "SSE per image", "BCE per image", "test ELBO",
                             "test log p(x)"], out))


def lecture_reading(d: dict) -> str:
    """The bullets under the table, their numbers from ``lecture.json``."""
    r = d["rows"]
    pca, ae, vae = r["PCA-2"], r["AE-2"], r["VAE-2"]
    better = "better" if ae["bce"][0] < vae["bce"][0] else "worse"
    return "\n".join([
        f"- With a 2-D code the two networks reconstruct far better than the best linear map: "
        f"SSE {ae['sse'][0]:.1f} and {vae['sse'][0]:.1f} against PCA's {pca['sse'][0]:.1f} "
        f"(PCA is the optimum among linear maps for SSE).",
        f"- The autoencoder reconstructs slightly {better} than the VAE (BCE "
        f"{ae['bce'][0]:.1f} vs {vae['bce'][0]:.1f}): the VAE pays a rate of {vae['rate']:.1f} "
        f"nats to keep its codes near the prior, and its decoder must work for neighbouring "
        f"codes too.",
        f"- The importance-sampled log-likelihood is "
        f"{vae['log_px_importance'] - vae['elbo']:.1f} nats above the ELBO, the gap "
        f"`KL(q || p(z|x))` of the diagonal Gaussian posterior.",
        f"- Grey levels are not binary, so even a perfect reconstruction costs "
        f"{r[_FLOOR]['bce'][0]:.1f} nats of BCE (the summed binary entropies of the pixels).",
        f"- PPCA's noise variance is `sigma^2 = {d['ppca_sigma2']:.3f}`; its posterior-mean "
        f"reconstruction shrinks PCA's projection by a factor `1 - sigma^2 / lambda_j` close "
        f"to 1, hence the same errors. Its log-likelihood is a density of continuous pixels "
        f"and cannot be compared with the VAE's Bernoulli likelihood of grey levels."])


def lecture_pca_variance(d: dict) -> str:
    """The share of the variance of the first two principal components, in percent."""
    first, second = d["pca_explained_variance_ratio"][:2]
    return f"(about {100 * first:.0f}% and {100 * second:.0f}% of the variance):"


# --- docs/results/gaussian2d.md: notebook_homework2.json and the figure manifest -----------

def expected_log_density() -> float:
    """Homework 2's data distribution's expected log-density (nats per point)."""
    return -(math.log(2 * math.pi * math.e) + sum(math.log(s) for s in GAUSSIAN2D_SIGMA))


def gaussian2d_numbers(d: dict) -> str:
    """The rate and ELBO of the port's seed-0 runs, and the range over its five seeds."""
    t = d["task2"]
    seed0, seeds, points = t["seed0"], t["seeds"], t["latent_stats"]["univariate"]["points"]
    refs = {"univariate": f"the data distribution's expected log-density is "
                          f"{expected_log_density():.2f}: the decoder models it without the "
                          f"latent", "multivariate": "the latent is used"}
    lines = [f"From the notebook port's seed-0 runs of this config (`{d['command']}`, measured "
             f"{d['measured']}): {t['settings']['epochs']} epochs, test split ({points} "
             f"points), nats per example:", ""]
    lines += _table(["data", "rate R", "ELBO", "reference"],
                    [[MODES[m], f"**{seed0[m]['rate']:.3f}**", f"{seed0[m]['elbo']:.2f}",
                      refs[m]] for m in MODES])
    ranges = " and ".join(f"{min(seeds[m]['rate']):.2f}-{max(seeds[m]['rate']):.2f} ({m})"
                          for m in MODES)
    first, last = seeds["univariate"]["seeds"][0], seeds["univariate"]["seeds"][-1]
    lines += ["", f"Over seeds {first}-{last} the rates are {ranges}:"]
    return "\n".join(lines)


def gaussian2d_figure_runs() -> str:
    """The final rate and ELBO of the two runs that drew the page's figures (manifest)."""
    manifest = json.loads((FIGURES / "manifest.json").read_text())
    runs = {m: manifest[f"gaussian2d_{m}.png"] for m in MODES}
    parts = [f"rate {runs[m]['run_summary']['eval/rate']:.4f} / ELBO "
             f"{runs[m]['run_summary']['eval/elbo']:.4f} ({m}, epoch "
             f"{runs[m]['run_summary']['epoch']}, drawn {runs[m]['generated']})" for m in MODES]
    return (f"The runs that drew these figures (the commands above) reached {parts[0]} and "
            f"{parts[1]}, as recorded in `docs/figures/manifest.json`.")


# --- docs/notebooks/homework2.md: notebook_homework2.json -----------------------------------

def _full_run(d: dict) -> str:
    load = d["host"]["load_average_at_end"]
    return (f"**Full run ({d['measured']}):** {d['wall_seconds']:.0f} s of wall time on the "
            f"{d['host']['cpus']}-core CPU, shared with other jobs (load average {load[0]:.1f} "
            f"at the end, {load[1]:.1f} and {load[2]:.1f} over the last 5 and 15 minutes: "
            f"slower than a quiet host).")


def homework2_helpers(d: dict) -> str:
    """The homework's asserted helper values beside jvae's recorded ones."""
    kl, nll = HOMEWORK2_SEED_ASSERTS["normal_kl"], HOMEWORK2_SEED_ASSERTS["normal_nll"]
    ours = d["helpers"]
    close = all(abs(v - float(s)) <= float(HOMEWORK2_RTOL) * abs(float(s))
                for key in ours for v, s in zip(ours[key], HOMEWORK2_SEED_ASSERTS[key]))
    verdict = "within" if close else "NOT within"
    return (f"The homework's asserted values of `get_normal_KL` ({', '.join(kl)}) and "
            f"`get_normal_nll` ({', '.join(nll)}) are reproduced by `jvae.normal_kl` and "
            f"`jvae.normal_nll` {verdict} its `rtol={HOMEWORK2_RTOL}` (the scalar cases as the "
            f"full run recorded them: {_join(ours['normal_kl'], '.4f')} and "
            f"{_join(ours['normal_nll'], '.4f')}): the port runs the homework's asserts.")


def homework2_rates(d: dict) -> str:
    """Seed 0's rate and ELBO and the five seeds', then what they say."""
    t = d["task2"]
    seed0, seeds = t["seed0"], t["seeds"]
    ids = seeds["univariate"]["seeds"]
    span = f"{ids[0]}-{ids[-1]}"
    lines = _table(["data", "seed 0: rate", "ELBO", f"seeds {span}: rate",
                    f"seeds {span}: ELBO"],
                   [[MODES[m], f"**{seed0[m]['rate']:.3f}**", f"{seed0[m]['elbo']:.3f}",
                     _join(seeds[m]["rate"], ".3f"), _join(seeds[m]["elbo"], ".3f")]
                    for m in MODES])
    uni, multi = seeds["univariate"]["rate"], seeds["multivariate"]["rate"]
    first, single = seeds["multivariate"]["rate"][0], seed0["multivariate"]["rate"]
    why = " by float rounding of the vmapped program" if abs(first - single) < 0.01 else ""
    best = {m: max(seeds[m]["elbo"]) for m in MODES}
    lines += ["", f"With axis-aligned data the rate falls to {min(uni):.2f}-{max(uni):.2f} "
              f"nats in every seed: the posterior collapses. With rotated data it stays at "
              f"{min(multi):.2f}-{max(multi):.2f} nats. (Seed {ids[0]} of the five-seed "
              f"program, {first:.3f}, differs from the single run's {single:.3f}{why}.) "
              f"The expected log-density of either data distribution is "
              f"{expected_log_density():.2f} nats; the best ELBOs over the seeds are "
              f"{best['univariate']:.2f} (univariate) and {best['multivariate']:.2f} "
              f"(multivariate)."]
    return "\n".join(lines)


def homework2_latent_stats(d: dict) -> str:
    """``get_latent_stats`` as the homework prints it, and the reading of the multivariate
    run's first coordinate."""
    stats = d["task2"]["latent_stats"]

    def pair(v):
        return f"({v[0]:.3f}, {v[1]:.3f})"

    lines = _table(["data", "`mu_z`", "`std_z`"],
                   [[m, f"{pair(stats[m]['mu_z_mean'])} +- {pair(stats[m]['mu_z_std'])}",
                     f"{pair(stats[m]['std_z_mean'])} +- {pair(stats[m]['std_z_std'])}"]
                    for m in MODES])
    multi = stats["multivariate"]
    lines += ["", "The homework's reading holds: for the univariate data both coordinates have "
              "`mu_z` near 0 and `std_z` near 1 (the prior, for every input); for the "
              "multivariate data the first coordinate carries the data (its means spread over "
              f"{multi['mu_z_std'][0]:.2f}, its standard deviation {multi['std_z_mean'][0]:.2f}"
              "), the second is unused."]
    return "\n".join(lines)


def homework2_kl_curves(d: dict) -> str:
    """The end of the KL-curve runs (seed 0): rates and reconstruction terms."""
    s = d["task2"]["seed0"]
    return (f"the univariate one keeps falling towards 0 ({s['univariate']['rate']:.2f} at "
            f"the end) while the multivariate one levels off ({s['multivariate']['rate']:.2f} "
            f"at the end); the reconstruction term of the multivariate run ends lower "
            f"({s['multivariate']['distortion']:.1f} against "
            f"{s['univariate']['distortion']:.1f} nats), the information the latent carries.")


# --- docs/notebooks/lab5.md: notebook_lab5.json (and pytorch_example_seeds.json) ------------

def lab5_example_log(d: dict) -> str:
    """The example's per-epoch log: the seed's printed losses beside jvae's."""
    e = d["example"]
    seed = e["seed_log"]
    return "\n".join(_table(
        ["epoch", "seed: training", "jvae: training", "seed: test", "jvae: test"],
        [[n, f"{st:.2f}", f"{jt:.2f}", f"{sv:.2f}", f"{jv:.2f}"] for n, st, jt, sv, jv in
         zip(e["epochs"], seed["train"], e["train_loss"], seed["test"], e["test_loss"])]))


def lab5_example_first_epoch(d: dict) -> str:
    """A fresh model's first epoch against the seed's."""
    e = d["example"]
    seed = e["seed_log"]
    above = e["train_loss"][0] > seed["train"][0] and e["test_loss"][0] > seed["test"][0]
    return (f"A fresh model ends its first epoch at {e['train_loss'][0]:.2f} (training) and "
            f"{e['test_loss'][0]:.2f} (test), {'far above' if above else 'against'} the "
            f"seed's {seed['train'][0]:.2f} and {seed['test'][0]:.2f};")


def lab5_example_last_epoch(d: dict, seeds: dict) -> str:
    """The last epoch against the seed's, and jvae's test loss across seeds."""
    e = d["example"]
    j = seeds["jvae"]
    return (f"After {e['epochs'][-1]} epochs the numbers meet: jvae's test loss "
            f"{e['test_loss'][-1]:.2f} against the seed's {e['seed_log']['test'][-1]:.2f} "
            f"({len(j['seeds'])} jvae seeds, measured {seeds['measured']}: {j['mean']:.2f} +- "
            f"{j['std']:.2f}, [pytorch_example across seeds](../results/pytorch_example.md)).")


def _question_means(q: dict) -> dict[str, list[float]]:
    """Per combination, the mean test loss over the seeds after each epoch."""
    return {k: [_mean(epoch) for epoch in v["test_loss_per_epoch"]] for k, v in q.items()}


def lab5_question(d: dict) -> str:
    """The four combinations: the final test loss per seed, its mean and the means after
    epochs 1 and 5."""
    q = d["question"]
    means = _question_means(q)
    seeds = next(iter(q.values()))["seeds"]
    return "\n".join(_table(
        ["hidden units + optimiser (learning rate)", f"seeds {', '.join(map(str, seeds))}",
         "mean", "after epoch 1", "after epoch 5"],
        [[f"{k} ({v['learning_rate']:g})", _join(v["test_loss_per_epoch"][-1], ".2f"),
          f"**{v['final_mean']:.2f}**", f"{means[k][0]:.2f}", f"{means[k][4]:.2f}"]
         for k, v in q.items()]))


def lab5_question_ranking(d: dict) -> str:
    """The ranking paragraph under the question's table, every number from the data."""
    q = d["question"]
    means = _question_means(q)
    final = {k: v["final_mean"] for k, v in q.items()}
    ranked = sorted(final, key=final.get)
    best, slow, slower, worst = ("relu + adam", "relu + adagrad", "sigmoid + adam",
                                 "sigmoid + adagrad")
    epochs = len(means[best])
    reach = next((i + 1 for i, m in enumerate(means[best]) if m <= final[worst]), None)
    every = all(means[best][i] < min(means[slow][i], means[slower][i])
                and means[worst][i] > max(means[slow][i], means[slower][i])
                for i in range(epochs))
    single = d["example"]["test_loss"][-1]
    first_seed = q[best]["test_loss_per_epoch"][-1][0]
    text = ("Ranked by the final test loss: "
            + ", ".join(f"{k} ({final[k]:.2f})" for k in ranked) + ". ")
    if reach is not None:
        text += (f"ReLU + Adam reaches sigmoid + Adagrad's final loss ({final[worst]:.2f}) "
                 f"after {reach} epoch{'s' if reach > 1 else ''} and ends "
                 f"{final[worst] - final[best]:.2f} nats lower. ")
    text += (f"{'Each change slows convergence at every epoch' if every else 'Each change'}: "
             f"Adagrad costs ReLU {final[slow] - final[best]:.1f} nats after {epochs} epochs, "
             f"sigmoid units cost Adam {final[slower] - final[best]:.1f}, and the two together, "
             f"the original recipe, {final[worst] - final[best]:.1f}")
    if final[worst] > means[best][0]:
        text += (f"; after {epochs} epochs sigmoid + Adagrad is still above where ReLU + Adam "
                 f"is after its first epoch ({means[best][0]:.2f})")
    why = ", by the rounding of the vmapped program" if abs(first_seed - single) < 0.05 else ""
    text += (f". (Seed {q[best]['seeds'][0]} of the ReLU + Adam program, {first_seed:.2f}, "
             f"differs from the example's single run, {single:.2f}{why}.)")
    return text


def lab5_pyro_reading(d: dict) -> str:
    """How the Pyro part's test loss falls: to epoch 20, then to the end, and its lowest."""
    p = d["pyro"]
    epochs, loss = p["epochs"], p["test_loss"]
    at20 = min(range(len(epochs)), key=lambda i: abs(epochs[i] - 20))
    low = min(range(len(loss)), key=loss.__getitem__)
    end = ("its lowest value at the last epoch" if low == len(loss) - 1 else
           f"its lowest, {loss[low]:.2f}, at epoch {epochs[low]}")
    return (f"The loss falls fast to epoch {epochs[at20]} (from {loss[0]:.2f} at epoch "
            f"{epochs[0]} to {loss[at20]:.2f}), then slowly, to {loss[-1]:.2f} at epoch "
            f"{epochs[-1]} ({end}).")


# --- docs/notebooks/lecture.md: notebook_lecture.json ---------------------------------------

def nb_lecture_full_run(d: dict) -> str:
    return _full_run(d)


def nb_lecture_pca(d: dict) -> str:
    first, second = d["pca"]["explained_variance_ratio"][:2]
    return (f"Fitted on the {d['pca']['fitted_on']}, the two components keep "
            f"{100 * first:.1f}% and {100 * second:.1f}% of the variance.")


def nb_lecture_ppca(d: dict) -> str:
    sd = d["ppca"]["posterior_sd"]
    return (f"noise variance $\\sigma^2 = {d['ppca']['sigma2']:.4f}$, posterior standard "
            f"deviations of $z$ of {sd[0]:.3f} and {sd[1]:.3f}, the same for every image.")


def nb_lecture_losses(run: dict) -> str:
    """A network's training loss per epoch: the epoch's summed loss and per image."""
    n = len(run["epoch_loss_sum"])
    return "\n".join(_table(
        ["epoch", *range(n)],
        [["epoch loss", *(f"{v:.0f}" for v in run["epoch_loss_sum"])],
         ["per image", *(f"{v:.2f}" for v in run["train_loss_per_image"])]]))


def nb_lecture_vae_difference(d: dict) -> str:
    return (f"their difference reaches {d['vae2d']['reconstruction_difference_max']:.2f} in "
            f"grey level")


def nb_lecture_outside(d: dict) -> str:
    v = d["vae2d"]
    return f"{v['means_outside_grid']} of the {v['points']} means lie outside [-3, 3]^2."


# --- docs/notebooks/dpm2.md: notebook_dpm2.json ---------------------------------------------

def nb_dpm2_full_run(d: dict) -> str:
    return (f"ran its {d['steps']} steps to the end (measured {d['measured']}; its times are "
            f"in the table)")


def nb_dpm2_dev_curves(d: dict) -> str:
    """The list item on the dev curves, the rate's first and final values from the data."""
    return (f"- **Dev curves:** ELBO and L climb steeply over the first assessments and "
            f"flatten near their final values; D falls correspondingly. The rate rises from "
            f"{d['first_forward']['R']:.1f} nats at the first forward pass to a final dev "
            f"value of {d['dev_final']['rate']:.1f}; in the figure most of the rise comes by "
            f"the first assessments and the rate stays near that level. This is the seed's "
            f"shape of a classic VAE run without collapse.")


def _nb(name: str) -> dict:
    return _data(f"notebook_{name}.json")


def hw2_theory_problem1(d: dict) -> str:
    """Homework 2 theory, Problem 1: the score-function estimator's check in the port's run."""
    p = d["problem1"]
    return (f"The port's run: {p['num_draws']} draws of the score-function gradient at a "
            "posterior one standard deviation off and 20% too narrow on the 5-D PPCA reference "
            f"(`jvae.testing.estimator_report`): largest bias {p['bias_z']:.2f} standard errors "
            f"({'unbiased' if p['unbiased'] else 'biased'}); the trace of its covariance for "
            f"the inference network is **{p['variance_ratio_inference']:.0f} $\\pm$ "
            f"{p['variance_ratio_inference_se']:.0f}** times that of the reparameterised "
            f"gradient; its signal-to-noise ratio (median $|$mean$|/$sd) is "
            f"{p['snr_inference']:.3f}.")


def hw2_theory_problem2(d: dict) -> str:
    """Homework 2 theory, Problem 2: the IWAE bounds against the exact log p(x)."""
    p = d["problem2"]
    lines = ["| K | $\\mathcal{L}_K$ | gap to $\\log p(x)$ |", "|---|---|---|"]
    for k, (mean, se) in sorted(p["bounds"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {k} | {mean:.4f} $\\pm$ {se:.4f} | {p['log_px'] - mean:.4f} |")
    lines.append(f"| exact $\\log p(x)$ | {p['log_px']:.4f} | 0 |")
    return "\n".join(lines)


def hw2_theory_problem3(d: dict) -> str:
    """Homework 2 theory, Problem 3: the M-step, EM and log-det gradient checks."""
    p = d["problem3"]
    first, last = p["em_log_likelihood_first_last"]
    return (f"The M-step's $\\pi$ differs from $\\frac1n\\sum_i \\xi_k^i$ by at most "
            f"{p['pi_max_abs_error']:.1e} and its $\\Sigma$ from the formula of 3.2 by at most "
            f"{p['sigma_max_abs_error']:.1e}; EM (`jvae.fit_gmm`, {p['em_iterations']} "
            f"iterations) raised the mean log-likelihood from {first:.4f} to {last:.4f}, never "
            f"decreasing (smallest step {p['em_min_increase']:.1e}); in float64 `jax.grad` of "
            f"$\\log\\det A$ differs from $A^{{-\\top}}$ by at most "
            f"{p['logdet_gradient_max_abs_error']:.1e} for a $4 \\times 4$ matrix.")


TABLES = {
    "lecture-timing": lambda: lecture_timing(_data("lecture.json")),
    "lecture-numbers": lambda: lecture_numbers(_data("lecture.json")),
    "lecture-reading": lambda: lecture_reading(_data("lecture.json")),
    "lecture-pca-variance": lambda: lecture_pca_variance(_data("lecture.json")),
    "gaussian2d-numbers": lambda: gaussian2d_numbers(_nb("homework2")),
    "gaussian2d-figure-runs": gaussian2d_figure_runs,
    "homework2-full-run": lambda: _full_run(_nb("homework2")),
    "homework2-helpers": lambda: homework2_helpers(_nb("homework2")),
    "homework2-rates": lambda: homework2_rates(_nb("homework2")),
    "homework2-latent-stats": lambda: homework2_latent_stats(_nb("homework2")),
    "homework2-kl-curves": lambda: homework2_kl_curves(_nb("homework2")),
    "lab5-example-log": lambda: lab5_example_log(_nb("lab5")),
    "lab5-example-first-epoch": lambda: lab5_example_first_epoch(_nb("lab5")),
    "lab5-example-last-epoch": lambda: lab5_example_last_epoch(
        _nb("lab5"), _data("pytorch_example_seeds.json")),
    "lab5-question": lambda: lab5_question(_nb("lab5")),
    "lab5-question-ranking": lambda: lab5_question_ranking(_nb("lab5")),
    "lab5-pyro-reading": lambda: lab5_pyro_reading(_nb("lab5")),
    "nb-lecture-full-run": lambda: nb_lecture_full_run(_nb("lecture")),
    "nb-lecture-pca": lambda: nb_lecture_pca(_nb("lecture")),
    "nb-lecture-ppca": lambda: nb_lecture_ppca(_nb("lecture")),
    "nb-lecture-ae-loss": lambda: nb_lecture_losses(_nb("lecture")["autoencoder"]),
    "nb-lecture-vae-loss": lambda: nb_lecture_losses(_nb("lecture")["vae2d"]),
    "nb-lecture-vae-difference": lambda: nb_lecture_vae_difference(_nb("lecture")),
    "nb-lecture-outside": lambda: nb_lecture_outside(_nb("lecture")),
    "nb-dpm2-full-run": lambda: nb_dpm2_full_run(_nb("dpm2")),
    "nb-dpm2-dev-curves": lambda: nb_dpm2_dev_curves(_nb("dpm2")),
    "hw2-theory-problem1": lambda: hw2_theory_problem1(_nb("homework2")),
    "hw2-theory-problem2": lambda: hw2_theory_problem2(_nb("homework2")),
    "hw2-theory-problem3": lambda: hw2_theory_problem3(_nb("homework2")),
}
