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
"""

import argparse
import pathlib
from typing import Any

import numpy as np

from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.aggregate import LABELS, final_return, group, learning_curve, load_runs, number, row_label
from sb3_qsm.benchmarks.runner import PAIRED_BEST_OF_N, PAIRED_KEY

# The suite whose runs are the reference curve, and the algorithm that draws it
REFERENCE_SUITE, REFERENCE_ALGO = "v1", "sac"


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


def main(argv: list[str] | None = None) -> int:
    parser: argparse.ArgumentParser = command_parser("ablation", __doc__)
    parser.add_argument("--results", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args(argv)
    print(screen_table(load_runs(args.results / "screen"), load_runs(args.results / REFERENCE_SUITE)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
