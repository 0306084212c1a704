"""The documentation: the API reference covers ``jvae.__all__``, figures exist and are small,
every results page shows its figure and command, the README's test command is CI's."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import zlib

import pytest

import jvae

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIGURES = DOCS / "figures"
MAX_FIGURE_BYTES = 300_000


def _inventory(path: pathlib.Path) -> dict[str, str]:
    """The objects of a Sphinx ``objects.inv`` (as mkdocstrings writes it): name -> URL."""
    head = path.read_bytes().split(b"\n", 4)
    assert head[0].startswith(b"# Sphinx inventory version 2"), head[0]
    entries = {}
    for line in zlib.decompress(head[4]).decode().splitlines():
        name, _domain_role, _priority, url, *_ = line.split(" ")
        entries[name] = url.replace("$", name)
    return entries


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    # Not --quiet: it hides the warnings that --strict counts (a broken link would pass).
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


def test_every_public_name_is_rendered_in_the_api_reference(site):
    inventory = _inventory(site / "objects.inv")
    missing = [name for name in jvae.__all__ if f"jvae.{name}" not in inventory]
    assert not missing, (f"names in jvae.__all__ missing from the API reference: {missing}; "
                         "add a '::: jvae.MODULE' directive for their module under docs/api/")
    pages: dict[str, str] = {}
    for name in jvae.__all__:
        url = inventory[f"jvae.{name}"]
        page, _, anchor = url.partition("#")
        assert page.startswith("api/"), f"jvae.{name} is rendered outside the API reference: {url}"
        if page not in pages:
            pages[page] = (site / page / "index.html").read_text()
        assert f'id="{anchor}"' in pages[page], f"jvae.{name}: no anchor {anchor} on {page}"


def _markdown_files():
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_figures_exist_are_small_and_in_the_manifest():
    manifest = json.loads((FIGURES / "manifest.json").read_text())
    referenced = set()
    for md in _markdown_files():
        for name in re.findall(r"figures/([\w.-]+\.png)", md.read_text()):
            referenced.add(name)
            assert (FIGURES / name).is_file(), f"{md.relative_to(ROOT)} shows a missing figure {name}"
    pngs = {p.name for p in FIGURES.glob("*.png")}
    assert referenced <= pngs
    assert pngs == set(manifest), ("docs/figures and its manifest.json disagree: run "
                                   "python -m experiments.figures")
    for name in pngs:
        size = (FIGURES / name).stat().st_size
        assert size < MAX_FIGURE_BYTES, f"{name} is {size} bytes (keep figures under 300 KB)"
        assert manifest[name]["bytes"] == size, f"{name} changed since experiments.figures drew it"
        assert {"source", "code_sha256", "source_sha256", "generated"} <= set(manifest[name])


@pytest.mark.parametrize("page", sorted(p.name for p in (DOCS / "results").glob("*.md")
                                        if p.name != "index.md"))
def test_results_pages_show_their_figure_and_command(page):
    text = (DOCS / "results" / page).read_text()
    assert re.search(r"!\[[^\]]*\]\(\.\./figures/[\w.-]+\.png\)", text), f"{page} shows no figure"
    commands = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert any("python " in c for c in commands), f"{page} gives no command in a bash block"
    assert "python -m experiments.figures" in text, (f"{page} does not say how its figure is "
                                                     "regenerated")
    # The date may come from the page's data file (a table marker), so read it as built.
    assert re.search(r"20\d\d-\d\d-\d\d", _data_tables_hook().render(text)), (
        f"{page} does not date its numbers")


def test_readme_is_short_and_its_test_command_is_cis():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    command = "python -m pytest -q -n 2 --dist loadfile"
    assert ci[-1] == command, "the pytest line must stay last in .ci/run"
    assert re.search(rf"^JVAE_DATA_DIR=\S+ {command}$", readme, re.M)
    assert "mkdocs build --strict" in " ".join(ci)
    for heading in ("## Install", "## Tests", "## Results"):
        assert heading in readme


def test_figure_sources_name_code_that_exists():
    from experiments import figures

    names = [f for s in figures.SOURCES for f in s.outputs.values()]
    assert len(names) == len(set(names))
    for source in figures.SOURCES:
        assert len(figures.code_hash(source)) == 64  # raises if a drawing function was renamed
        if source.data is not None:
            assert (DOCS / "data" / source.data).is_file()


def _data_tables_hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location("data_tables", DOCS / "hooks" / "data_tables.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def test_reliability_tables_are_generated_from_their_data_file():
    """The benchmarks page types no reliability number: its markers become tables rendered
    from docs/data/reliability.json (the probes' --record) when the site is built."""
    hook = _data_tables_hook()
    page = (DOCS / "benchmarks.md").read_text()
    section = page[page.index("## Reliability probes"):]
    section = section[:section.find("\n## ", 5) if "\n## " in section[5:] else None]
    assert not re.search(r"^\|", section, re.M), "a typed table in the reliability section"
    rendered = hook.render(section)
    data = json.loads((DOCS / "data" / "reliability.json").read_text())
    for name, counts in data["probe_faults"]["counts"].items():
        row = next(line for line in rendered.splitlines() if line.startswith(
            f"| {hook.SETS.get(name, name)} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) == sum(counts.values())
        assert dict(zip(hook.VERDICTS, map(int, cells[2:]))) == {
            v: counts.get(v, 0) for v in hook.VERDICTS}
    stops = data["kill_resume"]["rows"]
    assert sum(line.startswith(("| SIGKILL", "| SIGTERM", "| SIGINT"))
               for line in rendered.splitlines()) == len(stops)
    assert f"{data['kill_resume']['identical']}/{len(stops)} stopped" in rendered
    with pytest.raises(KeyError, match="unknown table marker"):
        hook.render("<!-- table: nonsense -->")


def test_dpm2_tables_are_generated_from_their_data_files():
    """The DPM2 pages' markers render one row per run of docs/data/dpm2.json (best dev ELBO
    first, each with its own ELBO) and the port's numbers from notebook_dpm2.json."""
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "dpm2.json").read_text())
    finished = hook.render("<!-- table: dpm2-finished -->").splitlines()
    rows = [line for line in finished if line.startswith("| `")]
    assert [r.split("|")[1].strip(" `") for r in rows] == [
        r["variant"] for r in sorted(data["rows"], key=lambda r: -r["elbo"])]
    for line, r in zip(rows, sorted(data["rows"], key=lambda r: -r["elbo"])):
        assert f"| {r['elbo']:.2f} |" in line
    partial = hook.render("<!-- table: dpm2-partial -->")
    for r in data["partial"]:
        assert f"| `{r['variant']}` |" in partial and f"| {r['step']} |" in partial
    port = json.loads((DOCS / "data" / "notebook_dpm2.json").read_text())
    assert f"{port['dev_final']['elbo']:.2f}" in hook.render("<!-- table: notebook-dpm2 -->")
    for page in ("results/dpm2.md", "notebooks/dpm2.md"):
        assert "<!-- table: " in (DOCS / page).read_text(), page


def test_lab5_tables_are_generated_from_its_data_file():
    """The Lab 5 page's Pyro table shows every recorded test loss of notebook_lab5.json and
    its commands table every command that wrote the file."""
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "notebook_lab5.json").read_text())
    pyro = hook.render("<!-- table: notebook-lab5-pyro -->")
    assert len(data["pyro"]["test_loss"]) == len(data["pyro"]["epochs"]) >= 2
    for epoch, loss in zip(data["pyro"]["epochs"], data["pyro"]["test_loss"]):
        assert f" {epoch} |" in pyro.splitlines()[0] and f" {loss:.2f} " in pyro
    commands = hook.render("<!-- table: notebook-lab5-commands -->")
    for c in data["commands"]:
        assert f"| `{c['command']}` | {c['seconds']:.0f} |" in commands
    page = (DOCS / "notebooks" / "lab5.md").read_text()
    assert "<!-- table: notebook-lab5-pyro -->" in page and "Not finished" not in page


