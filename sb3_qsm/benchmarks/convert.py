"""
Measure the conversion of a trained SB3 SAC (or TD3) agent to QSM: the deterministic return of the source agent, of the
converted QSM agent before any RL update, and after ``--finetune-steps`` QSM training steps.

    python -m sb3_qsm.benchmarks convert \\
        --source rl-trained-agents/sac/HalfCheetah-v3_1/HalfCheetah-v3.zip --env HalfCheetah-v5 \\
        --finetune-steps 20000 --out benchmarks/convert

The source may be an older RL Zoo agent pickled with the retired ``gym`` package. The record goes to
``<out>/<env>.json`` (an evaluation result per stage, see ``sb3_qsm.benchmarks.evaluation``); the converted and
fine-tuned agents are saved next to it unless ``--no-save``.

``convert-ablation`` fine-tunes a converted agent (saved by ``convert``) with other settings, printing the
deterministic return (2 episodes) every 1,000 steps after refilling a replay buffer with 5,000 steps of its own
policy (action noise 0.1); the logs in ``benchmarks/convert/finetune_ablation/`` are its output:

    python -m sb3_qsm.benchmarks convert-ablation --model benchmarks/convert/HalfCheetah-v5_converted.zip \\
        --bc-coef 3 --temperature 0.1 --noise-std 0.1
"""

import argparse
import json
import pathlib
import time
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

from sb3_qsm import QSM, convert_to_qsm
from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.evaluation import describe_result, environment, evaluate
from sb3_qsm.convert import collect_source_data, load_sb3_agent

EVAL_SEED = 1000
STAGES = ("source", "converted", "finetuned")


