"""
Aggregate a suite's raw result files (written by the runner) into Markdown tables, a JSON summary and learning-curve
figures. Nothing is typed by hand: rerun it whenever a raw file changes (the documentation build runs it too).

    python -m sb3_qsm.benchmarks aggregate benchmarks/results/v1 --out benchmarks/results/v1/report

Per task and algorithm, over seeds: the final return (each run's mean over its final deterministic episodes) as
mean +- std, its interquartile mean (IQM, the mean of the middle 50% of runs, as rliable defines it) with a 95%
percentile-bootstrap confidence interval (runs resampled with replacement: rliable's stratified bootstrap restricted
to one task), and the area under the learning curve, normalised by the budget (the average evaluation return
over training, trapezoidal rule over the evaluation points).
"""

import json
import pathlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import stats

from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.algorithms import ALGORITHMS
from sb3_qsm.benchmarks.evaluation import mean_return
from sb3_qsm.benchmarks.suite import SUITES

# Display order and names of the algorithms
LABELS = {name: algorithm.label for name, algorithm in ALGORITHMS.items()}
BOOTSTRAP_RESAMPLES = 5000
CONFIDENCE = 0.95
# Versions listed in the provenance table
PACKAGES = ("sb3_qsm", "stable_baselines3", "torch", "gymnasium", "mujoco", "numpy", "python")
# The QSM configuration the verdicts compare with the baselines
REFERENCE, BASELINES = "qsm", ("sac", "td3")


def load_runs(suite_dir: pathlib.Path) -> list[dict[str, Any]]:
    """
    :param suite_dir: Folder of a suite's raw results (``<out>/<suite>``)
    :return: The finished runs, in a stable order: the result files at any depth (an environment id may hold a
        folder, ``dm_control/walker-walk-v0``), outside the hidden folders of checkpoints and locks
    """
    paths = [path for path in suite_dir.rglob("*.json") if not path.relative_to(suite_dir).parts[0].startswith(".")]
    runs = [json.loads(path.read_text()) for path in sorted(paths)]
    return [run for run in runs if "spec" in run and "final" in run]


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the values left after cutting 25% at each end."""
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(values: np.ndarray, statistic: Any = iqm) -> tuple[np.ndarray, np.ndarray]:
    """
    95% percentile-bootstrap confidence interval of a statistic over runs (NaN with fewer than 2 runs).

    :param values: One value per run, or an array ``(runs, points)`` for one interval per point
    """
    if len(values) < 2:
        nan = np.full(np.shape(values)[1:], np.nan)
        return nan, nan
    result = stats.bootstrap(
        (values,),
        statistic,
        axis=0,
        method="percentile",
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        rng=np.random.default_rng(0),
    )
    return result.confidence_interval.low, result.confidence_interval.high


def final_return(run: dict[str, Any], mode: str = "deterministic") -> float:
    """:return: The mean return of a run's final evaluation"""
    return mean_return(run["final"][mode])