@pytest.mark.parametrize("name, file", [("bench-epoch", "bench_epoch.json"),
                                        ("bench-seeds", "bench_seeds.json"),
                                        ("bench-conv", "bench_conv.json")])
def test_benchmark_tables_are_generated_from_their_commands_json(name, file):
    """The benchmarks page types no measured number: each benchmark's marker renders its
    command's --json file, one row per program (or S), with the command and date under it."""
    hook = _data_tables_hook()
    page = (DOCS / "benchmarks.md").read_text()
    assert f"<!-- table: {name} -->" in page
    assert f"--json docs/data/{file}" in page, f"the page does not give {file}'s command"
    for section in page.split("\n## ")[1:4]:            # epoch, seeds, conv: no typed table
        assert not re.search(r"^\|", section, re.M), section[:80]
    data = json.loads((DOCS / "data" / file).read_text())
    rendered = hook.render(f"<!-- table: {name} -->")
    assert f"`{data['command']}`, measured {data['measured']}" in rendered
    rows = [line for line in rendered.splitlines() if line.startswith("| ")][2:]
    if name == "bench-epoch":
        programs = [p for p in hook.EPOCH_PROGRAMS if p in data["programs"]]
        assert [r.split("|")[1].strip() for r in rows] == [hook.EPOCH_PROGRAMS[p]
                                                          for p in programs]
        for row, p in zip(rows, programs):
            assert f"| {data['programs'][p]['median_seconds']:.3f} s |" in row
            if p != "jvae":
                assert f"| {data['ratios'][f'jvae/{p}']:.2f} |" in row
    elif name == "bench-seeds":
        assert [r.split("|")[1].strip() for r in rows] == sorted(data["seeds"], key=int)
        for row, s in zip(rows, sorted(data["seeds"], key=int)):
            assert f"| {data['seeds'][s]['ratio']:.2f} |" in row
    else:
        assert len(rows) == len(data["rows"])
        for row, (program, r) in zip(rows, data["rows"].items()):
            assert row.startswith(f"| {hook.conv_label(program)} |")
            assert f"| {r['subpixel_s']:.3f} | {r['native_s']:.3f} | {r['torch_s']:.3f} |" in row


