"""Table of the mixed-precision guide (``docs/guides/precision.md``) from
``docs/data/precision.json``, written by ``python -m experiments.precision --json
docs/data/precision.json``. Registered into :data:`data_tables.TABLES`."""

from __future__ import annotations

from hook_common import load, project_on_path, row

MODELS = {"mlp": "pytorch_example MLP VAE", "conv": "default conv model"}


def precision_table(data: dict) -> str:
    """One row per model: float32 and bfloat16 runs from the same start, what bfloat16 did
    to the test ELBO and the IS log-likelihood, and the interleaved timings."""
    lines = [row(["model", "steps", "test images", "test ELBO f32", "bf16 trained - f32",
                  f"log p(x) (K={data['ll_samples']}) f32", "bf16 trained - f32",
                  "bf16 evaluation - f32", "s/step f32", "s/step bf16",
                  "IS eval s f32", "IS eval s bf16"]), row(["---"] * 12)]
    for name, m in data["models"].items():
        f32, b16, d = m["float32"], m["bfloat16"], m["differences"]
        lines.append(row([MODELS.get(name, name), m["steps"], m["test_images"],
                          f"{f32['test_elbo']:.2f}",
                          f"{d['test_elbo_bf16_trained_minus_f32']:+.3f}",
                          f"{f32['ll']:.2f}", f"{d['ll_bf16_trained_minus_f32']:+.3f}",
                          f"{d['ll_bf16_eval_minus_f32_eval']:+.3f}",
                          f"{f32['seconds_per_step']:.4f}", f"{b16['seconds_per_step']:.4f}",
                          f"{f32['ll_seconds']:.2f}", f"{b16['ll_seconds']:.2f}"]))
    lines.append("")
    lines.append(f"`{data['command']}`, measured {data['measured']} at commit "
                 f"{data['commit']} on {data['machine']} ({data['backend']}, "
                 f"{data['device']}; 1-minute load average {data['load_average']} at the end: "
                 "a shared host, so the times are indicative); times are medians of "
                 "interleaved rounds.")
    return "\n".join(lines)


def precision_seeds_table(data: dict) -> str:
    """``python -m experiments.precision_seeds``: a table per jax version (the test loss of
    each seed in both precisions, the median epochs), each with its command's provenance."""
    project_on_path()
    from experiments.precision_seeds import table

    parts = []
    for entry in data.values():
        parts.append(table(entry))
        parts.append(f"\n`{entry['command']}`, measured {entry['measured']} at commit "
                     f"{entry['commit']} on {entry['machine']} ({entry['device']}), load "
                     f"average {entry['load_average']} at the end.\n")
    return "\n".join(parts)


TABLES = {"precision": lambda: precision_table(load("precision.json")),
          "precision-seeds": lambda: precision_seeds_table(load("precision_seeds.json"))}
