"""
Measure pretraining from demonstrations: record rollouts of a trained SB3 agent (the demonstrator) as a Minari dataset,
pretrain a QSM agent on it (``pretrain_qsm``), and evaluate the demonstrator, the pretrained QSM agent before any RL
update, and the agent after ``--finetune-steps`` QSM training steps, as ``convert`` does for ``convert_to_qsm``:

    python -m sb3_qsm.benchmarks pretrain \\
        --source rl-trained-agents/sac/HalfCheetah-v3_1/HalfCheetah-v3.zip --env HalfCheetah-v5 \\
        --demo-steps 10000 --finetune-steps 20000 --out benchmarks/pretrain

The dataset is written under ``<out>/minari`` (``MINARI_DATASETS_PATH``), made anew on every run; the record goes to
``<out>/<env>.json``, the pretrained and fine-tuned agents next to it unless ``--no-save``.
"""

import argparse
import os
import shutil
import time
from typing import Any

from stable_baselines3.common.env_util import make_vec_env

from sb3_qsm.benchmarks.convert import evaluate_stage, finetune_and_write, stages_parser, start_record
from sb3_qsm.benchmarks.evaluation import describe_result
from sb3_qsm.convert import Demonstrations, load_sb3_agent, pretrain_qsm, record_demonstrations


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """
    Record, pretrain, evaluate, fine-tune and evaluate again.

    :param args: The command's arguments
    :return: The record written to ``<out>/<env>.json``
    """
    record = start_record(args)
    datasets = args.out / "minari"
    shutil.rmtree(datasets, ignore_errors=True)
    os.environ["MINARI_DATASETS_PATH"] = str(datasets.resolve())

    source = load_sb3_agent(args.source, make_vec_env(args.env, n_envs=1, seed=args.seed), device="cpu")
    record["source"] = evaluate_stage(source, args.env, args.eval_episodes)
    print(f"demonstrator: {describe_result(record['source'])}")
    start = time.perf_counter()
    dataset = record_demonstrations(
        source, args.env, f"sb3-qsm/{args.env.lower()}-demonstrator-v0", args.demo_steps, noise_std=args.noise_std,
        seed=args.seed, description=f"Rollouts of {args.source} with Gaussian action noise of std {args.noise_std}",
    )  # fmt: skip
    demonstrations = Demonstrations.from_minari(dataset)
    record["demonstrations"] = {
        "transitions": len(demonstrations),
        "episodes": int(dataset.total_episodes),
        "record_seconds": time.perf_counter() - start,
    }

    start = time.perf_counter()
    model = pretrain_qsm(
        demonstrations,
        make_vec_env(args.env, n_envs=1, seed=args.seed),
        actor_steps=args.actor_steps,
        critic_steps=args.critic_steps,
        seed=args.seed,
        device="cpu",
        **({} if args.conservative_weight is None else {"conservative_weight": args.conservative_weight}),
    )
    record |= {"pretrain_seconds": time.perf_counter() - start, "score_scale": model.score_scale}
    record["pretrained"] = evaluate_stage(model, args.env, args.eval_episodes)
    print(f"pretrained QSM (score_scale {model.score_scale:.3g}): {describe_result(record['pretrained'])}")
    if not args.no_save:
        model.save(args.out / f"{args.env}_pretrained")
    return finetune_and_write(args, model, record)


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = stages_parser("pretrain", __doc__, "the demonstrator: a SAC or TD3 .zip", threads=1)
    parser.add_argument("--demo-steps", type=int, default=10_000, help="environment steps of demonstrations")
    parser.add_argument("--noise-std", type=float, default=0.1, help="action noise while recording")
    parser.add_argument("--actor-steps", type=int, default=20_000)
    parser.add_argument("--critic-steps", type=int, default=20_000)
    parser.add_argument("--conservative-weight", type=float, default=None, help="default: pretrain_qsm's")
    measure(parser.parse_args(argv))
    return 0
