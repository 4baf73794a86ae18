"""
Saves are atomic: a training process killed with SIGKILL in the middle of saving its model and replay buffer leaves
the previous checkpoint whole, loadable, and holding every transition it had; the checkpoint callback's checkpoints
hold every transition up to their step.
"""

import os
import random
import signal
import subprocess
import sys
import time

import gymnasium as gym
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_qsm import QSM, AtomicCheckpointCallback
from sb3_qsm.common.checkpoint import atomic_file

# A child process that stores TRANSITIONS transitions, saves a checkpoint, says so, and then saves the same
# checkpoint again and again until it is killed. The buffer is large (its unused part is saved too), so that
# every save takes long enough to be killed in the middle of it.
TRANSITIONS = 150
CHILD = f"""
import sys
import torch
torch.set_num_threads(1)
from sb3_qsm import QSM
model = QSM("MlpPolicy", "Pendulum-v1", buffer_size=2_000_000, learning_starts=10_000, n_diffusion_steps=3,
            policy_kwargs=dict(net_arch=[16]), seed=0)
model.learn({TRANSITIONS})
folder = sys.argv[1]
model.save(folder + "/model.zip")
model.save_replay_buffer(folder + "/buffer.pkl")
print("saved", flush=True)
while True:
    print("saving", flush=True)
    model.save(folder + "/model.zip")
    model.save_replay_buffer(folder + "/buffer.pkl")
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_kill_during_save_loses_nothing(tmp_path):
    rng = random.Random(0)
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "saved"
        assert child.stdout.readline().strip() == "saving"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

        model = QSM.load(tmp_path / "model.zip", buffer_size=1)
        model.load_replay_buffer(tmp_path / "buffer.pkl")
        assert model.replay_buffer is not None and model.replay_buffer.size() == TRANSITIONS
        assert model.num_timesteps == TRANSITIONS


@pytest.mark.parametrize("train_freq", [1, (2, "step")])
def test_checkpoint_resumes_with_every_transition(tmp_path, small_kwargs, train_freq):
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    model = QSM("MlpPolicy", env, train_freq=train_freq, seed=0, **small_kwargs)
    callback = AtomicCheckpointCallback(50, str(tmp_path), save_replay_buffer=True, save_vecnormalize=True)
    model.learn(120, callback=callback)
    for steps in (50, 100):
        loaded = QSM.load(tmp_path / f"rl_model_{steps}_steps.zip", env=env)
        loaded.load_replay_buffer(tmp_path / f"rl_model_replay_buffer_{steps}_steps.pkl")
        assert loaded.num_timesteps == steps
        assert loaded.replay_buffer is not None and loaded.replay_buffer.size() == steps
        statistics = VecNormalize.load(str(tmp_path / f"rl_model_vecnormalize_{steps}_steps.pkl"), env)
        assert statistics.obs_rms.count == pytest.approx(steps + 1, abs=1)
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_save_keeps_the_previous_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_file(target) as file:
        file.write(b"partial")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"previous"
    assert not list(tmp_path.glob(".*.tmp"))
    stale = tmp_path / ".file.bin.abc.tmp"
    stale.write_bytes(b"left by a killed save")
    with atomic_file(target) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new" and not stale.exists()
