"""Saving and loading: the model, the policy alone, the actor alone, the replay buffer and raw parameters."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_qsm import QSM
from sb3_qsm.qsm.actor import DiffusionActor
from sb3_qsm.qsm.policies import DiffusionActorPolicy


def _observations(env, n: int = 10) -> np.ndarray:
    return np.stack([env.observation_space.sample() for _ in range(n)])


def test_save_load(tmp_path, small_kwargs):
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    model = QSM("MlpPolicy", env, seed=0, **small_kwargs)
    model.learn(150)
    params = model.get_parameters()
    original = {k: v.clone() for k, v in params["policy"].items()}
    assert set(params) == {"policy", "actor.optimizer", "critic.optimizer"}

    # Randomise every weight, then restore through set_parameters
    random_params = {
        name: {k: th.rand_like(v) if v.is_floating_point() else v for k, v in tensors.items()}
        for name, tensors in params.items()
        if name == "policy"
    }
    model.set_parameters(random_params, exact_match=False)
    for key, value in model.get_parameters()["policy"].items():
        assert not th.allclose(value, original[key]), key
    with pytest.raises(ValueError):
        model.set_parameters({"unknown_object": {}}, exact_match=False)
    with pytest.raises(ValueError):
        model.set_parameters(random_params, exact_match=True)  # optimizers missing
    with pytest.raises(RuntimeError):
        model.set_parameters({"policy": {"actor.denoiser.net.0.weight": th.zeros(3, 3)}}, exact_match=False)

    observations = _observations(env.envs[0])
    expected, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "qsm.zip")
    del model
    for device in ["cpu", "auto"]:
        loaded = QSM.load(tmp_path / "qsm.zip", env=env, device=device)
        assert loaded.policy.device.type == get_device(device).type
        actions, _ = loaded.predict(observations, deterministic=True)
        assert np.allclose(expected, actions, rtol=1e-5, atol=1e-6)
        # Hyperparameters survive
        assert loaded.score_scale == 5.0 and loaded.n_diffusion_steps == 3 and loaded.score_target == "posterior"
        loaded.learn(200, reset_num_timesteps=False)

    # Loading from a file object works too
    with open(tmp_path / "qsm.zip", "rb") as file:
        loaded = QSM.load(file)
    actions, _ = loaded.predict(observations, deterministic=True)
    assert np.allclose(expected, actions, rtol=1e-5, atol=1e-6)


def test_load_predict_only_with_small_buffer(tmp_path, small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    model.save(tmp_path / "qsm")
    loaded = QSM.load(tmp_path / "qsm", buffer_size=1)
    assert loaded.replay_buffer.buffer_size == 1
    obs = np.zeros(3, dtype=np.float32)
    assert np.allclose(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_set_env(small_kwargs):
    """A new environment (VecEnv or plain) goes on training the same model from the same replay buffer."""
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    model.learn(150)
    vec_env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    model.set_env(vec_env)
    assert model.get_env() is vec_env
    model.learn(150, reset_num_timesteps=False)
    assert model.num_timesteps == 300 and model.replay_buffer.size() == 300
    env = gym.make("Pendulum-v1")
    model.set_env(env)
    assert model.get_env().envs[0].unwrapped is env.unwrapped
    model.learn(150, reset_num_timesteps=True)
    assert model.num_timesteps == 150 and model.replay_buffer.size() == 450
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        model.set_env(gym.make("MountainCarContinuous-v0"))


def test_exclude_include_saved_params(tmp_path, small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", verbose=0, **small_kwargs)
    model.save(tmp_path / "qsm", exclude=["verbose"])
    loaded = QSM.load(tmp_path / "qsm")
    assert loaded.verbose == 0  # default value, the saved one was excluded
    model.verbose = 2
    model.save(tmp_path / "qsm", exclude=["verbose"], include=["verbose"])
    assert QSM.load(tmp_path / "qsm").verbose == 2


def test_save_load_replay_buffer(tmp_path, small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    model.learn(300)
    old_buffer = model.replay_buffer
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    model.replay_buffer = None
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    for field in ("observations", "actions", "rewards", "dones", "next_observations"):
        assert np.array_equal(getattr(old_buffer, field), getattr(model.replay_buffer, field))
    # Training continues from the reloaded buffer
    model.learn(50, reset_num_timesteps=False)


@pytest.mark.parametrize("policy_str", ["MlpPolicy", "CnnPolicy"])
def test_save_load_policy_and_actor(tmp_path, small_kwargs, policy_str):
    if policy_str == "MlpPolicy":
        env = "Pendulum-v1"
    else:
        env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=2, discrete=False)
        small_kwargs["policy_kwargs"]["features_extractor_kwargs"] = dict(features_dim=16)
        small_kwargs["buffer_size"] = 250
    model = QSM(policy_str, env, seed=0, **small_kwargs)
    model.learn(150)
    env = model.get_env()
    observations = np.concatenate([env.reset() for _ in range(4)])

    # Randomise the whole state dict of the policy: every key must change (the schedule is not in it)
    state_dict = {k: v.clone() for k, v in model.policy.state_dict().items()}
    randomized = {k: th.rand_like(v) if v.is_floating_point() else th.randint_like(v, 0, 10) for k, v in state_dict.items()}
    model.policy.load_state_dict(randomized)
    for key, value in model.policy.state_dict().items():
        assert not th.equal(value, state_dict[key]), key

    policy_actions, _ = model.policy.predict(observations, deterministic=True)
    actor_actions, _ = model.actor.predict(observations, deterministic=True)
    assert np.allclose(policy_actions, actor_actions)
    model.policy.save(tmp_path / "policy.pkl")
    model.actor.save(tmp_path / "actor.pkl")
    for device in ["cpu", "auto"]:
        policy = type(model.policy).load(tmp_path / "policy.pkl", device=device)
        assert isinstance(policy, DiffusionActorPolicy)
        assert np.allclose(policy.predict(observations, deterministic=True)[0], policy_actions, atol=1e-6)
        actor = DiffusionActor.load(tmp_path / "actor.pkl", device=device)
        assert np.allclose(actor.predict(observations, deterministic=True)[0], actor_actions, atol=1e-6)
        assert actor.n_diffusion_steps == 3 and actor.beta_schedule == "cosine"


@pytest.mark.parametrize("safe", [True, False])
def test_policy_file_older_than_the_sampler_samples_as_it_trained(tmp_path, small_kwargs, safe):
    """A policy or actor saved alone before the sampler argument existed holds no value for it: it loads with the
    reference sampler it was trained with, not today's default; a policy saved before TQC's critics became the default
    holds no n_quantiles, and loads with the plain critics it has."""
    small_kwargs["policy_kwargs"].update(n_quantiles=None)
    model = QSM("MlpPolicy", "Pendulum-v1", sampler="posterior", **small_kwargs)
    for network, name in ((model.policy, "policy.pth"), (model.actor, "actor.pth")):
        network.save(tmp_path / name)
        saved = th.load(tmp_path / name, weights_only=False)
        assert saved["data"]["sampler"] == "posterior"
        del saved["data"]["sampler"]
        if isinstance(network, DiffusionActorPolicy):
            assert saved["data"]["n_quantiles"] is None
            del saved["data"]["n_quantiles"]
        th.save(saved, tmp_path / name)
        loaded = type(network).load(tmp_path / name, safe=safe)
        assert (loaded.actor if isinstance(loaded, DiffusionActorPolicy) else loaded).sampler == "reference"
        if isinstance(loaded, DiffusionActorPolicy):
            assert loaded.n_quantiles is None and type(loaded.critic).__name__ == "ContinuousCritic"


def test_paper_preset_save_load(tmp_path):
    model = QSM.from_paper_config(
        "Pendulum-v1", buffer_size=10, batch_size=4, policy_kwargs=dict(net_arch=[8], time_net_arch=[4])
    )
    model.save(tmp_path / "paper")
    loaded = QSM.load(tmp_path / "paper")
    assert loaded.actor_lr_decay_steps == 2_000_000
    assert loaded.policy_kwargs == model.policy_kwargs
    # policy_kwargs given to the preset are merged into the preset's
    assert loaded.policy_kwargs["net_arch"] == [8] and loaded.policy_kwargs["xavier_critic_init"] is True


def test_archive_older_than_an_argument_goes_on_with_the_value_it_trained_with(tmp_path, small_kwargs):
    """An archive written before score_target, q_spread_floor, sampler_noise_color, target_diffusion_steps, sampler or
    score_actions existed trained with the gradient target, no floor, white noise, the critic target's full chain, the
    reference sampler and the replay actions, and one written before TQC's critics became the default (its
    policy_kwargs without n_quantiles) with plain critics: loading it keeps those (unless the caller says otherwise),
    not today's defaults."""
    import zipfile

    kwargs = dict(
        score_target="gradient", q_spread_floor=0.7, sampler_noise_color=1.0, target_diffusion_steps=3, score_actions="policy"
    )
    small_kwargs["policy_kwargs"].update(n_quantiles=None)
    QSM("MlpPolicy", "Pendulum-v1", **kwargs, sampler="posterior", **small_kwargs).save(tmp_path / "today")
    with zipfile.ZipFile(tmp_path / "today.zip") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    for name in kwargs:
        del data[name]
    # The sampler and the critics' quantiles travel in policy_kwargs (stored as plain JSON here: it holds no class)
    del data["policy_kwargs"]["sampler"]
    assert data["policy_kwargs"].pop("n_quantiles") is None
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "older.zip", "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    older = QSM.load(tmp_path / "older")
    assert (older.score_target, older.q_spread_floor, older.sampler_noise_color) == ("gradient", 0.0, 0.0)
    assert older.target_diffusion_steps is None
    assert older.sampler == "reference"
    assert older.score_actions == "replay"
    assert older.policy.n_quantiles is None and type(older.critic).__name__ == "ContinuousCritic"
    assert QSM.load(tmp_path / "older", score_target="posterior").score_target == "posterior"
    assert QSM.load(tmp_path / "older", sampler="posterior").sampler == "posterior"
    # A current archive keeps its own values
    today = QSM.load(tmp_path / "today")
    assert (today.score_target, today.q_spread_floor, today.sampler_noise_color) == ("gradient", 0.7, 1.0)
    assert today.target_diffusion_steps == 3
    assert today.sampler == "posterior"
    assert today.score_actions == "policy"


def test_n_step_replay_comes_back_from_save(tmp_path, small_kwargs):
    """The n-step replay SB3 sets up for n_steps=3 is saved and loaded as SB3 chose it, with no warning that a custom
    buffer class ignores n_steps; the replay buffer saved beside the model loads into it with its n-step returns."""
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, n_steps=3, **small_kwargs)
    model.learn(120)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "replay.pkl")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*n_steps.*ignored")
        loaded = QSM.load(tmp_path / "model.zip", env=gym.make("Pendulum-v1"))
    assert loaded.n_steps == 3 and isinstance(loaded.replay_buffer, NStepReplayBuffer)
    assert loaded.replay_buffer.n_steps == 3
    loaded.load_replay_buffer(tmp_path / "replay.pkl")
    assert loaded.replay_buffer.size() == 120 and loaded.replay_buffer.sample(4).discounts is not None
    loaded.learn(20, reset_num_timesteps=False)
