"""
Carry a trained SB3 SAC (or TD3) agent over to QSM and fine-tune it, measuring the deterministic return of the old
agent, of the converted QSM agent before any RL update, and after ``--finetune-steps`` QSM training steps.

    python examples/convert_sac_to_qsm.py \\
        --checkpoint ../shared/zoo-checkpoints/sac/HalfCheetah-v3_1/HalfCheetah-v3.zip --env HalfCheetah-v5 \\
        --finetune-steps 20000 --out benchmarks/convert

The checkpoint may be an older RL Zoo agent pickled with the retired ``gym`` package. The results go to
``<out>/<env>.json``; the converted and fine-tuned agents are saved next to it unless ``--no-save``.
"""

import argparse
import json
import pathlib
import time

import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_qsm import __version__, convert_to_qsm
from sb3_qsm.common.checkpoint import load_sb3_agent


def evaluate(model: BaseAlgorithm, env_id: str, episodes: int, seed: int) -> dict:
    """
    :return: Mean and std of the deterministic return over ``episodes`` episodes, and the returns
    """
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    returns, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    return {
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "returns": [float(r) for r in np.atleast_1d(returns)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True, help="SAC or TD3 .zip")
    parser.add_argument("--env", required=True)
    parser.add_argument("--finetune-steps", type=int, default=20_000)
    parser.add_argument("--collect-steps", type=int, default=10_000)
    parser.add_argument("--distill-steps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="QSM learning rate for fine-tuning")
    parser.add_argument("--bc-coef", type=float, default=None, help="QSM bc_coef (default: convert_to_qsm's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/convert"))
    parser.add_argument("--no-save", action="store_true", help="do not save the QSM agents")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    th.manual_seed(args.seed)
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict = {"args": {key: str(value) for key, value in vars(args).items()}}

    env = make_vec_env(args.env, n_envs=1, seed=args.seed)
    record["source"] = evaluate(load_sb3_agent(args.checkpoint, env, device="cpu"), args.env, args.eval_episodes, 1000)
    print(f"source agent: {record['source']['mean']:.1f} +/- {record['source']['std']:.1f}")

    start = time.perf_counter()
    model = convert_to_qsm(
        args.checkpoint,
        env,
        n_collect_steps=args.collect_steps,
        distill_steps=args.distill_steps,
        seed=args.seed,
        device="cpu",
        learning_rate=args.learning_rate,
        **({} if args.bc_coef is None else {"bc_coef": args.bc_coef}),
    )
    record["conversion_seconds"] = time.perf_counter() - start
    record["score_scale"] = model.score_scale
    record["bc_coef"] = model.bc_coef
    record["converted"] = evaluate(model, args.env, args.eval_episodes, 1000)
    converted = record["converted"]
    print(f"converted QSM (score_scale {model.score_scale:.3g}): {converted['mean']:.1f} +/- {converted['std']:.1f}")
    if not args.no_save:
        model.save(args.out / f"{args.env}_converted")

    start = time.perf_counter()
    model.learn(args.finetune_steps, progress_bar=False)
    record["finetune_seconds"] = time.perf_counter() - start
    record["finetuned"] = evaluate(model, args.env, args.eval_episodes, 1000)
    print(f"after {args.finetune_steps} QSM steps: {record['finetuned']['mean']:.1f} +/- {record['finetuned']['std']:.1f}")
    if not args.no_save:
        model.save(args.out / f"{args.env}_finetuned")

    for stage in ("converted", "finetuned"):
        record[f"{stage}_over_source"] = record[stage]["mean"] / record["source"]["mean"]
    record["versions"] = {"sb3_qsm": __version__, "stable_baselines3": stable_baselines3.__version__, "torch": th.__version__}
    (args.out / f"{args.env}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
