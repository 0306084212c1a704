"""What a run shows: its progress bar's fields (:func:`progress_fields`), what it leaves in
its work directory, and what to do next: the closing summary that ``python -m jvae.train``
prints (:func:`run_summary`).

:data:`OUTPUTS` says in one line what each file or directory a run (or ``python -m
jvae.evaluate``) writes is; :func:`describe_outputs` lists the ones actually present.
:func:`evaluation_estimate` predicts how long ``python -m jvae.evaluate --num-samples K``
takes on the run's evaluation data from the run's own evaluation times
(``metrics.jsonl``'s ``eval/seconds``) and size (``eval/examples``).
"""

from __future__ import annotations

import fnmatch
import json
import math
import pathlib
import re

from jvae.data import FILE_DATASETS, is_user_name
from jvae.runs.schema import SYNTHETIC

__all__ = ["OUTPUTS", "describe_outputs", "evaluation_estimate", "eval_result_stem",
           "evaluated_split", "trained_split", "data_noun", "run_summary", "progress_fields"]

#: Every file (a glob pattern) or directory (ending in ``/``) a run may write into its work
#: directory, with what it is, in the order the summary lists them; ``{split}`` stands for
#: the evaluated split's name, ``{data}`` for its examples (``test images``, ``test points``).
OUTPUTS = {
    "config.json": "the full resolved config (what --resume reads)",
    "metrics.jsonl": "one JSON object per epoch: train/... and eval/... (the {split} split) "
                     "metrics in nats per example, timings",
    "steps.jsonl": "every training step's loss, ELBO, distortion and rate "
                   "(config.eval.log_steps)",
    "dev.jsonl": "the assessments of the dev split held out of the training data "
                 "(config.dataset.dev_size)",
    "tensorboard/": "the scalars of metrics.jsonl, steps.jsonl and dev.jsonl as TensorBoard "
                    "events (config.tensorboard; tensorboard --logdir DIR/tensorboard)",
    "checkpoints/": "the train state's verified checkpoints (read by --resume and "
                    "jvae.evaluate)",
    "snapshots/": "per-epoch pictures (config.eval.snapshot_every, "
                  "config.eval.latent_snapshot_every)",
    "logs/": "the output of processes 1, 2, ... of a python -m jvae.launch job",
    "eval_*.json": "a result of python -m jvae.evaluate (split, K and checkpoint in its name)",
    "curves.png": "train and {split} ELBO, distortion and rate per epoch",
    "samples.png": "decoder means of 64 draws from the prior",
    "reconstructions.png": "{data} above their reconstructions",
    "interpolations.png": "decoded straight lines between the codes of pairs of {data}",
    "latents.png": "posterior means of the {data} in the 2-D latent space",
    "latent_kl.png": "the rate of each latent dimension, mean KL(q(z_d|x) || p(z_d)) over "
                     "the {data}, active-unit threshold marked",
    "latents_tsne.png": "a t-SNE map of the posterior means of the {data}",
    "samples_2d.png": "the {data} beside samples from the model",
    "latent_snapshots.png": "the latent space of the {data}, epoch by epoch",
    "steps.png": "every training step's ELBO, distortion and rate (from steps.jsonl)",
    "dev.png": "the dev assessments (from dev.jsonl)",
    "prior_oversampled.png": "16 prior draws z, 4 observations x ~ p(x|z) of each",
    "conditional_samples.png": "{data} above draws x' ~ p(x|z), z ~ q(z|x)",
    "prior_histograms.png": "the mixture prior's samples per dimension, by component",
    "prior_pairs.png": "the mixture prior's samples, pairs of dimensions, by component",
    "prior_tsne.png": "a t-SNE map of the mixture prior's samples, by component",
    "*.png": "a figure",
}


