"""experiments/flows.py: --quick end to end (one row, to stay cheap), and its gains, table
and results page from hand-made rows."""

import json

import numpy as np
import pytest

from experiments import flows


def _row(name, elbo, ll, seconds, posterior="gaussian", prior="standard"):
    return {"row": name, "posterior": posterior, "prior": prior, "seeds": [0, 1, 2],
            "test_elbo": elbo, "test_log_likelihood": ll, "seconds_per_epoch": seconds}


def test_gains_are_paired_by_seed_and_times_relative_to_the_gaussian_row(tmp_path):
    rows = flows.add_gains([_row("gaussian", [-90.0, -91.0, -89.0], [-86.0, -87.0, -85.5], 2.0),
                            _row("iaf", [-88.0, -90.5, -87.0], [-85.0, -86.0, -85.0], 3.0,
                                 posterior="iaf")])
    iaf = rows[1]
    np.testing.assert_allclose(iaf["elbo_gain"], [2.0, 0.5, 2.0])
    assert iaf["elbo_gain_mean"] == pytest.approx(1.5)
    assert iaf["elbo_gain_std"] == pytest.approx(np.std([2.0, 0.5, 2.0], ddof=1))
    np.testing.assert_allclose(iaf["ll_gain"], [1.0, 1.0, 0.5])
    assert iaf["relative_seconds"] == pytest.approx(1.5)
    assert rows[0]["elbo_gain_mean"] == 0.0 and rows[0]["relative_seconds"] == 1.0
    text = flows.table(rows)
    assert "| iaf | iaf | standard |" in text and "+1.50 ± 0.87" in text and "| 1.50 |" in text
    data = {"rows": rows, "machine": "test", "command": "python -m experiments.flows",
            "date": "2026-12-02T00:00:00+00:00",
            "budget": {"epochs": 3, "batch_size": 100, "learning_rate": 1e-3, "train_size": 0,
                       "test_size": 0, "ll_samples": 5000, "flow_layers": 4, "flow_hidden": 200,
                       "pseudo_inputs": 500, "latent_dim": 50}}
    page, figure = tmp_path / "results" / "flows.md", tmp_path / "figures" / "flows_gain.png"
    flows.write_page(data, page, figure)
    text = page.read_text()
    assert "The IAF posterior tightens the bound here (ELBO gain +1.50" in text
    assert "](../figures/flows_gain.png)" in text and "K = 5000" in text
    assert ("```bash\nJVAE_DATA_DIR=../shared/data python -m experiments.flows --workdir "
            "runs/flows --epochs 3 --seeds 3 " in text and "2026-12-02" in text)
    assert "The latest rows came from `python -m experiments.flows`." in text
    assert "python -m experiments.figures" in text      # what tests/test_docs.py asks of a page
    assert "Measured before the fixes of issue 27" in text     # no record of the workaround
    flows.write_page(dict(data, xla_workaround="applied"), page, figure)
    assert "Measured before the fixes" not in page.read_text()
    flows.draw_flows(data, figure)
    assert figure.stat().st_size > 1000


def test_quick_run_end_to_end_writes_the_json(tmp_path, jvae_data_dir):
    out = tmp_path / "flows.json"
    data = flows.main(["--quick", "--only", "gaussian", "--workdir", str(tmp_path / "runs"),
                       "--json", str(out)])
    stored = json.loads(out.read_text())
    assert stored["rows"] == json.loads(json.dumps(data["rows"]))
    (row,) = stored["rows"]
    assert row["row"] == "gaussian" and row["seeds"] == [0, 1]
    for key in ("test_elbo", "test_log_likelihood"):
        assert len(row[key]) == 2 and all(np.isfinite(row[key]))
    # the importance-sampled estimate (K = 20) is above the one-sample ELBO on the test set
    assert np.all(np.asarray(row["test_log_likelihood"]) > np.asarray(row["test_elbo"]))
    assert row["relative_seconds"] == 1.0 and row["seconds_per_epoch"] > 0
    assert stored["quick"] and stored["budget"]["epochs"] == 1


def test_unknown_rows_are_refused(capsys):
    with pytest.raises(SystemExit):
        flows.main(["--only", "iaff"])
    assert "unknown rows ['iaff']" in capsys.readouterr().err


def test_a_rerun_merges_over_the_earlier_rows_and_says_how_far_they_moved():
    budget = {"epochs": 5}
    old = {"date": "2026-12-01T00:00:00+00:00", "budget": budget, "rows": flows.add_gains([
        _row("gaussian", [-116.0, -116.0], [-111.0, -111.0], 15.0),
        _row("planar", [-117.5, -117.0], [-111.5, -111.0], 20.0, posterior="planar"),
        _row("iaf", [-115.0, -115.0], [-109.5, -109.5], 31.0, posterior="iaf")])}
    new = flows.add_gains([_row("gaussian", [-116.0, -116.0], [-111.0, -111.0], 80.0),
                           _row("planar", [-117.0, -117.0], [-110.5, -111.0], 100.0,
                                posterior="planar")])
    rows = flows.merge_rows(new, old, "2026-12-07T18:00:00+00:00", budget)
    assert [r["row"] for r in rows] == ["gaussian", "planar", "iaf"]
    assert rows[2]["measured"] == old["date"] and rows[2]["test_elbo"] == [-115.0, -115.0]
    assert rows[1]["previous_test_log_likelihood"] == [-111.5, -111.0]
    text = flows.rerun_lines(rows)
    assert "Row `planar` was rerun on 2026-12-07 (earlier measurement 2026-12-01)" in text
    assert "moved by +1.00/+0.00 nats per seed (mean +0.50)" in text
    assert "went from -0.25 to +0.25" in text and "`iaf` (2026-12-01) were not rerun" in text
    with pytest.raises(SystemExit, match="budget"):
        flows.merge_rows(new, old, "2026-12-07", {"epochs": 10})
