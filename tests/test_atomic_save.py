"""
Saves are atomic: a training process killed with SIGKILL in the middle of saving its model and replay buffer leaves
the previous checkpoint whole, loadable, and holding every transition it had; the checkpoint callback's checkpoints
hold every transition up to their step.
"""

import os
import signal
import stat

import gymnasium as gym
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_qsm import QSM, AtomicCheckpointCallback
from sb3_qsm.benchmarks.kill_save import TRANSITIONS, kill_during_saves
from sb3_qsm.common.checkpoint import atomic_file


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_kill_during_save_loses_nothing(tmp_path):
    outcomes = kill_during_saves(tmp_path, kills=3)
    assert all(outcome["intact"] for outcome in outcomes), outcomes
    assert all(outcome["transitions"] == TRANSITIONS for outcome in outcomes)


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


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_has_the_permissions_of_a_plain_write(tmp_path, small_kwargs):
    """A temporary file is private to its owner; the file a save leaves must not be (another user or a container
    loads the model), and a file replaced keeps its own permissions."""
    umask = os.umask(0o027)
    try:
        model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
        model.save(tmp_path / "model.zip")
        assert stat.S_IMODE((tmp_path / "model.zip").stat().st_mode) == 0o640
        (tmp_path / "model.zip").chmod(0o604)
        model.save(tmp_path / "model.zip")
        assert stat.S_IMODE((tmp_path / "model.zip").stat().st_mode) == 0o604
    finally:
        os.umask(umask)
