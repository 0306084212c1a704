"""Command line: ``python -m jvae.train --config experiments/configs/NAME.py --workdir DIR``.

Any config field can be overridden, e.g. ``--config.num_epochs=2
--config.dataset.limit_train=1000``; parameter groups take new names
(``--config.optim.param_groups.encoder=1e-4``). ``--resume`` continues the run in DIR from its
newest checkpoint that verifies; there ``--config`` is optional (DIR/config.json holds it) and
overrides may change only evaluation, figures, logging and ``num_epochs`` (upwards).

Every failure ends with one line ``error: ...`` on standard error and a non-zero exit status
(1: the run failed, 2: bad command line); ``--debug`` adds the traceback. SIGINT and SIGTERM
stop the run promptly, in one process or in every process of a ``jvae.launch`` job, with one
line saying how to resume and the status ``128 + signal`` (130, 143): see
:mod:`jvae.cli.signals`.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import signal
import sys
import traceback

from jvae.cli.signals import SignalStop, StopOnSignals, exit_status
from jvae.runs.overrides import ConfigError, apply_override, config_from_json, load_config_file

USAGE = ("python -m jvae.train --config FILE.py[:VARIANT] --workdir DIR [--resume] "
         "[--noprogress] [--debug] [--config.FIELD=VALUE ...]")


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line ``error: ...`` (exit status 2);
    ``--help`` still prints the full usage."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m jvae.train", usage=USAGE,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="experiment file defining get_config() "
                   "(FILE.py or FILE.py:VARIANT); optional with --resume")
    p.add_argument("--workdir", required=True, help="directory for metrics, checkpoints, figures")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its newest intact checkpoint")
    p.add_argument("--progress", dest="progress", action="store_true", default=True)
    p.add_argument("--noprogress", dest="progress", action="store_false",
                   help="no progress bar")
    p.add_argument("--debug", action="store_true", help="print tracebacks of failures")
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
    return _parser().parse_args(plain), overrides


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
    if not args.workdir.strip():
        return _fail(ValueError("--workdir is empty; give the run directory."), 2, debug)
    try:
        config = build_config(args, overrides)
    except ConfigError as e:
        return _fail(e, 2, debug)
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
    from jvae.runs.distributed import initialize_from_env   # python -m jvae.launch -n N: join the job

    initialize_from_env()
    stop.reinstall()          # jax.distributed installs a SIGTERM handler of its own
    from jvae.runs import train_and_evaluate   # imports JAX: after the cheap checks

    return train_and_evaluate(config, args.workdir, resume=args.resume, progress=args.progress)


def stopped_line(signum: int, workdir) -> str:
    """What a run stopped by ``signum`` prints: the signal and how to continue."""
    name = signal.Signals(signum).name
    return (f"error: stopped by {name}; continue with python -m jvae.train --workdir "
            f"{workdir} --resume (from the newest checkpoint in {workdir}/checkpoints, or "
            "from the start if none was written).")


def summary(record: dict, workdir: pathlib.Path) -> str:
    """What a finished run prints: headline numbers, where its outputs are, what to do next."""
    def value(key):
        v = record.get(f"{key}_mean", record.get(key))
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None

    lines = [f"done: epoch {record.get('epoch')}, step {record.get('step')}"]
    heads = [("train/loss", "train loss"), ("eval/elbo", "eval ELBO"),
             ("eval/distortion", "eval distortion"), ("eval/rate", "eval rate"),
             ("eval/log_likelihood", "eval log p(x)")]
    numbers = [f"{label} {value(k):.2f}" for k, label in heads if value(k) is not None]
    if numbers:
        lines.append("  " + ", ".join(numbers) + " (nats per example"
                     + (", mean over runs)" if "train/loss_mean" in record else ")"))
    lines.append(f"  work directory: {workdir}")
    for name in ("metrics.jsonl", "config.json"):
        if (workdir / name).exists():
            lines.append(f"  {name}: {workdir / name}")
    ckpts = sorted((p for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()),
                   key=lambda p: int(p.name))
    if ckpts:
        lines.append(f"  checkpoints: {workdir / 'checkpoints'} (newest: epoch {ckpts[-1].name})")
    for png in sorted(workdir.glob("*.png")):
        lines.append(f"  figure: {png}")
    if record.get("eval/elbo", record.get("eval/elbo_mean")) is None:   # an autoencoder
        lines.append(f"next: python -m jvae.evaluate --workdir {workdir} "
                     "(reconstruction errors on the test images)")
    else:
        lines.append(f"next: python -m jvae.evaluate --workdir {workdir} --num-samples 1000 "
                     "(importance-sampled log p(x); about 3 minutes on 2 CPU cores for 10000 "
                     "images)")
    return "\n".join(lines)


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
