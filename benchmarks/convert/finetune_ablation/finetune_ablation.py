"""
Fine-tuning ablation for a converted agent (the logs beside this file): load the converted QSM agent saved by
examples/convert_sac_to_qsm.py, refill a replay buffer with 5,000 steps of its own policy (action noise 0.1), then
fine-tune with the given settings, printing the deterministic return (2 episodes) every 1,000 steps.

    python finetune_ablation.py --model benchmarks/convert/HalfCheetah-v5_converted.zip \
        --bc-coef 3 --temperature 0.1 --noise 0.1
"""

import argparse

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

from sb3_qsm import QSM
from sb3_qsm.common.convert import collect_teacher_data

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--bc-coef", type=float, default=0.0)
parser.add_argument("--temperature", type=float, default=1.0)
parser.add_argument("--noise", type=float, default=0.0, help="std of the Gaussian action noise (0: none)")
parser.add_argument("--scale-factor", type=float, default=1.0, help="multiplies the converted score scale")
parser.add_argument("--steps", type=int, default=6, help="thousands of fine-tuning steps")
args = parser.parse_args()
th.set_num_threads(1)
env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=0)
model = QSM.load(args.model, env=env, device="cpu", buffer_size=100_000)
model.bc_coef = args.bc_coef
model.score_scale *= args.scale_factor
model.actor.sampler_temperature = args.temperature
if args.noise > 0:
    model.action_noise = NormalActionNoise(np.zeros(6), args.noise * np.ones(6))
collect_teacher_data(model, model, 5000, 0.1, True)
eval_env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=1000)
print("score_scale", model.score_scale, "bc_coef", model.bc_coef, "temperature", args.temperature, "noise", args.noise)
print(0, evaluate_policy(model, eval_env, n_eval_episodes=2)[0], flush=True)
for k in range(args.steps):
    model.learn(1000, reset_num_timesteps=k == 0, log_interval=1000)
    print((k + 1) * 1000, evaluate_policy(model, eval_env, n_eval_episodes=2)[0], flush=True)