def test_benchmark_renderers_read_what_the_commands_write():
    """The renderers take the shape the commands' --json files have (bench_epoch's
    ``programs``/``ratios``, bench_seeds' ``seeds`` keyed by S as strings, bench_conv's
    ``rows``), with the fields ``experiments.bench_record.stamp`` adds."""
    from experiments.bench_record import stamp

    hook = _data_tables_hook()
    epoch = stamp({"programs": {"jvae": {"median_seconds": 2.0, "median_cpu_seconds": 3.0},
                                "torch": {"median_seconds": 4.0, "median_cpu_seconds": 3.0}},
                   "ratios": {"jvae/torch": 0.5}, "cpu_ratios": {"jvae/torch": 1.0},
                   "rounds": 3, "images": 100, "start_to_first_jvae_epoch_seconds": 9.87},
                  "experiments.bench_epoch", ["--rounds", "3"])
    table = hook.bench_epoch_table(epoch)
    assert "| PyTorch | 4.000 s | 3.000 | 0.50 | 1.00 |" in table
    assert "NumPyro" not in table and "9.9 s" in table
    assert "`python -m experiments.bench_epoch --rounds 3`, measured 20" in table
    seeds = stamp({"seeds": {"8": {"sequential_seconds": 20.0, "vmapped_seconds": 25.0,
                                   "ratio": 1.25, "min_ratio": 1.2},
                             "2": {"sequential_seconds": 5.0, "vmapped_seconds": 4.0,
                                   "ratio": 0.8, "min_ratio": 0.75}}},
                  "experiments.bench_seeds", [])
    assert [line.split("|")[1].strip() for line in hook.bench_seeds_table(seeds).splitlines()
            if line.startswith("| ")][2:] == ["2", "8"]
    assert hook.conv_label("default_decoder_grad") == "default conv model: decoder gradient"
    assert hook.conv_label("dpm2_step") == "DPM2 CNN VAE: training step"
    with pytest.raises(KeyError):
        hook.bench_seeds_table({"seeds": {}})              # no command, no date: no table


def _ci_extras() -> set[str]:
    (line,) = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
               if "pip install" in ln and " -e " in ln]
    return set(re.search(r'-e "\.\[([\w,-]+)\]"', line).group(1).split(","))


def test_install_commands_in_the_docs_agree_with_ci_and_pyproject():
    """Every ``pip install -e ".[...]"`` and every ``.[...]`` in README and docs names extras
    that pyproject.toml defines; every sentence saying what CI installs names exactly the
    extras .ci/run installs; getting-started's table has one row per extra."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["project"]["optional-dependencies"])
    ci = _ci_extras()
    assert ci <= extras
    said = 0
    for md in _markdown_files():
        text = md.read_text()
        for group in re.findall(r"\.\[([\w,-]+)\]", text):
            unknown = set(group.split(",")) - extras
            assert not unknown, f"{md.relative_to(ROOT)} names extras {unknown} not in pyproject"
        for claim in re.findall(r"\bCI\b.{0,40}?install(?:s|ing).{0,20}?`\.\[([\w,-]+)\]`",
                                text.replace("\n", " ")):
            said += 1
            assert set(claim.split(",")) == ci, (f"{md.relative_to(ROOT)} says CI installs "
                                                 f".[{claim}]; .ci/run installs .[{','.join(sorted(ci))}]")
    assert said >= 3, "README, getting-started and the home page each say what CI installs"
    table = (DOCS / "getting-started.md").read_text()
    assert set(re.findall(r"^\| `\.\[([\w-]+)\]` \|", table, re.M)) == extras


def test_results_index_shows_the_readmes_generated_table_with_relative_links():
    hook = _data_tables_hook()
    table = hook.render("<!-- table: results-summary -->")
    assert "](docs/" not in table and "](flows.md)" in table and "](../figures/" in table
    from experiments import readme_results
    assert len(table.splitlines()) == len(readme_results.ROWS + readme_results.DOCS_ROWS) + 2


def test_main_command_numbers_on_the_pages_come_from_readme_run():
    """The pytorch_example page, getting-started and the evaluation guide state the main
    command's numbers from docs/data/readme_run.json (what the README's commands printed)."""
    hook = _data_tables_hook()
    run = json.loads((DOCS / "data" / "readme_run.json").read_text())
    table = hook.render("<!-- table: pytorch-main-run -->")
    assert f"**{-run['train']['final']['eval/elbo']:.2f}**" in table
    assert f"**{run['evaluate']['log_likelihood']:.2f}**" in table
    assert f"{run['train']['test_elbo_printed']:.2f}" in hook.render(
        "<!-- table: readme-main-command -->")
    manifest = json.loads((DOCS / "figures" / "manifest.json").read_text())
    summary = manifest["pytorch_example_curves.png"]["run_summary"]
    assert f"{summary['eval/elbo']:.2f}" in hook.render(
        "<!-- table: figure-run-pytorch-example -->")
    for page, marker in (("results/pytorch_example.md", "pytorch-main-run"),
                         ("getting-started.md", "readme-main-command"),
                         ("guides/evaluation.md", "readme-main-command")):
        assert f"<!-- table: {marker} -->" in (DOCS / page).read_text(), page


def _results_page(name: str) -> str:
    return (DOCS / "results" / f"{name}.md").read_text()


def _assert_markers_and_no_typed(page: str, markers, typed) -> None:
    """``page`` holds every marker and none of the values that it used to type."""
    text = _results_page(page)
    for marker in markers:
        assert f"<!-- table: {marker} -->" in text, (page, marker)
    for value in typed:
        assert value not in text, (page, value)


def test_pyro_vae_page_is_generated_from_its_data_file():
    """docs/results/pyro_vae.md: the benchmark's per-epoch table, the seeds and the 100-epoch
    run are rendered from docs/data/pyro_vae.json."""
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "pyro_vae.json").read_text())
    bench, run = data["bench"], data["run"]
    epochs = hook.render("<!-- table: pyro-vae-epochs -->")
    for r in bench["per_epoch"]:
        assert (f"| {r['epoch']} | {r['jvae_seconds']:.2f} | {r['pyro_seconds']:.2f} | "
                f"{r['jvae_test_loss']:.2f} | {r['pyro_test_loss']:.2f} |") in epochs
    assert f"ratio jvae / Pyro **{bench['ratio']:.2f}**" in epochs
    assert f"Pyro **{bench['pyro_median_seconds']:.2f} s**" in epochs
    seeds = hook.render("<!-- table: pyro-vae-seeds -->")
    assert f"**{bench['jvae_mean']:.2f}** | {bench['jvae_sd']:.2f} |" in seeds
    assert f"{bench['pyro_mean'] - bench['jvae_mean']:.2f} nats below" in seeds
    assert f"{bench['pyro_mean'] - 2 * bench['pyro_sd']:.2f}-" in seeds
    final = hook.render("<!-- table: pyro-vae-run -->")
    assert all(f" {v:.2f} " in final for v in run["test_loss"])
    assert f"**{-run['final']['eval/elbo']:.2f} nats**" in final
    assert f"distortion {run['final']['eval/distortion']:.2f}" in final
    _assert_markers_and_no_typed(
        "pyro_vae", ("pyro-vae-epochs", "pyro-vae-seeds", "pyro-vae-run"),
        ("| 1 | 32.53 |", "**36.40 s**", "106.13-107.06", "5: 111.48", "74.78", "25.9 s",
         "10.21, 8.88"))
    # The only typed numbers left: the quiet-host run, in its dated historical table.
    text = _results_page("pyro_vae")
    assert "earlier measurement, kept as measured, not regenerated" in text
    assert text.count("3.09 s") == 1


def test_numerics_page_is_generated_from_its_data_file(tmp_path):
    """docs/results/numerics.md: four tables and the measurement line from numerics.json;
    the experiment's --docs writes the page as committed (markers, no numbers)."""
    from experiments import numerics

    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "numerics.json").read_text())
    vamp = hook.render("<!-- table: numerics-vamp -->")
    for r in data["vamp"]:
        assert f"| {r['sd']:g} | {r['max_error']:.1e} | {r['mean_error']:.1e} |" in vamp
    planar = hook.render("<!-- table: numerics-planar -->")
    assert all(f"| {r['product_form_non_finite']} |" in planar for r in data["planar"])
    em = hook.render("<!-- table: numerics-em -->")
    assert len([line for line in em.splitlines() if line.startswith("| ")]) == len(data["em"]) + 2
    assert all(f"| {r['difference']:+.1e} |" in em for r in data["em"])
    restarts = hook.render("<!-- table: numerics-restarts -->")
    assert all(f"| {r['sklearn_best']:.4f} |" in restarts for r in data["restarts"])
    assert data["date"][:10] in hook.render("<!-- table: numerics-measured -->")
    _assert_markers_and_no_typed(
        "numerics", ("numerics-vamp", "numerics-planar", "numerics-em", "numerics-restarts",
                     "numerics-measured"),
        ("3.1e-05", "| 196 |", "8.64e-06", "-7.9503", "Measured 2026"))
    page = tmp_path / "numerics.md"
    numerics.write_page(data, page)
    assert page.read_text() == _results_page("numerics")


