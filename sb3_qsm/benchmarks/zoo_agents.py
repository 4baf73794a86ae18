"""
Evaluate zoo-layout agents (``<folder>/<algo>/<ENV>_<id>/<ENV>.zip``) with deterministic episodes and write the
result as ``evaluation.json`` next to each agent (or under ``--out``). The environment is built as the zoo's
``enjoy`` builds it, from the agent's saved ``config.yml`` and ``args.yml``.

    python -m sb3_qsm.benchmarks zoo-eval --folder rl-trained-agents --algo qsm --episodes 10
"""

import json
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np
from rl_zoo3 import ALGOS, create_test_env, get_saved_hyperparams

from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.aggregate import learning_curve_axes
from sb3_qsm.benchmarks.evaluation import describe_result, environment, evaluate
from sb3_qsm.zoo import register

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def evaluate_agent(run: pathlib.Path, algo: str, episodes: int, seed: int) -> dict[str, Any]:
    """
    :param run: The agent's folder (``<ENV>_<id>``)
    :param algo: Zoo algorithm name
    :param episodes: Number of deterministic episodes
    :param seed: Seed of the evaluation environment
    :return: The record: the agent, its training steps, and the evaluation result of its deterministic policy
    """
    env_id = run.name.rsplit("_", 1)[0]
    stats_path = run / env_id
    hyperparams, _ = get_saved_hyperparams(str(stats_path), test_mode=True)
    env = create_test_env(
        env_id, n_envs=1, stats_path=str(stats_path), seed=seed, log_dir=None, should_render=False, hyperparams=hyperparams
    )
    custom_objects = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0}
    model = ALGOS[algo].load(run / f"{env_id}.zip", custom_objects=custom_objects, device="cpu", buffer_size=1)
    return {
        "env": env_id,
        "algo": algo,
        "n_timesteps": model.num_timesteps,
        "seed": seed,
        "deterministic": evaluate(model, env, episodes, deterministic=True),
        "environment": environment(),
    }


def training_curve(run: pathlib.Path) -> tuple[np.ndarray, np.ndarray] | None:
    """
    :param run: A zoo run's folder (``<ENV>_<id>``)
    :return: The steps of the evaluations the zoo ran while training it (``evaluations.npz``, written by
        ``--eval-freq``) and their mean returns, or None where it kept none
    """
    path = run / "evaluations.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["timesteps"], data["results"].mean(axis=1)


def plot_training_curves(runs: list[pathlib.Path], baselines: pathlib.Path, baseline_label: str) -> "Figure":
    """
    One panel per agent: the mean return of its evaluations during training, beside the run of the same name under
    ``baselines`` where there is one (drawn over its own budget).

    :param runs: The agents' folders (``<ENV>_<id>``), each with its ``evaluations.npz``
    :param baselines: The folder of the baseline's runs (``<ENV>_<id>``)
    :param baseline_label: The baseline's name in the legend
    :return: The matplotlib figure
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.4), squeeze=False)
    for ax, run in zip(axes.flat, runs, strict=True):
        for folder, label in ((run, "QSM"), (baselines / run.name, baseline_label)):
            curve = training_curve(folder)
            if curve is not None:
                ax.plot(*curve, marker=".", label=label)
        learning_curve_axes(ax, run.name.rsplit("_", 1)[0])
        ax.legend()
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = command_parser("zoo-eval", __doc__)
    parser.add_argument("--folder", type=pathlib.Path, default=pathlib.Path("rl-trained-agents"))
    parser.add_argument("--algo", default="qsm")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write <out>/<ENV>_<id>/evaluation.json instead")
    args = parser.parse_args(argv)
    register(predict_only=True)
    for run in sorted(path for path in (args.folder / args.algo).iterdir() if path.is_dir()):
        result = evaluate_agent(run, args.algo, args.episodes, args.seed)
        target = run if args.out is None else args.out / run.name
        target.mkdir(parents=True, exist_ok=True)
        (target / "evaluation.json").write_text(json.dumps(result, indent=2))
        print(f"{args.algo} {result['env']}: {describe_result(result['deterministic'])} ({args.episodes} episodes)")
    return 0
