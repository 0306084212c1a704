"""Smoke test of ``experiments/bench_device.py``: tiny sizes, the MLP programs and the IS
evaluation (the conv programs are ``bench_conv``'s); timings are not asserted, only the JSON's
shape, that every number is finite or its record says why not, and ``--merge``."""

import json
import math

import pytest

from experiments import bench_device, bench_device_table
from jvae import default_config


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


@pytest.fixture(scope="module")
def smoke(jvae_data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench_device.json"
    other = {"device_kind": "H100", "dtypes": ["float32"], "measurements": {}}
    path.write_text(json.dumps({"platforms": {"gpu": other}}))
    data = bench_device.main(["--smoke", "--only", "mlp_epoch,seeds,is_eval", "--seeds", "1,2",
                              "--dtypes", "float32,bfloat16", "--data-dir", str(jvae_data_dir),
                              "--json", str(path), "--merge"])
    return data, json.loads(path.read_text())


def test_bench_device_records_every_measurement_per_dtype(smoke):
    data, written = smoke
    assert written == data
    assert written["platforms"]["gpu"]["device_kind"] == "H100"      # --merge kept it
    cpu = written["platforms"]["cpu"]
    assert cpu["platform"] == "cpu" and cpu["devices"] == ["cpu:0"] and cpu["jax"]
    assert cpu["mode"] == "smoke" and cpu["command"].startswith(
        "python -m experiments.bench_device --smoke")
    assert set(cpu["measurements"]) == {"mlp_epoch", "seeds_1", "seeds_2", "is_eval"}
    bf16 = "compute_dtype" in default_config().model
    for name, records in cpu["measurements"].items():
        assert set(records) == {"float32", "bfloat16"}
        for dtype, r in records.items():
            if dtype == "bfloat16" and not bf16:
                assert r == {"unavailable": "this jvae's config has no model.compute_dtype"}
                continue
            assert "unavailable" not in r, (name, dtype, r)
            assert len(r["rounds_s"]) == cpu["sizes"]["rounds"] == 2
            assert min(r["rounds_s"]) <= r["median_s"] <= max(r["rounds_s"])
            assert r["compile_s"] > 0 and r["compiled_bytes"] > 0
    assert cpu["measurements"]["mlp_epoch"]["float32"]["steps"] == 256 // 128
    ll = cpu["measurements"]["is_eval"]["float32"]
    assert (ll["images"], ll["samples"]) == (16, 8) and -800 < ll["log_likelihood"] < 0
    assert ll["params"] == "after one float32 epoch"
    ratio = cpu["derived"]["float32"]["seeds_2_over_seeds_1"]
    s = cpu["measurements"]
    assert ratio == pytest.approx(s["seeds_2"]["float32"]["median_s"]
                                  / s["seeds_1"]["float32"]["median_s"])
    assert cpu["memory"]["peak_bytes"] > 10e6 and "resident" in cpu["memory"]["source"]
    assert all(math.isfinite(x) for x in _numbers(written))


def test_bench_device_table_has_a_column_per_platform_and_dtype(smoke):
    data, _ = smoke
    data = {"platforms": {"cpu": data["platforms"]["cpu"]}}              # no GPU run yet
    lines = bench_device_table.table(data).splitlines()
    bf16 = "compute_dtype" in default_config().model
    assert lines[0] == ("| measurement | CPU float32 | CPU bfloat16 | "
                        + ("CPU bfloat16 / float32 | " if bf16 else "") + "GPU |")
    epoch = next(line for line in lines if line.startswith("| pytorch_example epoch"))
    cells = [c.strip() for c in epoch.split("|")[2:-1]]
    m = data["platforms"]["cpu"]["measurements"]["mlp_epoch"]
    assert float(cells[0]) == pytest.approx(m["float32"]["median_s"], rel=0.01)
    assert cells[-1] == "not yet measured"
    if bf16:
        assert float(cells[2]) == pytest.approx(
            m["bfloat16"]["median_s"] / m["float32"]["median_s"], abs=0.01)
    else:
        assert cells[1] == "n/a" and len(cells) == 3
    assert "requirements-cuda.txt" in lines[-1] and "not yet measured" in lines[-1]


def test_non_finite_results_are_marked_unavailable_and_bad_options_refused(jvae_data_dir):
    marked = bench_device.mark_non_finite({"median_s": 1.0, "warmup_loss": float("nan")})
    assert marked == {"median_s": 1.0, "warmup_loss": None,
                      "unavailable": "non-finite warmup_loss (nan)"}
    assert bench_device.mark_non_finite({"median_s": 1.0}) == {"median_s": 1.0}
    for bad in (["--dtypes", "int8"], ["--seeds", "0,8"], ["--only", "epochs"]):
        with pytest.raises(SystemExit):
            bench_device.main(["--smoke", *bad, "--data-dir", str(jvae_data_dir)])


def test_the_benchmarks_page_renders_the_recorded_json_through_the_docs_hook():
    """No number of the device table is typed: the page's marker becomes the table of
    docs/data/bench_device.json; the page gives the GPU command with its install line."""
    import importlib.util
    import pathlib

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs"
    spec = importlib.util.spec_from_file_location("data_tables", docs / "hooks" / "data_tables.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = (docs / "benchmarks.md").read_text()
    section = page.split("## One benchmark for any device")[1].split("\n## ")[0]
    assert "<!-- table: bench-device -->" in section and "\n|" not in section
    assert "pip install -r requirements-cuda.txt" in section
    assert "python -m experiments.bench_device --merge" in section
    data = json.loads((docs / "data" / "bench_device.json").read_text())
    assert "cpu" in data["platforms"]
    rendered = hook.render("<!-- table: bench-device -->")
    assert rendered == bench_device_table.table(data)
    cpu = data["platforms"]["cpu"]
    assert f"`{cpu['command']}`, measured {cpu['measured']}" in rendered
    if "gpu" not in data["platforms"]:
        assert rendered.splitlines()[0].endswith("| GPU |")
