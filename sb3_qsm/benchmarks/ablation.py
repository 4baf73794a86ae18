"""
The ablation table of the screen suite: every candidate change to QSM's defaults that was screened (suite
``screen``: 50k steps, one seed), wins and losses alike, beside QSM's defaults in the same screen and beside SAC
(RL Zoo) at the same steps of its suite v1 runs (same settings, longer budget: its evaluations up to the screen's
budget are the reference curve).

    python -m sb3_qsm.benchmarks ablation            # prints the Markdown table

Each cell is the mean return of one deterministic evaluation (5 episodes during training, 10 at the end); the
stochastic column is the final evaluation of the sampled policy, and the last one the final deterministic
evaluation of the same model acting with the best of 32 sampled actions ("-" for runs from before it was recorded).
The documentation build writes this table into the benchmarks page.

The second table, ``probe_table``, gathers the longer probes (``benchmarks/probes/``: 100k steps with the warm-up
default, one line per run with its final evaluation) beside the references they were measured against: QSM's suite
v2 rows run with the defaults of the probes' time (``score_actions="replay"``, then the plain critics), those of
today's defaults, and SAC (RL Zoo)'s suite v2 rows.
The probes evaluate on other episode seeds than the runner, so a probe and a suite row of the same seed differ.

    python -m sb3_qsm.benchmarks ablation --probes   # prints the probes' table instead
"""

import argparse
import json
import pathlib
from typing import Any

import numpy as np

from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.aggregate import LABELS, final_return, group, learning_curve, load_runs, number, row_label
from sb3_qsm.benchmarks.runner import PAIRED_BEST_OF_N, PAIRED_KEY

# The suite whose runs are the reference curve, and the algorithm that draws it
REFERENCE_SUITE, REFERENCE_ALGO = "v1", "sac"
# The probes' files whose runs share the protocol of the probe table (100k steps, the warm-up default), its budget,
# its seeds, and the folders of its reference rows under benchmarks/results (QSM's defaults while the probes ran,
# SAC (RL Zoo) at the same budget)
PROBE_FILES = ("target_variants_warmup.jsonl", "target_variants_hopper.jsonl", "target_variants_walker2d.jsonl")
PROBE_BUDGET, PROBE_SEEDS = 100_000, (0, 1, 2)
# The suite rows beside the probes: name -> (folder under the results, algorithm, label)
PROBE_REFERENCES = {
    "qsm-replay": ("superseded/v2-score-actions-replay", "qsm", 'QSM (defaults then: `score_actions="replay"`), suite v2'),
    "qsm-plain": ("superseded/v2-plain-critics", "qsm", "QSM (defaults then: plain critics, `q_spread_floor=0.3`), suite v2"),
    "qsm": ("v2", "qsm", "QSM (defaults), suite v2"),
    "sac": ("v2", "sac", "SAC (RL Zoo), suite v2"),
}
# What each probe variant changes (benchmarks/probes/target_variants.py says how)
PROBE_VARIANTS = {
    "mean": "",
    "policy-clean": '`score_actions="mixed"`',
    "policy-anchor": '`score_actions="policy"`',
    "policy-anchor-half": "half the batch on the policy's samples",
    "no-anchor": "the replay action not a candidate",
    "local-spread": "each sample's own spread",
    "crossq-256": "CrossQ critics (256 units, no target networks)",
    "tqc-2": "TQC critics (25 quantiles, the 2 largest per network dropped)",
}


def _curve_cells(steps: np.ndarray, returns: np.ndarray, columns: list[int]) -> list[str]:
    """:return: The return at each column's step, "-" where the curve has no evaluation there"""
    at = dict(zip(steps.tolist(), returns.tolist(), strict=True))
    return [number(at[step], 0) if step in at else "-" for step in columns]


def screen_table(screen: list[dict[str, Any]], reference: list[dict[str, Any]]) -> str:
    """
    :param screen: Finished runs of the screen suite
    :param reference: Finished runs of the reference suite (SAC's curves are read from them)
    :return: The Markdown table: one row per task and algorithm, the return at each evaluation step, the final
        deterministic and stochastic returns, and SAC (RL Zoo)'s mean over its seeds at the same steps
    """
    if not screen:
        return "No screen results committed yet.\n"
    budget = max(run["spec"]["budget"] for run in screen)
    columns = sorted({int(step) for run in screen for step in learning_curve(run)[0] if step > 0})
    header = " | ".join(f"{step // 1000}k" if step % 1000 == 0 else f"{step:,}" for step in columns)
    lines = [
        f"| Task | Algorithm | {header} | Final (10 episodes) | Final, stochastic | Final, best of {PAIRED_BEST_OF_N} |",
        "| --- | --- |" + " --- |" * (len(columns) + 3),
    ]
    references = group(reference)
    for env, algos in group(screen).items():
        for algo, runs in algos.items():
            for run in runs:
                steps, returns = learning_curve(run)
                stochastic, paired = (
                    number(final_return(run, mode), 0) if mode in run["final"] else "-" for mode in ("stochastic", PAIRED_KEY)
                )
                cells = " | ".join(_curve_cells(steps, returns, columns))
                label = row_label(algo, run["settings"]) + (f", seed {run['spec']['seed']}" if len(runs) > 1 else "")
                lines.append(f"| {env} | {label} | {cells} | {number(final_return(run), 0)} | {stochastic} | {paired} |")
        sac_runs = references.get(env, {}).get(REFERENCE_ALGO, [])
        if sac_runs:
            curves = [learning_curve(run) for run in sac_runs]
            steps = curves[0][0]
            mean = np.mean([returns for _, returns in curves], axis=0)
            cells = " | ".join(_curve_cells(steps, mean, columns))
            label = f"{LABELS[REFERENCE_ALGO]}, suite {REFERENCE_SUITE} ({len(sac_runs)} seeds, mean)"
            lines.append(f"| {env} | {label} | {cells} | - | - | - |")
    note = f"\nBudget {budget:,} steps; the SAC rows are evaluations during training, not a final evaluation.\n"
    return "\n".join(lines) + "\n" + note