def evaluate_stage(agent: Any, env_id: str, n_episodes: int) -> dict[str, Any]:
    """
    :param agent: An agent at one stage of the measurement (source, converted, fine-tuned, ...)
    :param env_id: The environment
    :param n_episodes: Episodes of its deterministic policy
    :return: The evaluation, on a fresh environment seeded ``EVAL_SEED``: every stage meets the same initial states
    """
    return evaluate(agent, make_vec_env(env_id, n_envs=1, seed=EVAL_SEED), n_episodes, deterministic=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """
    Convert, evaluate, fine-tune and evaluate again.

    :param args: The command's arguments
    :return: The record written to ``<out>/<env>.json``
    """
    record = start_record(args)

    def evaluated(agent: Any) -> dict[str, Any]:
        return evaluate_stage(agent, args.env, args.eval_episodes)

    env = make_vec_env(args.env, n_envs=1, seed=args.seed)
    record["source"] = evaluated(load_sb3_agent(args.source, env, device="cpu"))
    print(f"source agent: {describe_result(record['source'])}")

    start = time.perf_counter()
    model = convert_to_qsm(
        args.source,
        env,
        n_collect_steps=args.collect_steps,
        distill_steps=args.distill_steps,
        seed=args.seed,
        device="cpu",
        learning_rate=args.learning_rate,
        **({} if args.bc_coef is None else {"bc_coef": args.bc_coef}),
    )
    record |= {"conversion_seconds": time.perf_counter() - start, "score_scale": model.score_scale, "bc_coef": model.bc_coef}
    record["converted"] = evaluated(model)
    print(f"converted QSM (score_scale {model.score_scale:.3g}): {describe_result(record['converted'])}")
    if not args.no_save:
        model.save(args.out / f"{args.env}_converted")

    return finetune_and_write(args, model, record)


def start_record(args: argparse.Namespace) -> dict[str, Any]:
    """
    Seed and thread the process, and make the output folder, for a measurement from a source agent.

    :param args: The command's arguments
    :return: The record, with the arguments
    """
    th.set_num_threads(args.threads)
    th.manual_seed(args.seed)
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    return {"args": {key: str(value) for key, value in vars(args).items()}}


def finetune_and_write(args: argparse.Namespace, model: QSM, record: dict[str, Any]) -> dict[str, Any]:
    """
    The measurement's last stage: fine-tune for ``--finetune-steps``, evaluate, save the agent (unless
    ``--no-save``) and write the record to ``<out>/<env>.json``.

    :param args: The command's arguments
    :param model: The QSM agent before fine-tuning
    :param record: The record so far
    :return: The complete record
    """
    start = time.perf_counter()
    model.learn(args.finetune_steps, progress_bar=False)
    record["finetune_seconds"] = time.perf_counter() - start
    record["finetuned"] = evaluate_stage(model, args.env, args.eval_episodes)
    print(f"after {args.finetune_steps} QSM steps: {describe_result(record['finetuned'])}")
    if not args.no_save:
        model.save(args.out / f"{args.env}_finetuned")
    record["environment"] = environment()
    (args.out / f"{args.env}.json").write_text(json.dumps(record, indent=2))
    return record


def ablation(args: argparse.Namespace) -> None:
    """
    Fine-tune a converted agent with other settings (see the module's docstring).

    :param args: The command's arguments
    """
    th.set_num_threads(1)
    env = make_vec_env(args.env, n_envs=1, seed=0)
    model = QSM.load(args.model, env=env, device="cpu", buffer_size=100_000)
    model.bc_coef = args.bc_coef
    model.score_scale *= args.scale_factor
    model.sampler_temperature = args.temperature
    n_actions = int(np.prod(env.action_space.shape))  # type: ignore[arg-type]
    if args.noise_std > 0:
        model.action_noise = NormalActionNoise(np.zeros(n_actions), args.noise_std * np.ones(n_actions))
    collect_source_data(model, model, 5000, 0.1, True)  # type: ignore[arg-type]
    eval_env = make_vec_env(args.env, n_envs=1, seed=EVAL_SEED)
    print("score_scale", model.score_scale, "bc_coef", model.bc_coef, "temperature", args.temperature, "noise", args.noise_std)
    print(0, describe_result(evaluate(model, eval_env, 2, True)), flush=True)
    for k in range(args.steps):
        model.learn(1000, reset_num_timesteps=k == 0, log_interval=1000)
        print((k + 1) * 1000, describe_result(evaluate(model, eval_env, 2, True)), flush=True)


def stages_parser(command: str, description: str | None, source_help: str, threads: int) -> argparse.ArgumentParser:
    """
    :param command: The command's name
    :param description: Its help text
    :param source_help: What ``--source`` takes
    :param threads: The default of ``--threads``
    :return: A parser with the arguments of a measurement from a source agent to a fine-tuned QSM agent: the source,
        the task, the fine-tuning budget, the evaluations, the seed, threads and where the results go
    """
    parser = command_parser(command, description)
    parser.add_argument("--source", type=pathlib.Path, required=True, help=source_help)
    parser.add_argument("--env", required=True)
    parser.add_argument("--finetune-steps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=threads, help="torch threads")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(f"benchmarks/{command}"))
    parser.add_argument("--no-save", action="store_true", help="do not save the QSM agents")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = stages_parser("convert", __doc__, "SAC or TD3 .zip", threads=2)
    parser.add_argument("--collect-steps", type=int, default=10_000)
    parser.add_argument("--distill-steps", type=int, default=20_000)
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="QSM learning rate for fine-tuning")
    parser.add_argument("--bc-coef", type=float, default=None, help="QSM bc_coef (default: convert_to_qsm's)")
    measure(parser.parse_args(argv))
    return 0


def ablation_main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = command_parser("convert-ablation", ablation.__doc__)
    parser.add_argument("--model", required=True, help="a converted QSM agent")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--bc-coef", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampler temperature")
    parser.add_argument("--noise-std", type=float, default=0.0, help="std of the Gaussian action noise (0: none)")
    parser.add_argument("--scale-factor", type=float, default=1.0, help="multiplies the converted score scale")
    parser.add_argument("--steps", type=int, default=6, help="thousands of fine-tuning steps")
    ablation(parser.parse_args(argv))
    return 0
