"""
Evaluate zoo-layout agents (``<folder>/<algo>/<ENV>_<id>/<ENV>.zip``) with deterministic episodes and write the
result as ``evaluation.json`` next to each agent (or under ``--out``). The environment is built as the zoo's
``enjoy`` builds it, from the agent's saved ``config.yml`` and ``args.yml``.

    python -m sb3_qsm.benchmarks zoo-eval --folder rl-trained-agents --algo qsm --episodes 10
"""

import json
import pathlib
from typing import Any

from rl_zoo3 import ALGOS, create_test_env, get_saved_hyperparams

from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.evaluation import describe_result, environment, evaluate
from sb3_qsm.zoo import register


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
