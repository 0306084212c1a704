"""The command lines' flags and help, in-process (nothing is trained or compiled): ``--help``
as plain text describing every flag and listing the bundled configs, ``--print-config``, and
the spellings of ``--progress``."""

import pathlib
import re

import pytest

from jvae.cli import evaluate as evaluate_cli
from jvae.cli import train
from jvae.cli.helptext import bundled_configs, plain_text
from jvae.runs import apply_override, default_config, load_config_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
MARKUP = re.compile(r"``|:(func|mod|class|meth|data|attr):`")


def _help(main, capsys) -> str:
    assert main(["--help"]) == 0
    return capsys.readouterr().out


def test_train_help_is_plain_text_and_describes_every_flag(capsys):
    text = _help(train.main, capsys)
    assert not MARKUP.search(text), MARKUP.search(text).group(0)
    for action in train._parser()._actions:
        assert action.help and action.help.strip(), action.option_strings
        for flag in action.option_strings:
            assert flag in text
    for flag in ("--progress", "--noprogress", "--print-config", "--redraw", "--config.FIELD"):
        assert flag in text, flag


def test_train_help_lists_every_bundled_config_and_how_to_print_one(capsys):
    text = _help(train.main, capsys)
    names = sorted(p.name for p in CONFIGS.glob("*.py") if not p.name.startswith("_"))
    assert len(names) >= 5 and "pytorch_example.py" in names
    for name in names:
        assert re.search(rf"^  {re.escape(name)}  +\S", text, re.M), name
    # Each with the first sentence of its docstring, as plain text.
    assert "Homework 2's 2-D VAE on synthetic Gaussian data" in text
    assert re.search(r"--config \S*pytorch_example\.py --print-config", text)


def test_a_new_config_file_is_listed_without_editing_any_list(tmp_path):
    (tmp_path / "__init__.py").write_text('"""package"""\n')
    (tmp_path / "mine.py").write_text('"""My ``own`` model: see :func:`jvae.VAE`."""\n')
    assert bundled_configs(tmp_path) == [(tmp_path / "mine.py", "My own model: see jvae.VAE.")]


def test_evaluate_help_is_plain_text(capsys):
    assert evaluate_cli.run(["--help"]) == 0
    text = capsys.readouterr().out
    assert not MARKUP.search(text) and "eval_<split>_K<K>" in text
    assert plain_text(":mod:`jvae.cli.signals` and ``x``") == "jvae.cli.signals and x"


def test_print_config_prints_every_field_as_overrides_that_rebuild_it(capsys):
    spec = str(CONFIGS / "gaussian2d.py")
    assert train.main(["--config", spec, "--config.num_epochs=3", "--print-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "num_epochs=3" in lines and "dataset.name=gaussian2d" in lines
    assert "model.encoder_hidden=(64, 64)" in lines
    # The printed lines are --config.FIELD=VALUE overrides: applied to the defaults they give
    # the same config back.
    rebuilt, expected = default_config(), load_config_file(spec)
    expected.num_epochs = 3
    for line in lines:
        apply_override(rebuilt, *line.split("=", 1))
    assert rebuilt.to_dict() == expected.to_dict()


def test_print_config_of_a_run_directory_needs_no_config_file(tmp_path, capsys):
    assert train.main(["--workdir", str(tmp_path), "--resume", "--print-config"]) == 2
    assert "config.json" in capsys.readouterr().err
    assert train.main(["--print-config"]) == 2          # neither a file nor a run
    assert capsys.readouterr().err.startswith("error:")


def test_workdir_is_required_for_training(capsys):
    assert train.main(["--config", str(CONFIGS / "gaussian2d.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--workdir" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, shown", [
    ([], True), (["--progress"], True), (["--progress=True"], True), (["--progress=true"], True),
    (["--progress=1"], True), (["--progress=False"], False), (["--progress=false"], False),
    (["--progress=0"], False), (["--progress", "False"], False), (["--noprogress"], False)])
def test_progress_spellings(argv, shown):
    args, overrides = train.parse_args(["--workdir=w", *argv, "--config.num_epochs=2"])
    assert args.progress is shown and overrides == [("num_epochs", "2")]


def test_a_bad_progress_value_is_a_one_line_error(tmp_path, capsys):
    assert train.main(["--config", str(CONFIGS / "gaussian2d.py"), f"--workdir={tmp_path}",
                       "--progress=maybe"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--progress" in err and "'maybe'" in err
    assert err.count("\n") == 1
    assert not any(tmp_path.iterdir())
