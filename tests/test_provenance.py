"""experiments/provenance.py: every published data file has a producer, a command and its
pages; the check lists exactly the data files whose producing code changed."""

import json

import pytest

from experiments import provenance


@pytest.fixture(scope="module")
def index():
    return provenance._module_index()


def test_every_data_file_is_registered_with_existing_pages():
    names = {p.name for p in provenance.DATA.glob("*.json")} - {provenance.RECORD.name}
    assert names - set(provenance.PUBLISHED) == set(), "register them in PUBLISHED"
    for name, entry in provenance.PUBLISHED.items():
        for page in entry.pages:
            assert (provenance.ROOT / page).exists(), (name, page)
        assert entry.command


def test_dependencies_follow_re_exports_to_the_defining_modules(index):
    deps = provenance.dependencies("experiments.flows", index)
    # `from jvae import train_and_evaluate` reaches the training code and the ELBO ...
    assert "jvae/objectives/elbo.py" in deps and "experiments/configs/iwae_mnist.py" in deps
    # ... but not what jvae/__init__.py re-exports that flows never uses
    assert "jvae/classic/gmm.py" not in deps
    assert provenance.dependencies("experiments.configs.gaussian2d", index)[0] == \
        "experiments/configs/gaussian2d.py"
    with pytest.raises(KeyError, match="no module"):
        provenance.dependencies("experiments.nonexistent", index)


def test_changing_a_line_of_the_elbo_lists_the_pages_it_feeds(tmp_path, monkeypatch, index):
    """The demonstration: records made now find nothing stale; one changed line of
    jvae/objectives/elbo.py lists every data file whose producer imports it, with its pages
    (the README's among them) and its command, and nothing else."""
    monkeypatch.setattr(provenance, "RECORD", tmp_path / "provenance.json")
    monkeypatch.setattr(provenance, "_module_index", lambda: index)
    monkeypatch.setattr(provenance, "_git", lambda *args: "")
    for name in provenance.PUBLISHED:
        if (provenance.DATA / name).exists():
            provenance.record(name)
    assert provenance.stale() == []
    elbo = "jvae/objectives/elbo.py"
    text = (provenance.ROOT / elbo).read_text().replace("def ", "def  ", 1)
    items = provenance.stale({elbo: text})
    expected = {name for name, entry in provenance.PUBLISHED.items()
                if (provenance.DATA / name).exists()
                and elbo in provenance.dependencies(entry.producer, index)}
    assert {s.data_file for s in items} == expected and "flows.json" in expected
    assert all(s.reasons == (f"{elbo} changed",) for s in items)
    assert any("README.md" in s.pages for s in items)
    report = provenance.report(items)
    assert "docs/data/flows.json (shown on README.md, docs/results/flows.md)" in report
    assert "Refresh: python -m experiments.flows" in report
    # a data file rewritten without a new record is flagged too
    records = json.loads(provenance.RECORD.read_text())
    records["flows.json"]["data_sha256"] = "0" * 64
    provenance.RECORD.write_text(json.dumps(records))
    (flows,) = provenance.stale()
    assert flows.data_file == "flows.json" and "rewritten after its record" in flows.reasons[0]


def test_unknown_data_file_suggests_the_closest():
    with pytest.raises(KeyError, match="did you mean 'flows.json'"):
        provenance.record("flow.json")
    assert provenance.main(["--check"]) == 0
    with pytest.raises(SystemExit):
        provenance.main([])
