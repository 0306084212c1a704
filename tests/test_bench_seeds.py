"""Smoke test of ``experiments/bench_seeds.py`` on a small subset (timings are not asserted)."""

import json

import pytest

from experiments import bench_seeds


def test_bench_seeds_reports_ratios(jvae_data_dir, tmp_path):
    out = tmp_path / "seeds.json"
    results = bench_seeds.main(["--seeds", "2", "--examples", "512", "--repeats", "2",
                                "--data-dir", str(jvae_data_dir), "--json", str(out)])
    assert sorted(results) == [2]
    for s, r in results.items():
        assert r["sequential_seconds"] > 0 and r["vmapped_seconds"] > 0
        assert r["ratio"] == pytest.approx(r["vmapped_seconds"] / r["sequential_seconds"])
        seq, vm = r["sequential_repeats"], r["vmapped_repeats"]
        assert len(seq) == len(vm) == 2
        assert r["sequential_seconds"] == pytest.approx(sum(seq) / 2)
        assert r["min_ratio"] == pytest.approx(min(vm) / min(seq))
        assert r["repeat_ratios"] == pytest.approx([v / q for v, q in zip(vm, seq)])
        assert len(r["repeat_ratios"]) == 2
        assert min(r["repeat_ratios"]) <= r["median_repeat_ratio"] <= max(r["repeat_ratios"])
        assert r["seed_epochs_per_second"] == pytest.approx(s / r["vmapped_seconds"])
    written = json.loads(out.read_text())
    assert set(written["seeds"]) == {"2"}       # the docs' table reads this file (docs/hooks)
    assert written["command"].startswith("python -m experiments.bench_seeds --seeds 2 ")
    assert {"measured", "commit", "machine", "load_average"} <= set(written)
    assert "vs_one_seed" not in results[2]          # S=1 was not timed
    only = bench_seeds.main(["--seeds", "1", "2", "--examples", "256", "--repeats", "1",
                             "--vmapped-only", "--data-dir", str(jvae_data_dir)])
    assert "sequential_seconds" not in only[2] and "ratio" not in only[2]
    assert only[2]["vs_one_seed"] == pytest.approx(
        only[2]["vmapped_seconds"] / only[1]["vmapped_seconds"])
    assert "vs_one_seed" not in only[1]
    with pytest.raises(SystemExit):
        bench_seeds.main(["--seeds", "0", "--data-dir", str(jvae_data_dir)])