def describe_outputs(workdir: str | pathlib.Path, split: str = "evaluation",
                     noun: str = "examples") -> list[tuple[str, str]]:
    """``(name, what it is)`` for every entry of ``workdir`` (directories end in ``/``;
    hidden files such as the lock are left out), in :data:`OUTPUTS`' order, then by name.
    ``split`` and ``noun`` name the evaluated data (``"test"``, ``"images"``);
    ``checkpoints/`` names its newest epoch; an entry no run writes is ``"not written by
    jvae"``."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        return []
    patterns = list(OUTPUTS)
    rows = []
    for path in workdir.iterdir():
        if path.name.startswith("."):
            continue
        name = path.name + ("/" if path.is_dir() else "")
        rank = next((i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(name, p)), None)
        what = "not written by jvae" if rank is None else OUTPUTS[patterns[rank]]
        if name == "checkpoints/":
            epochs = [int(p.name) for p in path.iterdir() if p.name.isdigit()]
            what += f"; newest: epoch {max(epochs)}" if epochs else "; none yet"
        rows.append((len(patterns) if rank is None else rank, name,
                     what.format(split=split, data=f"{split} {noun}")))
    return [(name, what) for _, name, what in sorted(rows)]


def evaluated_split(config) -> str:
    """The name of the split a run evaluates: ``config.dataset.eval_split``, or ``"test"``
    for the 2-D synthetic data (whose one held-out split is the test split whatever
    ``eval_split`` says), or ``"validation"`` for your own data (``npy:``, ``npz:``,
    ``folder:``) asked for ``"test"`` without a test file or folder
    (``config.dataset.test``): the split carved from the training data is evaluated then.
    ``config``: a ``ConfigDict`` or ``config.json``'s dict."""
    dataset = config.get("dataset", {})
    if dataset.get("name") in SYNTHETIC:
        return "test"
    split = str(dataset.get("eval_split") or "evaluation")
    if (split == "test" and is_user_name(dataset.get("name"))
            and not dataset.get("test", "")):
        return "validation"
    return split


def trained_split(config) -> str:
    """The name of the split a run trains on: ``config.dataset.train_split``, except that
    ``"train_full"`` becomes ``"train"`` when the evaluation falls back to the validation
    split carved from your own data (:func:`evaluated_split`), so that no example is both
    trained on and evaluated. ``config``: a ``ConfigDict`` or ``config.json``'s dict."""
    dataset = config.get("dataset", {})
    split = str(dataset.get("train_split") or "train")
    falls_back = evaluated_split(config) != str(dataset.get("eval_split") or "evaluation")
    if split == "train_full" and is_user_name(dataset.get("name")) and falls_back:
        return "train"
    return split


def data_noun(dataset_name: str) -> str:
    """What the examples of ``config.dataset.name`` are called: ``"points"`` (the 2-D
    synthetic data), ``"images"`` (the file datasets) or ``"examples"``."""
    if dataset_name in SYNTHETIC:
        return "points"
    return "images" if dataset_name in FILE_DATASETS else "examples"


def evaluation_estimate(history: list[dict], config: dict, num_samples: int
                        ) -> tuple[float, str] | None:
    """Seconds ``python -m jvae.evaluate --num-samples K`` should spend evaluating (start-up
    and compilation not included), and how that was measured; ``None`` when the run
    recorded no evaluation time.

    A pass is one sample per example over the whole evaluation split. An evaluation of the
    run made ``eval.elbo_samples`` passes, plus ``eval.ll_samples`` when it recorded a
    log-likelihood; the fastest evaluation per pass is taken (the first evaluation after a
    start includes compilation) and K passes are predicted (an autoencoder: K = 0, one pass).
    The importance samples of an example share one encoder pass, so for a model whose
    encoder costs as much as its decoder this errs on the long side.

    Args:
      history: the run's records (``metrics.jsonl``).
      config: the run's config as stored in ``config.json`` (a dict).
      num_samples: K.
    """
    ev = config.get("eval", {})
    per_pass = []
    for r in history:
        seconds = r.get("eval/seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            continue
        passes = max(int(ev.get("elbo_samples", 1)), 1)
        if any(k.startswith("eval/log_likelihood") for k in r):
            passes += max(int(ev.get("ll_samples", 0)), 0)
        per_pass.append(seconds / passes)
    if not per_pass:
        return None
    fastest = min(per_pass)
    how = f"one pass over them took {fastest:.2g} s in this run"
    if len(per_pass) == 1:
        how += " (its only evaluation, compilation included: an upper bound)"
    return max(int(num_samples), 1) * fastest, how


def eval_result_stem(result: dict) -> str:
    """The file name stem of a ``python -m jvae.evaluate`` result:
    ``eval_<split>_K<K>_epoch<E>_seed<S>[_limit<N>]`` (the limit only when it cut the
    split: ``num_examples < split_size``)."""
    split = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(result["split"])).strip("-") or "split"
    stem = (f"eval_{split}_K{result['num_samples']}_epoch{result['epoch']}"
            f"_seed{result['seed']}")
    if result.get("num_examples", 0) < result.get("split_size", 0):
        stem += f"_limit{result['num_examples']}"
    return stem


