"""Ad-hoc: fine-tune the pretrained HalfCheetah agent with given settings; print deterministic return every 2k steps."""
import json, os, sys
import numpy as np, torch as th
th.set_num_threads(1)
os.environ["MINARI_DATASETS_PATH"] = "/tmp/pretrain-trial/minari"
from stable_baselines3.common.env_util import make_vec_env
from sb3_qsm import QSM, Demonstrations
from sb3_qsm.convert import fill_replay_buffer
from sb3_qsm.benchmarks.evaluation import evaluate, describe_result
settings = json.loads(sys.argv[1]); steps = int(sys.argv[2])
env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=0)
model = QSM.load("/tmp/pretrain-trial/HalfCheetah-v5_pretrained.zip", env=env, device="cpu", buffer_size=100_000)
for k, v in settings.items():
    setattr(model, k, v)
fill_replay_buffer(model, Demonstrations.from_minari("sb3-qsm/halfcheetah-v5-demonstrator-v0"))
eval_env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=1000)
print(settings, "start", describe_result(evaluate(model, eval_env, 2, True)), flush=True)
for k in range(steps // 2000):
    model.learn(2000, reset_num_timesteps=False)
    print((k + 1) * 2000, describe_result(evaluate(model, eval_env, 2, True)), flush=True)