def test_iwae_page_is_generated_from_its_data_file():
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "iwae_compare.json").read_text())
    table = hook.render("<!-- table: iwae-table -->")
    for r in data["rows"]:
        for key in ("test_elbo", "iwae_k5", "log_px_k5000"):
            assert f"{r[key][0]:.2f} +- {r[key][1]:.2f}" in table
        assert f"| {r['train_seconds']:.1f} |" in table
    assert "higher by {:.2f} +- {:.2f} nats".format(*data["log_px_difference"]) in table
    assert f"{data['total_minutes']:.1f} minutes" in table and data["measured"] in table
    _assert_markers_and_no_typed("iwae", ("iwae-table",),
                                 ("-95.19", "3.33 +-", "20.0 minutes", "50 ms", "-86.76"))


def test_likelihood_table_page_is_generated_from_its_data_file():
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "likelihood_table.json").read_text())
    table = hook.render("<!-- table: likelihood-table -->")
    for r in data["rows"]:
        assert f"| {r['epochs_run']} / {r['schedule_epochs']} | **{r['test_nll']:.2f}**" in table
        assert f"| {r['paper']:.2f} | {r['pythae']:.2f} |" in table
    assert data["date"][:10] in table and data["command"] in table
    if not data["all_test_images"]:
        assert f"first {data['eval_images']} of the 10000 test images" in table
    text = _results_page("likelihood_table")
    assert "ready, not yet run on an accelerator" in text
    _assert_markers_and_no_typed("likelihood_table", ("likelihood-table",),
                                 [f"{r['test_nll']:.2f}" for r in data["rows"]])


def test_rate_distortion_page_is_generated_from_its_data_file():
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "rate_distortion.json").read_text())
    table = hook.render("<!-- table: rate-distortion-table -->")
    for key in ("rate", "distortion", "neg_elbo"):
        assert " | ".join(f"{v:.2f}" for v in data[key]) in table
    best = min(range(len(data["beta"])), key=lambda i: data["neg_elbo"][i])
    assert f"best ELBOs: {data['neg_elbo'][best]:.2f} at beta = {data['beta'][best]:g}" in table
    assert f"{data['seconds_per_epoch_all_models']:.1f} s per epoch" in table
    _assert_markers_and_no_typed("rate-distortion", ("rate-distortion-table",),
                                 ("59.50", "112.21", "22.2 s", "(2026-11-21)"))