def run_summary(workdir: str | pathlib.Path, record: dict, history: list[dict] | None = None,
                num_samples: int = 1000) -> str:
    """What a finished run prints: the split it evaluated, its headline numbers, every file
    in ``workdir`` with what it is, and the next command with its time estimate.

    Args:
      workdir: the run directory (its ``config.json`` and ``metrics.jsonl`` are read).
      record: the last epoch's record.
      history: all records (default: read from ``metrics.jsonl``).
      num_samples: K of the suggested ``python -m jvae.evaluate``.
    """
    workdir = pathlib.Path(workdir)
    config = _read_json(workdir / "config.json")
    if history is None:
        from jvae.runs.records import read_metrics

        history = read_metrics(workdir)
    split = evaluated_split(config)
    noun = data_noun(str(config.get("dataset", {}).get("name", "")))
    size = _value(record, "eval/examples")
    data = f"{int(size)} {split} {noun}" if size else f"{split} {noun}"
    lines = [f"done: epoch {record.get('epoch')}, step {record.get('step')}"]
    numbers = [f"{label} {_value(record, key):.2f}" for key, label in _headlines(split)
               if _value(record, key) is not None]
    if numbers:
        lines.append(f"  evaluated on the {split} split"
                     + (f" ({int(size)} {noun})" if size else ""))
        lines.append("  " + ", ".join(numbers) + " (nats per example"
                     + (", mean over runs)" if "train/loss_mean" in record else ")"))
    outputs = describe_outputs(workdir, split, noun)
    lines.append(f"  in {workdir}{'' if str(workdir).endswith('/') else '/'}:")
    width = max((len(name) for name, _ in outputs), default=0)
    lines += [f"    {name:<{width}}  {what}" for name, what in outputs]
    lines += _next_step(workdir, record, history, config, data, num_samples)
    return "\n".join(lines)


def progress_fields(history: list[dict], record: dict, split: str) -> str:
    """The progress bar's fields: the epoch's train loss and the newest evaluation's ELBO
    (or distortion, for an autoencoder) on ``split``, e.g. ``"train loss 104.20, test ELBO
    -105.13"`` (means over seeds for a stacked run)."""
    last_eval = next((r for r in reversed(history) if "eval/distortion" in r
                      or "eval/distortion_mean" in r), None)
    fields = [f"train loss {_scalar(record, 'train/loss'):.2f}"]
    if last_eval is not None:
        elbo = any(k.startswith("eval/elbo") for k in last_eval)
        name = "elbo" if elbo else "distortion"
        fields.append(f"{split} {'ELBO' if elbo else 'distortion'} "
                      f"{_scalar(last_eval, f'eval/{name}'):.2f}")
    return ", ".join(fields)


def _headlines(split: str) -> list[tuple[str, str]]:
    return [("train/loss", "train loss"), ("eval/elbo", f"{split} ELBO"),
            ("eval/distortion", f"{split} distortion"), ("eval/rate", f"{split} rate"),
            ("eval/log_likelihood", f"{split} log p(x)")]


def _next_step(workdir, record, history, config, data, num_samples) -> list[str]:
    """The suggested ``python -m jvae.evaluate`` and how long it should take."""
    autoencoder = record.get("eval/elbo", record.get("eval/elbo_mean")) is None
    k = 0 if autoencoder else int(num_samples)
    command = f"python -m jvae.evaluate --workdir {workdir}"
    if autoencoder:
        what = f"reconstruction errors of the {data}"
    else:
        command += f" --num-samples {k}"
        what = f"importance-sampled log p(x) of the {data}, K = {k}"
    estimate = evaluation_estimate(history, config, k)
    lines = [f"next: {command}", f"  {what}"]
    if estimate is not None:
        seconds, how = estimate
        lines.append(f"  {_duration(seconds)} of evaluation at this run's speed ({how}), "
                     "plus start-up and compilation")
    epoch = record.get("epoch")
    if epoch is not None:
        stem = eval_result_stem({"split": evaluated_split(config), "num_samples": k,
                                 "epoch": epoch, "seed": 0})
        lines.append(f"  it writes {workdir / (stem + '.json')}")
    return lines


def _duration(seconds: float) -> str:
    """``"under a second"``, ``"about 40 s"``, ``"about 3 minutes"``, ``"about 2.5 hours"``."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} minutes"
    return f"about {seconds / 3600:.1f} hours"


def _scalar(record: dict, key: str) -> float:
    return record.get(f"{key}_mean", record.get(key, float("nan")))


def _value(record: dict, key: str) -> float | None:
    v = record.get(f"{key}_mean", record.get(key))
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _read_json(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