def learning_curve(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """:return: The evaluation steps and the mean return of each evaluation"""
    steps = np.array([evaluation["timesteps"] for evaluation in run["evaluations"]])
    returns = np.array([mean_return(evaluation) for evaluation in run["evaluations"]])
    return steps, returns


def area_under_curve(run: dict[str, Any]) -> float:
    """The average evaluation return over training (area under the learning curve divided by the budget)."""
    steps, returns = learning_curve(run)
    return float(np.trapezoid(returns, steps) / run["spec"]["budget"])


def group(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """:return: The runs by task (in the suite's order), then by algorithm (in the order of LABELS)"""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["spec"]["env_id"], {}).setdefault(run["spec"]["algo"], []).append(run)
    suite = SUITES.get(runs[0]["spec"].get("suite", "")) if runs else None
    task_order = {task.env_id: index for index, task in enumerate(suite.tasks)} if suite is not None else {}
    algo_order = {algo: index for index, algo in enumerate(LABELS)}
    return {
        env: dict(sorted(grouped[env].items(), key=lambda item: algo_order.get(item[0], len(algo_order))))
        for env in sorted(grouped, key=lambda env: (task_order.get(env, len(task_order)), env))
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """
    :param runs: Finished runs of one algorithm on one task
    :return: The statistics of the table
    """
    recorded = [run["settings"]["effective_hyperparams"] for run in runs if "effective_hyperparams" in run["settings"]]
    # Compared on the arguments every run records: an argument added later, at a default that keeps the old behaviour
    # (the rule for additions), is missing from the older records
    common = set.intersection(*(set(hyperparams) for hyperparams in recorded)) if recorded else set()
    settings = {json.dumps({key: hyperparams[key] for key in common}, sort_keys=True) for hyperparams in recorded}
    if len(settings) > 1:
        spec = runs[0]["spec"]
        raise ValueError(f"The {spec['algo']} runs on {spec['env_id']} ran with different settings: {sorted(settings)}")
    finals = np.array([final_return(run) for run in runs])
    aucs = np.array([area_under_curve(run) for run in runs])
    low, high = bootstrap_ci(finals)
    summary = {
        "seeds": sorted(run["spec"]["seed"] for run in runs),
        "budget": runs[0]["spec"]["budget"],
        "final_mean": float(finals.mean()),
        "final_std": float(finals.std()),
        "final_iqm": float(iqm(finals)),
        "final_iqm_ci": [float(low), float(high)],
        "auc_mean": float(aucs.mean()),
        "auc_std": float(aucs.std()),
        "hyperparams_source": runs[0]["settings"]["hyperparams_source"],
        "effective_hyperparams": runs[0]["settings"].get("effective_hyperparams", {}),
        # The earlier suites whose runs these are (sb3_qsm.benchmarks.reuse)
        "reused_from": sorted({run["reused_from"].split("/")[0] for run in runs if "reused_from" in run}),
    }
    if all("stochastic" in run["final"] for run in runs):
        stochastic = np.array([final_return(run, "stochastic") for run in runs])
        summary |= {"stochastic_mean": float(stochastic.mean()), "stochastic_std": float(stochastic.std())}
    return summary


def verdict(reference: dict[str, Any], baseline: dict[str, Any]) -> str:
    """
    Compare two final-return IQM intervals: "ahead" or "behind" only when they do not overlap; otherwise they overlap,
    and the verdict says on which side the reference's IQM falls without calling it ahead.
    """
    (ref_low, ref_high), (base_low, base_high) = reference["final_iqm_ci"], baseline["final_iqm_ci"]
    if np.isnan(ref_low) or np.isnan(base_low):
        return "too few seeds to compare"
    if ref_low > base_high:
        return "ahead"
    if ref_high < base_low:
        return "behind"
    higher = "higher" if reference["final_iqm"] > baseline["final_iqm"] else "lower"
    return f"intervals overlap (IQM {higher})"


def column_label(algo: str) -> str:
    """
    The algorithm's label over a column that spans tasks: a baseline by its name alone, since its hyperparameters
    are the RL Zoo's on some tasks and SB3's defaults on others (``row_label`` says which, per task).
    """
    return algo.upper() if algo in BASELINES else LABELS.get(algo, algo)


def row_label(algo: str, summary: dict[str, Any]) -> str:
    """
    The algorithm's label for one task: a zoo algorithm run with SB3's defaults (no zoo entry) says so, and so do
    QSM's defaults run with the white sampler noise of sb3-qsm 0.1 (suites that ran before the defaults changed).

    :param algo: The algorithm's name
    :param summary: Its runs' summary, or a run's ``settings`` (both hold ``hyperparams_source`` and the effective
        hyperparameters)
    """
    if algo in ("sac", "td3") and summary["hyperparams_source"].startswith("SB3 defaults"):
        return f"{algo.upper()} (SB3 defaults: no RL Zoo entry)"
    if algo == "qsm" and summary.get("effective_hyperparams", {}).get("sampler_noise_color", "0.0") == "0.0":
        return "QSM (defaults of 0.1: white sampler noise)"
    return LABELS.get(algo, algo)


def number(value: float, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, without the sign of a value that rounds to zero ("0.0", not "-0.0")."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def mean_std(mean: float, std: float, n_runs: int) -> str:
    """``mean +- std`` over runs; a single run has no spread, so its value alone."""
    return number(mean) if n_runs == 1 else f"{number(mean)} +- {number(std)}"


def iqm_cell(summary: dict[str, Any]) -> str:
    """The final-return IQM and its 95% interval, as the tables print them (a single run has no interval)."""
    low, high = summary["final_iqm_ci"]
    interval = f"[{number(low)}, {number(high)}]" if np.isfinite([low, high]).all() else "(one run: no interval)"
    return f"{number(summary['final_iqm'])} {interval}"


def summary_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The Markdown table of every task and algorithm."""
    lines = [
        "| Task (budget) | Algorithm | Seeds | Final return | IQM [95% CI] | AUC | Final, stochastic |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for env, algos in summaries.items():
        for algo, s in algos.items():
            n_runs = len(s["seeds"])
            stochastic = mean_std(s["stochastic_mean"], s["stochastic_std"], n_runs) if "stochastic_mean" in s else "-"
            lines.append(
                f"| {env} ({s['budget']:,}) | {row_label(algo, s)} | {n_runs} "
                f"| {mean_std(s['final_mean'], s['final_std'], n_runs)} | {iqm_cell(s)} "
                f"| {mean_std(s['auc_mean'], s['auc_std'], n_runs)} | {stochastic} |"
            )
    return "\n".join(lines) + "\n"


def verdict_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    """QSM (defaults) against each baseline, per task, by the final-return IQM and its interval."""
    present = [b for b in BASELINES if any(b in algos for algos in summaries.values())]
    if not present:
        return "No baseline has finished a run yet.\n"
    lines = ["| Task | " + " | ".join(f"QSM vs {column_label(b)}" for b in present) + " |"]
    lines.append("| --- |" + " --- |" * len(present))
    for env, algos in summaries.items():
        if REFERENCE in algos:
            cells = [verdict(algos[REFERENCE], algos[b]) if b in algos else "-" for b in present]
            lines.append(f"| {env} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def statement(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A plain statement, per baseline, of the tasks where QSM (defaults) is ahead, behind, or not told apart."""
    lines = []
    for baseline in BASELINES:
        groups: dict[str, list[str]] = {"ahead": [], "behind": [], "neither clearly ahead nor behind": []}
        for env, algos in summaries.items():
            if REFERENCE not in algos or baseline not in algos:
                continue
            ref, base = algos[REFERENCE], algos[baseline]
            outcome = verdict(ref, base)
            key = outcome if outcome in ("ahead", "behind") else "neither clearly ahead nor behind"
            groups[key].append(f"{env} ({number(ref['final_iqm'], 0)} vs {number(base['final_iqm'], 0)})")
        parts = [f"{key} on {', '.join(envs)}" for key, envs in groups.items() if envs]
        if parts:
            lines.append(f"- Against {column_label(baseline)}, QSM (defaults) is " + "; ".join(parts) + ".")
    note = (
        "\n(Final-return IQMs, QSM first. Ahead or behind: the 95% intervals of the final-return IQM do not overlap; "
        "with fewer than 2 seeds, or overlapping intervals, neither.)\n"
    )
    return "\n".join(lines) + "\n" + note


def hyperparams_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Where each algorithm's hyperparameters came from, per task, and the earlier suite whose runs a row reuses."""
    lines = ["| Task | Algorithm | Hyperparameters | Runs |", "| --- | --- | --- | --- |"]
    for env, algos in summaries.items():
        for algo, s in algos.items():
            runs = ", ".join(f"suite {name}'s" for name in s.get("reused_from", ())) or "this suite's"
            lines.append(f"| {env} | {LABELS.get(algo, algo)} | {s['hyperparams_source']} | {runs} |")
    return "\n".join(lines) + "\n"


def provenance_table(runs: list[dict[str, Any]]) -> str:
    """The machines and package versions the runs ran on, with the training steps done on each (from the segments)."""
    steps: Counter[tuple[str, ...]] = Counter()
    for run in runs:
        for segment in run["segments"]:
            machine, versions = segment["machine"], segment["versions"]
            cpu = f"{machine.get('cpu_model', machine['processor'])}, {machine['cpus']} logical CPUs"
            packages = ", ".join(f"{name} {versions[name]}" for name in PACKAGES if name in versions)
            steps[(cpu, segment["device"], packages)] += segment["steps"]
    lines = ["| Machine | Torch device | Packages | Training steps |", "| --- | --- | --- | --- |"]
    lines.extend(f"| {cpu} | {device} | {packages} | {n:,} |" for (cpu, device, packages), n in steps.most_common())
    return "\n".join(lines) + "\n"


def coverage_table(suite_name: str, runs: list[dict[str, Any]]) -> str:
    """Finished seeds against the seeds the suite plans, per task and algorithm."""
    finished = Counter((run["spec"]["env_id"], run["spec"]["algo"]) for run in runs)
    suite = SUITES[suite_name]
    algos = [algo for algo in LABELS if any(algo in task.algorithms for task in suite.tasks)]
    header = " | ".join(column_label(algo) for algo in algos)
    lines = [f"| Task (budget) | {header} |", "| --- |" + " --- |" * len(algos)]
    for task in suite.tasks:
        planned = len(suite.seeds_of(task))
        cells = [f"{finished[(task.env_id, algo)]} / {planned}" if algo in task.algorithms else "-" for algo in algos]
        lines.append(f"| {task.env_id} ({task.budget:,}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def first_success(run: dict[str, Any], success_return: float) -> int | None:
    """:return: The step at the end of the first training episode whose return exceeds ``success_return``, if any"""
    for end_step, episode_return, _length in run.get("training_episodes", []):
        if episode_return > success_return:
            return int(end_step)
    return None


def success_table(suite_name: str, grouped: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """
    For the tasks with a goal (``Task.success_return``): the seeds that reached it during training, when they first
    did, and the seeds whose final deterministic episodes all reach it.
    """
    lines = [
        "| Task (budget) | Algorithm | Seeds reaching the goal in training | First reached (steps, median) "
        "| Seeds whose final policy reaches it |",
        "| --- | --- | --- | --- | --- |",
    ]
    for task in SUITES[suite_name].tasks:
        if task.success_return is None or task.env_id not in grouped:
            continue
        for algo, runs in grouped[task.env_id].items():
            firsts = [first_success(run, task.success_return) for run in runs]
            reached = [step for step in firsts if step is not None]
            median = f"{np.median(reached):,.0f}" if reached else "-"
            final = sum(min(run["final"]["deterministic"]["returns"]) > task.success_return for run in runs)
            lines.append(
                f"| {task.env_id} ({task.budget:,}) | {LABELS.get(algo, algo)} | {len(reached)} / {len(runs)} "
                f"| {median} | {final} / {len(runs)} |"
            )
    return "\n".join(lines) + "\n"


def algorithm_colours(algos: Iterable[str]) -> dict[str, Any]:
    """
    :param algos: The algorithms a figure draws
    :return: A colour for each, distinct among them up to 20 algorithms (matplotlib's cycle of 10 colours, or the 20
        of ``tab20`` beyond that), assigned in the order of ``LABELS``: the same in every panel of the figure
    """
    order = {algo: index for index, algo in enumerate(LABELS)}
    ordered = sorted(set(algos), key=lambda algo: (order.get(algo, len(order)), algo))
    if len(ordered) <= 10:
        return {algo: f"C{index}" for index, algo in enumerate(ordered)}
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    return {algo: palette(index % 20) for index, algo in enumerate(ordered)}


def learning_curve_axes(ax: Any, title: str) -> None:
    """
    Label a panel of evaluation return against environment steps (in thousands), as every learning-curve figure of
    the benchmarks draws it.

    :param ax: The matplotlib axes
    :param title: The panel's title (the task)
    """
    from matplotlib.ticker import FuncFormatter

    ax.set_title(title)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)


def learning_curves_figure(grouped: dict[str, dict[str, list[dict[str, Any]]]]) -> Any:
    """
    One panel per task: mean evaluation return over seeds, shaded with its 95% bootstrap interval. Each algorithm
    has one colour in every panel, and the legend lists every algorithm drawn in any panel.

    :param grouped: The runs by task, then by algorithm (``group``)
    :return: The matplotlib figure
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = min(3, len(grouped))
    n_rows = -(-len(grouped) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5 * n_cols, 3.6 * n_rows), squeeze=False)
    legend: dict[str, Any] = {}
    colours = algorithm_colours(algo for algos in grouped.values() for algo in algos)
    for ax, (env, algos) in zip(axes.flat, grouped.items(), strict=False):
        for algo, runs in algos.items():
            curves = [learning_curve(run) for run in runs]
            n_points = min(len(steps) for steps, _ in curves)
            steps = curves[0][0][:n_points]
            returns = np.stack([r[:n_points] for _, r in curves])
            colour = colours[algo]
            (line,) = ax.plot(steps, returns.mean(axis=0), color=colour, label=column_label(algo))
            legend.setdefault(algo, line)
            low, high = bootstrap_ci(returns, statistic=np.mean)
            if not np.isnan(low).all():
                ax.fill_between(steps, low, high, color=colour, alpha=0.2)
        learning_curve_axes(ax, env)
    for ax in list(axes.flat)[len(grouped) :]:
        ax.set_visible(False)
    order = [algo for algo in LABELS if algo in legend] + [algo for algo in legend if algo not in LABELS]
    fig.tight_layout()
    fig.legend(
        [legend[algo] for algo in order],
        [column_label(algo) for algo in order],
        loc="upper center",
        bbox_to_anchor=(0.5, 0),
        ncol=min(len(order), 2 * n_cols),
    )
    return fig


def plot_learning_curves(grouped: dict[str, dict[str, list[dict[str, Any]]]], path: pathlib.Path) -> None:
    """Write ``learning_curves_figure`` to ``path``."""
    import matplotlib.pyplot as plt

    fig = learning_curves_figure(grouped)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_report(suite_dir: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    """
    Write the tables (``results.md``, ``verdicts.md``, ``statement.md``, ``hyperparams.md``, ``provenance.md``,
    ``coverage.md``, ``exploration.md``), ``summary.json`` and ``learning_curves.png`` into ``out``.

    :param suite_dir: Folder of a suite's raw results
    :param out: Folder of the report
    :return: The summary
    """
    runs = load_runs(suite_dir)
    if not runs:
        raise FileNotFoundError(f"No finished run in {suite_dir}")
    grouped = group(runs)
    summaries = {env: {algo: summarize(r) for algo, r in algos.items()} for env, algos in grouped.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summaries, indent=1))
    tables = {
        "results.md": summary_table(summaries),
        "verdicts.md": verdict_table(summaries),
        "statement.md": statement(summaries),
        "hyperparams.md": hyperparams_table(summaries),
        "provenance.md": provenance_table(runs),
        "coverage.md": coverage_table(runs[0]["spec"]["suite"], runs),
        "exploration.md": success_table(runs[0]["spec"]["suite"], grouped),
    }
    for name, table in tables.items():
        (out / name).write_text(table)
    plot_learning_curves(grouped, out / "learning_curves.png")
    return summaries


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = command_parser("aggregate", __doc__)
    parser.add_argument("suite_dir", type=pathlib.Path, help="folder of a suite's raw results, e.g. benchmarks/results/v1")
    parser.add_argument("--out", type=pathlib.Path, help="report folder (default: <suite_dir>/report)")
    args = parser.parse_args(argv)
    out = args.out or args.suite_dir / "report"
    write_report(args.suite_dir, out)
    for name in ("coverage.md", "results.md", "verdicts.md", "statement.md", "exploration.md", "provenance.md"):
        print((out / name).read_text())
    print(f"Written to {out}")
    return 0