def test_estimator_variance_page_is_generated_from_its_data_files():
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "estimator_variance.json").read_text())
    table = hook.render("<!-- table: estimator-variance-table -->")
    for name, *_, fashion_elbo in data["rows"]:
        assert f"| {name} |" in table and f"| {fashion_elbo:.2f} |" in table
    mantissa, exponent = f"{data['rows'][1][3]:.1e}".split("e")  # as the experiment prints
    assert f"| {data['rows'][1][0]} | {data['rows'][1][1]:g} |" in table
    assert f"| {mantissa}e{int(exponent)} |" in table
    assert f"in {data['seconds']} s" in table
    report = json.loads((DOCS / "data" / "estimator_report.json").read_text())
    ppca = hook.render("<!-- table: estimator-variance-ppca -->")
    assert "\n".join(report["table"].splitlines()[2:]) in ppca  # jvae.testing.report_table's
    assert f"in {report['seconds']:.0f} s" in ppca and "s = " not in ppca
    for r in report["rows"]:
        if r["note"]:
            assert f"{r['name']} {r['note'].rsplit('= ', 1)[1]}" in ppca
    biased = ", ".join(r["name"] for r in report["rows"] if r["unbiased"] is False)
    assert f"Biased for their target: {biased or 'none'};" in ppca
    _assert_markers_and_no_typed(
        "estimator-variance", ("estimator-variance-table", "estimator-variance-ppca"),
        ("569 s", "-1469.59", "| 9150 |", "0.3-1.3", "129 s", "4.7-5.3", "2.08", "566.90",
         "2.2-139x"))


def test_linear_vae_page_is_generated_from_its_data_file():
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "linear_vae_ppca.json").read_text())
    table = hook.render("<!-- table: linear-vae-table -->")
    for r in data["rows"]:
        for split in ("train", "test"):
            s = r[split]
            assert (f"| {split} | {s['ppca']:.3f} | {s['vae_log_px']:.3f} | {s['vae_elbo']:.3f}"
                    f" | {s['gap_log_px']:.4f} | {s['gap_elbo']:.4f} |") in table
        assert f"{r['collapse']['vae']} / {r['collapse']['ppca']} of {r['k']}" in table
    timing = hook.render("<!-- table: linear-vae-timing -->")
    assert all(f"{r['case']} {r['train_seconds']:.0f} s" in timing for r in data["rows"])
    k10 = next(r for r in data["rows"] if r["case"] == "MNIST k=10")
    assert f"{k10['test']['vae_elbo_mc']:.3f} vs {k10['test']['vae_elbo']:.3f}" in hook.render(
        "<!-- table: linear-vae-mc-check -->")
    assert f"within {k10['train']['gap_log_px']:.3f} nats" in hook.render(
        "<!-- table: linear-vae-claim1 -->")
    lam = [n + k10["sigma2_ppca"] for n in k10["collapse"]["ppca_col_sq_norm"]]
    assert ", ".join(f"{v:.2f}" for v in lam[4:]) in hook.render(
        "<!-- table: linear-vae-plateau -->")
    claim2 = hook.render("<!-- table: linear-vae-claim2 -->")
    figure = hook.render("<!-- table: linear-vae-figure -->")
    for r in data["rows"]:
        if r["noise"] == "fixed":
            below = [j for j, v in enumerate(lam) if v <= r["sigma2_ppca"]]
            assert (f"`lambda_{below[0] + 1}..{below[-1] + 1}` = {lam[below[0]]:.2f} to "
                    f"{lam[below[-1]]:.2f}") in claim2
            assert f"the VAE collapses {r['collapse']['vae']}" in claim2
            assert f"{r['k'] - r['collapse']['vae']} dimension" in figure
    _assert_markers_and_no_typed(
        "linear-vae", ("linear-vae-timing", "linear-vae-table", "linear-vae-mc-check",
                       "linear-vae-claim1", "linear-vae-plateau", "linear-vae-claim2",
                       "linear-vae-figure"),
        ("272 s", "184.495", "186.623", "0.03447", "2.52, 2.33", "1.0000", "0.998-0.999",
         "0.006-0.028", "(2026-12-01)"))

def _page(path: str) -> str:
    return (DOCS / path).read_text()


def _json(name: str) -> dict:
    return json.loads((DOCS / "data" / name).read_text())


def _assert_generated(page: str, markers, old_typed):
    """``page`` holds every marker, and none of the values it typed before they were
    generated (each string is a typed value in its old context)."""
    text = _page(page)
    for marker in markers:
        assert f"<!-- table: {marker} -->" in text, f"{page} lost its marker {marker}"
    for old in old_typed:
        assert old not in text, f"{page} still types {old!r}"
    return text


