"""Callbacks, the progress bar and BatchNorm/Dropout train-eval semantics."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import (
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_qsm import QSM


def test_callbacks(tmp_path, small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    eval_callback = EvalCallback(
        gym.make("Pendulum-v1"),
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=1e9),
        best_model_save_path=str(tmp_path),
        log_path=str(tmp_path),
        eval_freq=100,
        n_eval_episodes=1,
        warn=False,
    )
    checkpoint = CheckpointCallback(save_freq=100, save_path=str(tmp_path / "ckpt"), save_replay_buffer=True)
    model.learn(300, callback=CallbackList([eval_callback, checkpoint]), progress_bar=True)
    assert (tmp_path / "best_model.zip").exists()
    assert np.load(tmp_path / "evaluations.npz")["results"].shape == (3, 1)
    assert (tmp_path / "ckpt" / "rl_model_200_steps.zip").exists()
    assert (tmp_path / "ckpt" / "rl_model_replay_buffer_200_steps.pkl").exists()
    loaded = QSM.load(tmp_path / "ckpt" / "rl_model_200_steps.zip")
    loaded.load_replay_buffer(tmp_path / "ckpt" / "rl_model_replay_buffer_200_steps.pkl")
    # SB3 calls the callback before storing the step's transition: 199 transitions at step 200
    assert loaded.replay_buffer.size() == 199


def test_stop_on_max_episodes(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    model.learn(10_000, callback=StopTrainingOnMaxEpisodes(max_episodes=1))
    assert model.num_timesteps == 200  # one Pendulum episode


class FlattenBatchNormDropoutExtractor(BaseFeaturesExtractor):
    """Features extractor with BatchNorm and Dropout, to check train/eval modes."""

    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, int(np.prod(observation_space.shape)))
        self.flatten = nn.Flatten()
        self.batch_norm = nn.BatchNorm1d(self._features_dim)
        self.dropout = nn.Dropout(0.5)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.dropout(self.batch_norm(self.flatten(observations)))


def _bn_stats(module: nn.Module) -> tuple[th.Tensor, th.Tensor]:
    bn = module.features_extractor.batch_norm
    return bn.running_mean.clone(), bn.running_var.clone()


def test_train_eval_mode(small_kwargs):
    small_kwargs["policy_kwargs"]["features_extractor_class"] = FlattenBatchNormDropoutExtractor
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    actor_stats, critic_stats = _bn_stats(model.actor), _bn_stats(model.critic)

    # Collecting data and predicting does not change the running statistics
    model.gradient_steps = 0
    model.learn(150)
    assert all(th.equal(a, b) for a, b in zip(actor_stats, _bn_stats(model.actor), strict=True))
    assert all(th.equal(a, b) for a, b in zip(critic_stats, _bn_stats(model.critic), strict=True))
    obs = np.random.uniform(-1, 1, (4, 3)).astype(np.float32)
    first, _ = model.predict(obs, deterministic=True)
    second, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(first, second), "dropout must be off in predict"
    assert all(th.equal(a, b) for a, b in zip(actor_stats, _bn_stats(model.actor), strict=True))

    # Training changes them, and the target critic receives a copy of the critic's statistics
    model.gradient_steps = 1
    model.learn(50, reset_num_timesteps=False)
    assert not th.equal(actor_stats[0], _bn_stats(model.actor)[0])
    assert not th.equal(critic_stats[0], _bn_stats(model.critic)[0])
    assert all(th.equal(a, b) for a, b in zip(_bn_stats(model.critic), _bn_stats(model.critic_target), strict=True))
    assert not model.critic_target.training


@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_learn_logs(small_kwargs, capsys, verbose):
    QSM("MlpPolicy", "Pendulum-v1", verbose=verbose, **small_kwargs).learn(450, log_interval=1)
    out = capsys.readouterr().out
    assert ("train/actor_loss" in out or "actor_loss" in out) == bool(verbose)
