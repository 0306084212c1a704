"""Smoke test of experiments/bench_memory.py: a few hundred images, one epoch, one process."""

import json

from experiments import bench_memory


def test_bench_memory_measures_a_tiny_run_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_memory.main(["--sizes", "300,600", "--epochs", "1", "--json", str(out),
                              "--dir", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [(r["code"], r["images"]) for r in rows] == [("after", 300), ("after", 600)]
    for r in rows:
        assert r["stored_bytes"] == r["images"] * 784
        assert r["peak_rss_bytes"] > 100e6 and 0 < r["seconds_per_step"] < 5
        assert r["steps_per_epoch"] == (r["images"] - r["images"] // 10) // 128
    assert "growth_per_stored_byte" in rows[1]
    assert "peak/stored" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.npy"))                 # the data files are removed
