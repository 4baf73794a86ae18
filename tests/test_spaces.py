"""Dict and image observations, HER, VecNormalize and frame stacking."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.envs import BitFlippingEnv, FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize, VecTransposeImage, is_vecenv_wrapped

from sb3_qsm import QSM


class DummyDictEnv(gym.Env):
    """Dict observations (vector + image + discrete) and a Box action."""

    def __init__(self, with_discrete: bool = True):
        keys = {"vec": spaces.Box(-1, 1, (4,), np.float32), "img": spaces.Box(0, 255, (36, 36, 1), np.uint8)}
        if with_discrete:
            keys["discrete"] = spaces.Discrete(3)
        self.observation_space = spaces.Dict(keys)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(-np.sum(action**2)), False, self.np_random.random() < 0.05, {}


def test_dict_spaces(small_kwargs):
    small_kwargs["policy_kwargs"]["features_extractor_kwargs"] = dict(cnn_output_dim=8)
    small_kwargs["buffer_size"] = 300
    model = QSM("MultiInputPolicy", DummyDictEnv(), seed=0, **small_kwargs)
    model.learn(150)
    obs = model.get_env().reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1, 2)
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        QSM("MlpPolicy", DummyDictEnv())


def test_dict_vec_framestack(small_kwargs):
    small_kwargs["policy_kwargs"]["features_extractor_kwargs"] = dict(cnn_output_dim=8)
    small_kwargs["buffer_size"] = 300
    env = VecFrameStack(DummyVecEnv([lambda: DummyDictEnv(with_discrete=False)]), n_stack=2)
    model = QSM("MultiInputPolicy", env, **small_kwargs)
    model.learn(150)
    # Both frames of every key reach the buffer and the policy
    assert model.replay_buffer.observations["vec"].shape[-1] == 8
    assert model.replay_buffer.observations["img"].shape[-3:] == (2, 36, 36)  # transposed to channels first
    assert not np.array_equal(
        model.replay_buffer.observations["vec"][140, 0, :4], model.replay_buffer.observations["vec"][140, 0, 4:]
    )
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (1, 2) and env.action_space.contains(actions[0])
    again, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(actions, again)


def test_multi_obs_env(small_kwargs):
    small_kwargs["policy_kwargs"]["features_extractor_kwargs"] = dict(cnn_output_dim=8)
    small_kwargs["learning_starts"] = 50
    env = DummyVecEnv([lambda: SimpleMultiObsEnv(random_start=True, discrete_actions=False)])
    model = QSM("MultiInputPolicy", env, seed=0, **small_kwargs)
    model.learn(100)
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    again, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(actions, again)
    assert env.action_space.contains(actions[0])


def test_vec_normalize(small_kwargs):
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), gamma=0.99)
    model = QSM("MlpPolicy", env, **small_kwargs)
    model.learn(200)
    assert model._vec_normalize_env is env
    # Observations were normalised: running mean moved away from 0
    assert not np.allclose(env.obs_rms.mean, 0.0)


def test_cnn_policy(tmp_path, small_kwargs):
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=False)
    small_kwargs["buffer_size"] = 250
    small_kwargs["policy_kwargs"]["features_extractor_kwargs"] = dict(features_dim=16)
    model = QSM("CnnPolicy", env, seed=0, **small_kwargs)
    # The image env is wrapped in VecTransposeImage automatically
    assert is_vecenv_wrapped(model.get_env(), VecTransposeImage)
    model.learn(150)
    obs = model.get_env().reset()
    action, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "cnn")
    loaded = QSM.load(tmp_path / "cnn", env=model.get_env())
    assert np.allclose(action, loaded.predict(obs, deterministic=True)[0], atol=1e-6)


def test_cnn_feature_extractor_target_net(small_kwargs):
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=False)
    small_kwargs.update(buffer_size=250, learning_starts=50)
    small_kwargs["policy_kwargs"].update(features_extractor_kwargs=dict(features_dim=16), share_features_extractor=True)
    model = QSM("CnnPolicy", env, seed=0, **small_kwargs)
    assert model.critic.features_extractor is model.actor.features_extractor
    assert model.critic_target.features_extractor is not model.actor.features_extractor
    target_before = [p.clone() for p in model.critic_target.parameters()]
    model.learn(100)
    assert any(not th.equal(a, b) for a, b in zip(target_before, model.critic_target.parameters(), strict=True))
    # With tau = 0 the target does not move
    model.tau = 0.0
    target_before = [p.clone() for p in model.critic_target.parameters()]
    model.learn(20, reset_num_timesteps=False)
    assert all(th.equal(a, b) for a, b in zip(target_before, model.critic_target.parameters(), strict=True))


@pytest.mark.parametrize("goal_selection_strategy", ["future", "final"])
def test_her(tmp_path, small_kwargs, goal_selection_strategy):
    n_bits = 4
    env = BitFlippingEnv(n_bits=n_bits, continuous=True)
    small_kwargs.update(learning_starts=50)
    model = QSM(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy=goal_selection_strategy),
        **small_kwargs,
    )
    model.learn(150)
    obs = env.reset()[0]
    action, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "her")
    model.save_replay_buffer(tmp_path / "her_buffer")
    # The env must be given at load time for HER; learning rate overrides work as with SAC
    loaded = QSM.load(tmp_path / "her", env=env, custom_objects=dict(learning_rate=2e-5, dummy=1.0), learning_rate=2e-4)
    assert loaded.learning_rate == 2e-4
    loaded.load_replay_buffer(tmp_path / "her_buffer")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    assert np.allclose(action, loaded.predict(obs, deterministic=True)[0], atol=1e-6)
    loaded.learn(50, reset_num_timesteps=False)


class VecOnlyDictEnv(gym.Wrapper):
    """Pendulum with its observation wrapped in a Dict with one vector key."""

    def __init__(self):
        super().__init__(gym.make("Pendulum-v1"))
        self.observation_space = spaces.Dict({"obs": self.env.observation_space})

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return {"obs": obs}, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {"obs": obs}, reward, terminated, truncated, info


def test_dict_and_flat_consistency(small_kwargs):
    """A Dict env holding one vector and the plain env give the same deterministic actions, before and after learning."""
    dict_env = DummyVecEnv([VecOnlyDictEnv])
    flat_env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    dict_env.seed(10)
    flat_env.seed(10)
    dict_model = QSM("MultiInputPolicy", dict_env, seed=0, **small_kwargs)
    flat_model = QSM("MlpPolicy", flat_env, seed=0, **{**small_kwargs, "policy_kwargs": dict(small_kwargs["policy_kwargs"])})
    obs = flat_env.reset()
    dict_obs = {"obs": obs}
    for _ in range(2):
        flat_actions, _ = flat_model.predict(obs, deterministic=True)
        dict_actions, _ = dict_model.predict(dict_obs, deterministic=True)
        assert np.allclose(flat_actions, dict_actions, atol=1e-6)
        flat_model.learn(150)
        dict_model.learn(150)
