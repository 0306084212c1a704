"""The README's results table is generated from docs/data (experiments/readme_results.py)."""

import json
import shutil

import pytest

from experiments import readme_results


def test_the_readmes_table_and_paragraphs_are_what_the_data_files_give():
    text = readme_results.README.read_text()
    assert readme_results.current(text) == readme_results.render(), (
        "run python -m experiments.readme_results --write")
    assert readme_results.rewrite(text) == text
    assert readme_results.main(["--check"]) == 0
    run = json.loads((readme_results.DATA / "readme_run.json").read_text())
    # what the README says the main commands print is what they printed
    assert f"`test ELBO {run['train']['test_elbo_printed']:.2f}`" in text
    assert f"{run['evaluate']['log_likelihood']:.2f}" in text
    assert f"`train ELBO {run['library_snippet']['train_elbo_printed']:.2f}`" in text


def test_readme_run_reads_the_readmes_own_commands():
    from experiments import readme_run

    text = readme_results.README.read_text()
    commands = readme_run.readme_commands(text)
    assert commands[0].startswith("python -m jvae.train --config") and "runs/mnist" in commands[0]
    assert commands[1].startswith("python -m jvae.evaluate")
    assert "jvae.make_train_epoch" in readme_run.readme_snippet(text)
    out = 'noise\ntest ELBO -105.62, test distortion 80.02\n'
    assert readme_run.summary_number(out, "test ELBO") == -105.62
    assert readme_run.printed_json('x\n{\n  "elbo": -1.5\n}\nwrote') == {"elbo": -1.5}
    with pytest.raises(ValueError, match="no 'python -m jvae"):
        readme_run.readme_commands("## Train the reference model\n```bash\nls\n```\n")


def test_a_changed_data_file_changes_the_table(tmp_path, monkeypatch):
    for path in readme_results.DATA.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(readme_results, "DATA", tmp_path)
    flows = json.loads((tmp_path / "flows.json").read_text())
    planar = next(r for r in flows["rows"] if r["row"] == "planar")
    planar["elbo_gain_mean"], planar["elbo_gain_std"] = 12.345, 0.5
    (tmp_path / "flows.json").write_text(json.dumps(flows))
    table = readme_results.render()
    assert "planar +12.35 +- 0.50" in table
    assert table.count("\n| ") == len(readme_results.ROWS) + 1       # header + one per row
    (tmp_path / "iwae_compare.json").unlink()
    with pytest.raises(FileNotFoundError, match="iwae_compare.json not found"):
        readme_results.render()


def test_a_readme_without_markers_is_refused():
    with pytest.raises(ValueError, match="no results-table markers"):
        readme_results.current("# a README\n")
