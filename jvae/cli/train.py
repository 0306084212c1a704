"""Command line: ``python -m jvae.train --config experiments/configs/NAME.py --workdir DIR``.

Any config field can be overridden, e.g. ``--config.num_epochs=2
--config.dataset.limit_train=1000``; parameter groups take new names
(``--config.optim.param_groups.encoder=1e-4``). ``--resume`` continues the run in DIR from its
newest checkpoint that verifies; there ``--config`` is optional (DIR/config.json holds it) and
overrides may change only evaluation, figures, logging and ``num_epochs`` (upwards). On a run
that had finished, ``--resume`` says so (``already finished at epoch N; nothing to train``),
exits 0 and leaves the figures as they are unless ``--redraw`` is given. ``--print-config``
prints the config's fields and exits. ``--progress=False`` (absl's spelling) or
``--noprogress`` hides the progress bar. ``--help`` lists the bundled configs
(``experiments/configs/*.py``, :mod:`jvae.cli.helptext`).

Before any JAX computation the command joins the multi-process job its environment describes:
``python -m jvae.launch``'s variables, a SLURM or Open MPI job, a TPU pod or JAX's own
``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``
(:func:`jvae.runs.cluster.join_job`, ``jax.distributed.initialize``).

A finished run prints the split it evaluated, its headline numbers, every file of the work
directory with what it is and the next command with a time estimate from the run's own
evaluation speed (:func:`jvae.runs.outputs.run_summary`).

Every failure ends with one line ``error: ...`` on standard error and a non-zero exit status
(1: the run failed, 2: bad command line); ``--debug`` adds the traceback. SIGINT and SIGTERM
stop the run promptly, in one process or in every process of a ``jvae.launch`` job, with one
line saying how to resume and the status ``128 + signal`` (130, 143): see
:mod:`jvae.cli.signals`.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import traceback

from jvae.cli.helptext import config_lines, configs_help, parse_flag
from jvae.cli.signals import SignalStop, StopOnSignals, exit_status
from jvae.runs.overrides import ConfigError, apply_override, config_from_json, load_config_file

USAGE = ("python -m jvae.train --config FILE.py[:VARIANT] --workdir DIR\n"
         "       [--resume [--redraw]] [--noprogress] [--debug] [--config.FIELD=VALUE ...]\n"
         "   or: python -m jvae.train --config FILE.py[:VARIANT] [--config.FIELD=VALUE ...] "
         "--print-config")

DESCRIPTION = """\
Train a config into a work directory: metrics, checkpoints and figures, then a summary of
every file written and the next command.

