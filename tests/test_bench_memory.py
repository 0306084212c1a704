"""Smoke test of experiments/bench_memory.py: a few hundred images, one epoch, one process
per run, both paths (in-memory and out-of-core)."""

import json

from experiments import bench_memory


def test_bench_memory_measures_both_paths_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_memory.main(["--sizes", "300,600", "--epochs", "1", "--json",
                              str(out), "--dir", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [(r["code"], r["mode"], r["images"]) for r in rows] == [
        ("after", "in-memory", 300), ("after", "out-of-core", 300),
        ("after", "in-memory", 600), ("after", "out-of-core", 600)]
    for r in rows:
        assert r["stored_bytes"] == r["images"] * 784
        assert r["streamed"] == (r["mode"] == "out-of-core")
        assert r["peak_rss_bytes"] > 100e6 and 0 < r["seconds_per_step"] < 5
        assert r["steps_per_epoch"] == (r["images"] - r["images"] // 10) // 128
        assert len(r["rounds"]) == 1
    assert "growth_per_stored_byte" in rows[2] and "peak_over_smallest" in rows[3]
    assert "peak/stored" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.npy"))                 # the data files are removed


def test_sizes_may_name_their_image_shape():
    assert bench_memory._size("60000") == (60000, (28, 28, 1))
    assert bench_memory._size("200000@64x64x3") == (200000, (64, 64, 3))