def test_lecture_results_page_is_generated_from_lecture_json():
    """docs/results/lecture.md: the table, its notes and the timings come from lecture.json;
    its heading's date is the data file's."""
    hook = _data_tables_hook()
    d = _json("lecture.json")
    rows = d["rows"]
    table = hook.render("<!-- table: lecture-numbers -->")
    for key, label in (("PCA-2", "PCA, 2 components"), ("AE-2", "autoencoder, 2-D code"),
                       ("VAE-2", "VAE, 2-D latent")):
        line = next(r for r in table.splitlines() if r.startswith(f"| {label} |"))
        for metric in ("sse", "bce"):
            mean, se = rows[key][metric]
            assert f"{mean:.2f}" in line and f"+- {se:.2f}" in line
    vae = rows["VAE-2"]
    assert f"**{vae['elbo']:.2f}** (rate {vae['rate']:.2f}" in table
    assert f"**{vae['log_px_importance']:.2f}** (K = {d['ll_samples']})" in table
    best_sse = min(("PCA-2", "PPCA-2", "AE-2", "VAE-2"), key=lambda k: rows[k]["sse"][0])
    assert f"**{rows[best_sse]['sse'][0]:.2f}**" in table
    notes = hook.render("<!-- table: lecture-reading -->")
    assert f"{vae['log_px_importance'] - vae['elbo']:.1f} nats above the ELBO" in notes
    assert f"PCA's {rows['PCA-2']['sse'][0]:.1f}" in notes
    assert f"`sigma^2 = {d['ppca_sigma2']:.3f}`" in notes
    timing = hook.render("<!-- table: lecture-timing -->")
    assert f"**{d['seconds']['total']:.0f} s**" in timing
    assert f"the t-SNE {d['seconds']['tsne']:.0f} s" in timing
    share = hook.render("<!-- table: lecture-pca-variance -->")
    assert f"{100 * d['pca_explained_variance_ratio'][0]:.0f}%" in share
    text = _assert_generated(
        "results/lecture.md",
        ("lecture-timing", "lecture-numbers", "lecture-reading", "lecture-pca-variance"),
        ("**379 s**", "| 43.65 +- 0.14", "**-150.47**", "3.5 nats above", "`sigma^2 = 0.056`",
         "median 0.06", "130 of the 10000", "100 of the 10000 codes", "about 4.5"))
    assert f"## Numbers ({d['measured']})" in text


def test_gaussian2d_results_page_is_generated_from_homework2_and_the_manifest():
    """docs/results/gaussian2d.md: the rates of notebook_homework2.json's seed-0 runs and
    seeds, and the figure runs' numbers from docs/figures/manifest.json."""
    hook = _data_tables_hook()
    d = _json("notebook_homework2.json")
    t = d["task2"]
    table = hook.render("<!-- table: gaussian2d-numbers -->")
    for mode in ("univariate", "multivariate"):
        line = next(r for r in table.splitlines() if r.startswith(f"| {mode} "))
        assert f"| **{t['seed0'][mode]['rate']:.3f}** | {t['seed0'][mode]['elbo']:.2f} |" in line
        rates = t["seeds"][mode]["rate"]
        assert f"{min(rates):.2f}-{max(rates):.2f} ({mode})" in table
    assert f"measured {d['measured']}" in table
    assert "expected log-density is -3.94" in table     # -(log(2 pi e) + log 3): the data's
    manifest = json.loads((FIGURES / "manifest.json").read_text())
    runs = hook.render("<!-- table: gaussian2d-figure-runs -->")
    for mode in ("univariate", "multivariate"):
        summary = manifest[f"gaussian2d_{mode}.png"]["run_summary"]
        assert (f"rate {summary['eval/rate']:.4f} / ELBO {summary['eval/elbo']:.4f} ({mode}"
                in runs)
    text = _assert_generated("results/gaussian2d.md",
                             ("gaussian2d-numbers", "gaussian2d-figure-runs"),
                             ("**0.140**", "| -4.04 |", "rate 0.1397", "ELBO -4.3438",
                              "0.74-1.15"))
    assert f"## Numbers ({d['measured']})" in text


def test_homework2_page_is_generated_from_its_data_file():
    """docs/notebooks/homework2.md: the run, the helpers, the rates, the latent statistics and
    the KL curves' end values from notebook_homework2.json; the homework's asserted values
    quoted from the seed."""
    hook = _data_tables_hook()
    d = _json("notebook_homework2.json")
    t = d["task2"]
    run = hook.render("<!-- table: homework2-full-run -->")
    assert (f"**Full run ({d['measured']}):** {d['wall_seconds']:.0f} s" in run
            and f"{d['host']['load_average_at_end'][0]:.1f} at the end" in run)
    helpers = hook.render("<!-- table: homework2-helpers -->")
    assert "200.2144, 1.50925, [49.2990, 1498.479]" in helpers and "within its" in helpers
    assert f"{d['helpers']['normal_kl'][1]:.4f}" in helpers
    rates = hook.render("<!-- table: homework2-rates -->")
    for mode in ("univariate", "multivariate"):
        line = next(r for r in rates.splitlines() if r.startswith(f"| {mode} "))
        assert f"**{t['seed0'][mode]['rate']:.3f}** | {t['seed0'][mode]['elbo']:.3f} |" in line
        assert ", ".join(f"{v:.3f}" for v in t["seeds"][mode]["elbo"]) in line
    uni = t["seeds"]["univariate"]["rate"]
    assert f"falls to {min(uni):.2f}-{max(uni):.2f} nats" in rates
    stats = hook.render("<!-- table: homework2-latent-stats -->")
    multi = t["latent_stats"]["multivariate"]
    assert f"({multi['mu_z_mean'][0]:.3f}, {multi['mu_z_mean'][1]:.3f})" in stats
    assert f"spread over {multi['mu_z_std'][0]:.2f}" in stats
    curves = hook.render("<!-- table: homework2-kl-curves -->")
    assert f"({t['seed0']['multivariate']['distortion']:.1f} against" in curves
    _assert_generated("notebooks/homework2.md",
                      ("homework2-full-run", "homework2-helpers", "homework2-rates",
                       "homework2-latent-stats", "homework2-kl-curves"),
                      ("776 s", "| **0.140** | -4.041", "(0.330, -0.015)", "spread over 0.85",
                       "6-11 nats", "(3.6 against 3.9", "in the thousands"))