Any config field can be overridden, e.g. --config.num_epochs=2
--config.dataset.limit_train=1000; parameter groups take new names
(--config.optim.param_groups.encoder=1e-4). Every failure ends with one line "error: ..."
and exit status 1 (the run failed) or 2 (bad command line); SIGINT and SIGTERM stop the run
with one line saying how to resume (status 130, 143)."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line ``error: ...`` (exit status 2);
    ``--help`` still prints the full usage."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _progress_value(text: str) -> bool:
    try:
        return parse_flag(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    prog = "python -m jvae.train"
    p = OneLineParser(prog=prog, usage=USAGE, description=DESCRIPTION,
                      epilog=configs_help(prog),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.py[:VARIANT]",
                   help="experiment file defining get_config(), optionally with a variant "
                   "string for configs that take one (FILE.py:key=value,...); optional with "
                   "--resume (then DIR/config.json is used)")
    p.add_argument("--workdir", metavar="DIR",
                   help="run directory for config.json, metrics, checkpoints and figures "
                   "(required, except with --print-config)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in DIR from its newest checkpoint that verifies; "
                   "overrides may then change only evaluation, figures, logging and "
                   "num_epochs (upwards); a finished run trains nothing")
    p.add_argument("--redraw", action="store_true",
                   help="with --resume on a finished run: draw its figures again (without "
                   "it they are left as they are)")
    p.add_argument("--progress", metavar="BOOL", nargs="?", const=True, default=True,
                   type=_progress_value,
                   help="show a progress bar over epochs with the train loss and the "
                   "evaluated split's ELBO (default: on); --progress=False turns it off")
    p.add_argument("--noprogress", dest="progress", action="store_false",
                   help="no progress bar (the same as --progress=False)")
    p.add_argument("--print-config", action="store_true",
                   help="print every field of the config (with the overrides applied) as "
                   "FIELD=VALUE and exit without training")
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of a failure after its one-line error")
    p.add_argument("--config.FIELD", metavar="VALUE", dest="_field_help",
                   help="set a config field, e.g. --config.num_epochs=20 (repeatable; "
                   "--print-config lists the fields)")
    return p


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    """Split ``argv`` into the known flags and the ``--config.FIELD=VALUE`` overrides."""
    plain, overrides = [], []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--config."):
            name, sep, value = arg[len("--config."):].partition("=")
            if not sep:
                value = next(args, None)
                if value is None:
                    raise ConfigError(f"--config.{name} needs a value (--config.{name}=VALUE).")
            overrides.append((name, value))
        else:
            plain.append(arg)
    parser = _parser()
    args = parser.parse_args(plain)
    if args.workdir is None and not args.print_config:
        parser.error("the following arguments are required: --workdir")
    return args, overrides


def build_config(args: argparse.Namespace, overrides: list[tuple[str, str]]):
    """The run config: the file's (or, for ``--resume`` without ``--config``, the work
    directory's ``config.json``), with the overrides applied in order."""
    if args.config is not None:
        config = load_config_file(args.config)
    elif args.resume:
        stored = pathlib.Path(args.workdir) / "config.json"
        if not stored.is_file():
            raise ConfigError(f"--resume without --config reads {stored}, which does not "
                              "exist; pass --config FILE.py to start a run there.")
        config = config_from_json(stored)
    else:
        raise ConfigError("--config FILE.py is required (it is optional only with --resume).")
    for name, value in overrides:
        apply_override(config, name, value)
    return config


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 failed, 2 bad usage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args, overrides = parse_args(argv)
    except SystemExit as e:      # argparse has printed its usage message
        return int(e.code or 0)
    except ConfigError as e:
        return _fail(e, 2, debug)
    if args.workdir is not None and not args.workdir.strip():
        return _fail(ValueError("--workdir is empty; give the run directory."), 2, debug)
    try:
        config = build_config(args, overrides)
    except ConfigError as e:
        return _fail(e, 2, debug)
    if args.print_config:
        print("\n".join(config_lines(config)))
        return 0
    _quiet_logs(debug)
    with StopOnSignals(lambda signum: stopped_line(signum, args.workdir)) as stop:
        try:
            record = _run(config, args, stop)
        except SignalStop as e:
            print(stopped_line(e.signum, args.workdir), file=sys.stderr, flush=True)
            stop.reported()
            return stop.finish(exit_status(e.signum))
        except KeyboardInterrupt:
            print(stopped_line(signal.SIGINT, args.workdir), file=sys.stderr, flush=True)
            return exit_status(signal.SIGINT)
        except Exception as e:  # noqa: BLE001 - every failure ends as one line (--debug: traceback)
            return stop.finish(_fail(e, 1, debug))
    print(summary(record, pathlib.Path(args.workdir)))
    return 0


def _run(config, args: argparse.Namespace, stop: StopOnSignals) -> dict:
    """Join the multi-process job the environment describes (if any), then train."""
    from jvae.runs.cluster import join_job   # jvae.launch's JVAE_*, or SLURM, Open MPI, JAX_*

    join_job()
    stop.reinstall()          # jax.distributed installs a SIGTERM handler of its own
    from jvae.runs import train_and_evaluate   # imports JAX: after the cheap checks

    return train_and_evaluate(config, args.workdir, resume=args.resume, progress=args.progress,
                              redraw=args.redraw)


def stopped_line(signum: int, workdir) -> str:
    """What a run stopped by ``signum`` prints: the signal and how to continue."""
    name = signal.Signals(signum).name
    return (f"error: stopped by {name}; continue with python -m jvae.train --workdir "
            f"{workdir} --resume (from the newest checkpoint in {workdir}/checkpoints, or "
            "from the start if none was written).")


def summary(record: dict, workdir: pathlib.Path) -> str:
    """What a finished run prints: the split it evaluated, its headline numbers, every file
    in ``workdir`` with what it is, and the next command with a time estimate from the
    run's own evaluation speed (:func:`jvae.runs.outputs.run_summary`)."""
    from jvae.runs.outputs import run_summary

    return run_summary(workdir, record)


def _fail(e: BaseException, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(e)
    print(f"error: {one_line(e)}", file=sys.stderr)
    return code


def one_line(e: BaseException) -> str:
    """An exception as one line: its message with newlines folded, the type for bare ones."""
    text = " ".join(str(e.strerror if isinstance(e, OSError) and e.strerror else e).split())
    if not text or isinstance(e, (KeyError, AttributeError, TypeError, IndexError)):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text += f" ({e.filename})"
    return text


def _quiet_logs(debug: bool = False) -> None:
    """Orbax logs every checkpoint at INFO (hidden here) and a failed write as an ERROR with
    its traceback from orbax's writer threads (hidden unless ``debug``): the command's own
    ``error:`` line names the checkpoint and the reason."""
    try:
        from absl import logging
    except ImportError:
        return
    logging.set_verbosity(logging.WARNING)
    if not debug:
        logger = logging.get_absl_logger()
        if not any(isinstance(f, _LibraryErrors) for f in logger.filters):
            logger.addFilter(_LibraryErrors())


class _LibraryErrors:
    """A ``logging`` filter dropping the ERROR records (and their tracebacks) that orbax
    logs while a checkpoint write fails; the failure itself is raised to the command."""

    def filter(self, record) -> bool:
        return not (record.levelno >= 40 and "orbax" in str(record.pathname))


if __name__ == "__main__":
    sys.exit(main())