def probe_label(line: dict[str, Any]) -> str:
    """:return: What a probe changed from the defaults of its time: its variant and its QSM arguments"""
    changes = [PROBE_VARIANTS.get(line["variant"], line["variant"])]
    changes += [f"`{name}={value!r}`" for name, value in line["kwargs"].items()]
    return ", ".join(change for change in changes if change) or "defaults"


def load_probes(probes_dir: pathlib.Path) -> list[dict[str, Any]]:
    """
    :param probes_dir: Folder of the probes' files
    :return: The last line of each finished run of ``PROBE_FILES`` at ``PROBE_BUDGET``, in the files' order
    """
    lines = []
    for name in PROBE_FILES:
        path = probes_dir / name
        if path.is_file():
            lines += [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    return [line for line in lines if "final" in line and line.get("budget") == PROBE_BUDGET]


def probe_table(probes: list[dict[str, Any]], references: dict[str, list[dict[str, Any]]]) -> str:
    """
    :param probes: Finished probe runs (``load_probes``)
    :param references: Finished suite runs by the keys of ``PROBE_REFERENCES``
    :return: The Markdown table: per task, the reference rows, then one row per probe, the final deterministic
        return of each seed and their mean
    """
    if not probes:
        return "No probe results committed yet.\n"
    rows: dict[str, dict[str, dict[int, float]]] = {}
    for line in probes:
        rows.setdefault(line["env"], {}).setdefault(probe_label(line), {})[line["seed"]] = line["final"]["mean"]
    for key, (_, algo, label) in PROBE_REFERENCES.items():
        for run in references.get(key, []):
            if run["spec"]["env_id"] in rows and run["spec"]["algo"] == algo:
                finals = rows[run["spec"]["env_id"]].setdefault(label, {})
                finals[run["spec"]["seed"]] = final_return(run)
    reference_labels = [label for _, _, label in PROBE_REFERENCES.values()]
    seeds = " | ".join(f"Seed {seed}" for seed in PROBE_SEEDS)
    lines = [f"| Task | Run | {seeds} | Mean |", "| --- | --- |" + " --- |" * (len(PROBE_SEEDS) + 1)]
    for env, by_label in rows.items():
        ordered = [label for label in reference_labels if label in by_label]
        ordered += [label for label in by_label if label not in reference_labels]
        for label in ordered:
            finals = by_label[label]
            cells = " | ".join(number(finals[seed], 0) if seed in finals else "-" for seed in PROBE_SEEDS)
            mean = number(float(np.mean(list(finals.values()))), 0)
            lines.append(f"| {env} | {label} | {cells} | {mean} ({len(finals)}) |")
    note = (
        f"\nFinal deterministic return at {PROBE_BUDGET:,} steps (10 episodes); the mean is over the seeds run (their"
        " number in brackets).\n"
    )
    return "\n".join(lines) + "\n" + note


def load_probe_references(results: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """:return: The finished runs of each reference folder of ``PROBE_REFERENCES`` under ``results``, each folder read once"""
    runs = {folder: load_runs(results / folder) for folder, _, _ in PROBE_REFERENCES.values()}
    return {key: runs[folder] for key, (folder, _, _) in PROBE_REFERENCES.items()}


def main(argv: list[str] | None = None) -> int:
    parser: argparse.ArgumentParser = command_parser("ablation", __doc__)
    parser.add_argument("--results", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    parser.add_argument("--probes", action="store_true", help="print the table of the probes instead of the screen's")
    parser.add_argument("--probes-dir", type=pathlib.Path, default=pathlib.Path("benchmarks/probes"))
    args = parser.parse_args(argv)
    if args.probes:
        print(probe_table(load_probes(args.probes_dir), load_probe_references(args.results)), end="")
    else:
        print(screen_table(load_runs(args.results / "screen"), load_runs(args.results / REFERENCE_SUITE)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