def test_lab5_example_and_question_are_generated_from_its_data_file():
    """docs/notebooks/lab5.md: the example's log (the seed's printed numbers from the data
    file's seed_log), the question's table and its ranking from notebook_lab5.json."""
    hook = _data_tables_hook()
    d = _json("notebook_lab5.json")
    e, q = d["example"], d["question"]
    log = hook.render("<!-- table: lab5-example-log -->").splitlines()[2:]
    assert len(log) == len(e["epochs"])
    for line, n, st, jt, sv, jv in zip(log, e["epochs"], e["seed_log"]["train"],
                                       e["train_loss"], e["seed_log"]["test"], e["test_loss"]):
        assert line == f"| {n} | {st:.2f} | {jt:.2f} | {sv:.2f} | {jv:.2f} |"
    assert f"{e['train_loss'][0]:.2f} (training)" in hook.render(
        "<!-- table: lab5-example-first-epoch -->")
    seeds = _json("pytorch_example_seeds.json")["jvae"]
    last = hook.render("<!-- table: lab5-example-last-epoch -->")
    assert f"{e['test_loss'][-1]:.2f} against the seed's {e['seed_log']['test'][-1]:.2f}" in last
    assert f"{seeds['mean']:.2f} +- {seeds['std']:.2f}" in last
    table = hook.render("<!-- table: lab5-question -->")
    for name, v in q.items():
        line = next(r for r in table.splitlines() if r.startswith(f"| {name} ("))
        means = [sum(epoch) / len(epoch) for epoch in v["test_loss_per_epoch"]]
        assert f"| **{v['final_mean']:.2f}** | {means[0]:.2f} | {means[4]:.2f} |" in line
        assert ", ".join(f"{x:.2f}" for x in v["test_loss_per_epoch"][-1]) in line
    ranking = hook.render("<!-- table: lab5-question-ranking -->")
    order = sorted(q, key=lambda k: q[k]["final_mean"])
    assert ranking.startswith("Ranked by the final test loss: " + ", ".join(
        f"{k} ({q[k]['final_mean']:.2f})" for k in order) + ". ")
    gap = q["sigmoid + adagrad"]["final_mean"] - q["relu + adam"]["final_mean"]
    assert f"ends {gap:.2f} nats lower" in ranking
    pyro = hook.render("<!-- table: lab5-pyro-reading -->")
    assert f"to {d['pyro']['test_loss'][-1]:.2f} at epoch {d['pyro']['epochs'][-1]}" in pyro
    _assert_generated("notebooks/lab5.md",
                      ("lab5-example-log", "lab5-example-first-epoch", "lab5-example-last-epoch",
                       "lab5-question", "lab5-question-ranking", "lab5-pyro-reading"),
                      ("| 1 | 116.71 | 165.27", "| **105.67** |", "ends 27.21 nats lower",
                       "105.70 +- 0.15", "more than 60 minutes", "still falls a little"))


def test_lecture_notebook_page_is_generated_from_its_data_file():
    """docs/notebooks/lecture.md: the run, PCA's and PPCA's numbers, both loss tables and the
    VAE's figure numbers from notebook_lecture.json; no earlier run's numbers."""
    hook = _data_tables_hook()
    d = _json("notebook_lecture.json")
    assert f"{d['wall_seconds']:.0f} s of wall time" in hook.render(
        "<!-- table: nb-lecture-full-run -->")
    assert f"{100 * d['pca']['explained_variance_ratio'][1]:.1f}%" in hook.render(
        "<!-- table: nb-lecture-pca -->")
    ppca = hook.render("<!-- table: nb-lecture-ppca -->")
    assert f"{d['ppca']['sigma2']:.4f}" in ppca and f"{d['ppca']['posterior_sd'][1]:.3f}" in ppca
    for marker, key in (("nb-lecture-ae-loss", "autoencoder"), ("nb-lecture-vae-loss", "vae2d")):
        lines = hook.render(f"<!-- table: {marker} -->").splitlines()
        assert lines[2] == "| epoch loss | " + " | ".join(
            f"{v:.0f}" for v in d[key]["epoch_loss_sum"]) + " |"
        assert lines[3] == "| per image | " + " | ".join(
            f"{v:.2f}" for v in d[key]["train_loss_per_image"]) + " |"
    assert f"{d['vae2d']['reconstruction_difference_max']:.2f} in grey level" in hook.render(
        "<!-- table: nb-lecture-vae-difference -->")
    assert f"{d['vae2d']['means_outside_grid']} of the" in hook.render(
        "<!-- table: nb-lecture-outside -->")
    _assert_generated("notebooks/lecture.md",
                      ("nb-lecture-full-run", "nb-lecture-pca", "nb-lecture-ppca",
                       "nb-lecture-ae-loss", "nb-lecture-vae-loss", "nb-lecture-vae-difference",
                       "nb-lecture-outside"),
                      ("1746 s", "1093 s", "10.0% and 7.5%", "0.0557", "| 7543460 |",
                       "| 182.50 |", "reaches 0.14", "133 of the", "PC 1 about -4"))


