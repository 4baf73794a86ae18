"""
Fine-tune a pretrained HalfCheetah agent with other settings, printing the deterministic return (2 episodes) every
2,000 steps. The agent and its Minari dataset are those of ``python -m sb3_qsm.benchmarks pretrain --out <folder>``:

    python benchmarks/pretrain/trials/finetune_trial.py <folder> '{"score_target": "posterior"}' 8000
"""

import json
import os
import sys

import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_qsm import QSM, Demonstrations
from sb3_qsm.benchmarks.evaluation import describe_result, evaluate
from sb3_qsm.convert import fill_replay_buffer


def main() -> None:
    folder, settings, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    th.set_num_threads(1)
    os.environ["MINARI_DATASETS_PATH"] = os.path.join(folder, "minari")
    env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=0)
    model = QSM.load(os.path.join(folder, "HalfCheetah-v5_pretrained.zip"), env=env, device="cpu", buffer_size=100_000)
    for name, value in settings.items():
        setattr(model, name, value)
    fill_replay_buffer(model, Demonstrations.from_minari("sb3-qsm/halfcheetah-v5-demonstrator-v0"))
    eval_env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=1000)
    print(settings, "start", describe_result(evaluate(model, eval_env, 2, True)), flush=True)
    for index in range(steps // 2000):
        model.learn(2000, reset_num_timesteps=False)
        print((index + 1) * 2000, describe_result(evaluate(model, eval_env, 2, True)), flush=True)


if __name__ == "__main__":
    main()