def test_dpm2_notebook_page_is_generated_from_its_data_file():
    """docs/notebooks/dpm2.md: the run's steps and the rate's values from notebook_dpm2.json;
    the figure readings no data file holds are gone."""
    hook = _data_tables_hook()
    d = _json("notebook_dpm2.json")
    assert f"ran its {d['steps']} steps" in hook.render("<!-- table: nb-dpm2-full-run -->")
    dev = hook.render("<!-- table: nb-dpm2-dev-curves -->")
    assert dev.startswith("- **Dev curves:**")
    assert (f"{d['first_forward']['R']:.1f} nats" in dev
            and f"final dev value of {d['dev_final']['rate']:.1f}" in dev)
    _assert_generated("notebooks/dpm2.md",
                      ("notebook-dpm2", "nb-dpm2-full-run", "nb-dpm2-dev-curves"),
                      ("(1155 steps)", "well under an hour", "between 27 and 30",
                       "below 10 in the first 50 steps", "first 200 steps"))


def test_pytorch_example_seeds_table_comes_from_its_data_file():
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "pytorch_example_seeds.json").read_text())
    table = hook.render("<!-- table: pytorch-seeds -->")
    for run in (data["jvae"], data["pytorch"]):
        assert f"**{run['mean']:.2f}**" in table
        assert ", ".join(f"{v:.2f}" for v in run["test_loss"]) in table
    assert f"| {data['reference']['test_loss']:.2f} |" in table
    page = (DOCS / "results" / "pytorch_example.md").read_text()
    assert "<!-- table: pytorch-seeds -->" in page and "105.62, 105.74" not in page


def test_dpm2_dev_eval_and_previous_tables_come_from_their_data_files():
    hook = _data_tables_hook()
    d = json.loads((DOCS / "data" / "dpm2_dev_eval.json").read_text())
    table = hook.render("<!-- table: dpm2-dev-eval -->")
    assert f"| {d['epoch_one_program']:.2f} |" in table
    assert f"{d['assessment']['K=100']['median']:.2f}" in table
    prev = json.loads((DOCS / "data" / "dpm2_previous.json").read_text())
    rendered = hook.render("<!-- table: dpm2-previous -->")
    assert all(f"| `{r['variant']}` |" in rendered and f"{r['elbo']:.2f}" in rendered
               for r in prev["rows"])
    page = (DOCS / "results" / "dpm2.md").read_text()
    assert "<!-- table: dpm2-dev-eval -->" in page and "| 19.28 |" not in page


def test_homework2_theory_checks_come_from_the_ports_data():
    hook = _data_tables_hook()
    d = json.loads((DOCS / "data" / "notebook_homework2.json").read_text())
    p2 = hook.render("<!-- table: hw2-theory-problem2 -->")
    for k, (mean, _se) in d["problem2"]["bounds"].items():
        assert f"| {k} | {mean:.4f} $\\pm$" in p2
    assert f"{d['problem1']['snr_inference']:.3f}" in hook.render(
        "<!-- table: hw2-theory-problem1 -->")
    first, last = d["problem3"]["em_log_likelihood_first_last"]
    assert f"from {first:.4f} to {last:.4f}" in hook.render("<!-- table: hw2-theory-problem3 -->")
    page = (DOCS / "notebooks" / "homework2-theory.md").read_text()
    assert "-7.5332" not in page and page.count("<!-- table: hw2-theory-problem") == 3


def test_vampprior_page_is_generated_from_its_data_file():
    """docs/results/vampprior.md types no number: per-seed rows, collapse and the budget are
    rendered from docs/data/vampprior.json (experiments/vampprior.py)."""
    hook = _data_tables_hook()
    data = json.loads((DOCS / "data" / "vampprior.json").read_text())
    table = hook.render("<!-- table: vampprior-table -->")
    for r in data["rows"]:
        for i, seed in enumerate(r["seeds"]):
            gone = "**yes**" if r["collapsed"][i] else "no"
            assert (f"| {r['row']} | {r['prior']} |" in table and f"| {seed} | "
                    f"{r['test_elbo'][i]:.2f} | {r['test_log_likelihood'][i]:.2f} | "
                    f"{r['test_rate'][i]:.2f} | {gone} |" in table), (r["row"], seed)
    assert data["date"][:10] in table and data["command"] in table
    means = hook.render("<!-- table: vampprior-means -->")
    assert all(f"| {r['row']} |" in means for r in data["rows"])
    _assert_markers_and_no_typed("vampprior", ("vampprior-table", "vampprior-means",
                                               "vampprior-epochs"),
                                 [f"{v:.2f}" for r in data["rows"] for v in r["test_rate"]
                                  if v >= 1.0])


def test_bench_memory_table_is_generated_from_its_data_file():
    """The data guide's memory table renders ``experiments/bench_memory.py``'s --json file:
    one row per (path, size) with its peak and seconds per step, every invocation's command."""
    hook = _data_tables_hook()
    assert "<!-- table: bench-memory -->" in (DOCS / "guides" / "data.md").read_text()
    data = json.loads((DOCS / "data" / "bench_memory.json").read_text())
    rendered = hook.render("<!-- table: bench-memory -->")
    rows = [line for line in rendered.splitlines() if line.startswith("| ")][2:]
    assert len(rows) == len(data["rows"]) > 0
    for row, r in zip(rows, data["rows"]):
        assert row.startswith(f"| {r['mode']} | {r['images']:,} |")
        assert f"| {r['peak_rss_bytes'] / 1e6:,.0f} MB |" in row
        assert f"| {r['seconds_per_step'] * 1e3:.2f} |" in row
    for run in data["invocations"]:
        assert f"`{run['command']}` measured {run['date']}" in rendered
