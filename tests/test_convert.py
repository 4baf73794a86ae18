"""Carrying SB3 SAC and TD3 agents over to QSM: critics copied, actor distilled, old checkpoints read, bad input refused."""

import base64
import json
import pathlib
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env

from sb3_qsm import QSM, convert_to_qsm
from sb3_qsm.convert import collect_source_data, load_sb3_agent
from sb3_qsm.convert.convert import CONVERTED_BC_COEF, CONVERTED_SAMPLER_TEMPERATURE

PUBLISHED = pathlib.Path(__file__).resolve().parents[1] / "rl-trained-agents" / "sac"
FAST = dict(n_collect_steps=300, distill_steps=300, distill_batch_size=64)


@pytest.fixture(scope="module")
def sac_path(tmp_path_factory) -> pathlib.Path:
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, policy_kwargs=dict(net_arch=[32, 32]), seed=0, device="cpu")
    model.learn(150)
    path = tmp_path_factory.mktemp("sac") / "sac.zip"
    model.save(path)
    return path


def _pendulum() -> object:
    return make_vec_env("Pendulum-v1", n_envs=1, seed=0)


def _action_error(model: QSM, source: SAC | TD3, observations: np.ndarray) -> float:
    expected, _ = source.predict(observations, deterministic=True)
    actions, _ = model.predict(observations, deterministic=True)
    return float(np.abs(expected - actions).mean())


def test_convert_sac_copies_critics_and_distills_actor(sac_path):
    env = _pendulum()
    source = SAC.load(sac_path, device="cpu")
    model = convert_to_qsm(
        sac_path, env, n_collect_steps=500, distill_steps=1500, distill_batch_size=128, device="cpu", seed=0
    )
    assert isinstance(model, QSM)
    for name in ("critic", "critic_target"):
        expected = getattr(source, name).state_dict()
        for key, value in getattr(model, name).state_dict().items():
            assert th.equal(value, expected[key]), f"{name}.{key}"
    assert model.policy.actor_kwargs["net_arch"] == [32, 32]
    assert model.gamma == source.gamma
    # The transitions of the old policy's run seed the replay buffer, so learning can start at once
    assert model.replay_buffer.size() == 500
    assert model.learning_starts == 0
    assert model.score_scale > 0
    assert model.bc_coef == CONVERTED_BC_COEF
    assert (model.score_target, model.n_diffusion_steps, model.beta_schedule) == ("gradient", 5, "vp")
    assert model.actor.action_fan_in_init is False
    assert model.actor.sampler_temperature == CONVERTED_SAMPLER_TEMPERATURE
    assert model.action_noise is not None
    observations = model.replay_buffer.observations[:500, 0]
    fresh = QSM("MlpPolicy", env, policy_kwargs=dict(net_arch=[32, 32]), device="cpu", seed=0)
    assert _action_error(model, source, observations) < 0.3 * _action_error(fresh, source, observations)
    model.learn(100)  # fine-tuning runs


def test_convert_loaded_td3_and_keep_given_score_scale():
    source = TD3("MlpPolicy", "Pendulum-v1", learning_starts=50, policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu")
    source.learn(100)
    model = convert_to_qsm(
        source, _pendulum(), score_scale=3.0, fill_replay_buffer=False, bc_coef=0.0, action_noise=None, device="cpu", **FAST
    )
    assert model.score_scale == 3.0
    assert model.bc_coef == 0.0 and model.action_noise is None  # the fine-tuning defaults can be overridden
    assert model.replay_buffer.size() == 0
    assert model.learning_starts == 100
    assert th.equal(model.critic.qf0[0].weight, source.critic.qf0[0].weight)
    assert model.policy.critic_kwargs["net_arch"] == [16]


def test_convert_with_old_replay_buffer(sac_path, tmp_path):
    source = SAC.load(sac_path, env=_pendulum(), device="cpu")
    source.learn(100)  # its replay buffer holds 100 transitions
    source.save_replay_buffer(tmp_path / "buffer.pkl")
    model = convert_to_qsm(sac_path, _pendulum(), replay_buffer=tmp_path / "buffer.pkl", device="cpu", **FAST)
    assert model.replay_buffer.size() == 100 + FAST["n_collect_steps"]


def _with_gym_pickled_spaces(source: pathlib.Path, target: pathlib.Path) -> None:
    """Rewrite a checkpoint as older zoo agents are: spaces pickled as ``gym.spaces.box.Box``."""
    fake_modules = {name: types.ModuleType(name) for name in ("gym", "gym.spaces", "gym.spaces.box")}
    fake_class = type("Box", (), {"__module__": "gym.spaces.box", "__qualname__": "Box"})
    fake_modules["gym.spaces.box"].Box = fake_class  # type: ignore[attr-defined]
    sys.modules.update(fake_modules)
    try:
        serialized = base64.b64encode(pickle.dumps(fake_class())).decode()
    finally:
        for name in fake_modules:
            del sys.modules[name]
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    for key in ("observation_space", "action_space"):
        data[key][":serialized:"] = serialized
        data[key][":type:"] = "<class 'gym.spaces.box.Box'>"
        data[key]["shape"] = str(tuple(data[key].pop("_shape")))
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_reads_checkpoint_pickled_with_retired_gym(sac_path, tmp_path):
    old = tmp_path / "old_gym.zip"
    _with_gym_pickled_spaces(sac_path, old)
    with pytest.raises(ModuleNotFoundError, match="gym"):
        SAC.load(old)  # what a plain load does
    env = _pendulum()
    source = load_sb3_agent(old, env, device="cpu")
    assert source.observation_space == env.observation_space
    model = convert_to_qsm(old, env, device="cpu", **FAST)
    assert th.equal(model.critic.qf1[2].weight, source.critic.qf1[2].weight)


@pytest.mark.parametrize(
    "algo, env_id, match",
    [(PPO, "Pendulum-v1", "only Stable-Baselines3 SAC and TD3"), (DQN, "CartPole-v1", "only Stable-Baselines3 SAC and TD3")],
)
def test_refuses_other_algorithms(tmp_path, algo, env_id, match):
    path = tmp_path / "agent.zip"
    algo("MlpPolicy", env_id, device="cpu").save(path)
    with pytest.raises(ValueError, match=match) as error:
        convert_to_qsm(path, _pendulum(), device="cpu", **FAST)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="only Stable-Baselines3 SAC and TD3"):
        convert_to_qsm(PPO("MlpPolicy", "Pendulum-v1", device="cpu"), _pendulum(), device="cpu", **FAST)


def test_refuses_mismatched_spaces(sac_path):
    env = make_vec_env("MountainCarContinuous-v0", n_envs=1)
    with pytest.raises(ValueError, match=r"observations of shape \(3,\).*\(2,\)"):
        convert_to_qsm(sac_path, env, device="cpu", **FAST)
    with pytest.raises(ValueError, match="observation space"):
        convert_to_qsm(SAC.load(sac_path, device="cpu"), env, device="cpu", **FAST)


def test_refuses_mismatched_critic_architecture(sac_path):
    with pytest.raises(ValueError, match=r"critic tensor qf0.0.weight has shape \(32, 4\) there but \(64, 4\)"):
        convert_to_qsm(sac_path, _pendulum(), policy_kwargs=dict(net_arch=[64, 64]), device="cpu", **FAST)


def test_refuses_corrupt_or_truncated_checkpoints(sac_path, tmp_path):
    content = sac_path.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(content[: len(content) // 3])
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all" * 100)
    for path in (truncated, garbage, tmp_path / "missing.zip"):
        with pytest.raises(ValueError, match="Cannot load checkpoint") as error:
            convert_to_qsm(path, _pendulum(), device="cpu", **FAST)
        assert str(path) in str(error.value)


def test_refuses_bad_arguments_and_buffers(sac_path, tmp_path):
    for kwargs, match in (
        (dict(n_collect_steps=0), "n_collect_steps"),
        (dict(distill_steps=-1), "distill_steps"),
        (dict(noise_std=float("nan")), "noise_std"),
        (dict(score_scale="big"), "score_scale"),
        (dict(score_target="posterior"), "score_scale='auto' fits the scale of the gradient score target"),
    ):
        with pytest.raises(ValueError, match=match):
            convert_to_qsm(sac_path, _pendulum(), device="cpu", **{**FAST, **kwargs})
    other = SAC("MlpPolicy", "MountainCarContinuous-v0", policy_kwargs=dict(net_arch=[32, 32]), device="cpu")
    other.save_replay_buffer(tmp_path / "other.pkl")
    with pytest.raises(ValueError, match="replay buffer"):
        convert_to_qsm(sac_path, _pendulum(), replay_buffer=tmp_path / "other.pkl", device="cpu", **FAST)


def test_collect_source_data_covers_requested_steps(sac_path):
    env = _pendulum()
    source = SAC.load(sac_path, device="cpu")
    model = QSM("MlpPolicy", env, policy_kwargs=dict(net_arch=[32, 32]), device="cpu")
    observations = collect_source_data(model, source, 250, noise_std=0.0, fill_replay_buffer=True)
    assert observations.shape == (250, 3)
    stored = model.replay_buffer.actions[:250, 0]
    expected, _ = source.predict(observations, deterministic=True)
    # Without noise the stored actions are the source's, in the [-1, 1] scale
    assert np.allclose(stored, source.policy.scale_action(expected), atol=1e-5)


@pytest.mark.parametrize(
    "folder, env_id",
    [("Pendulum-v1_1/Pendulum-v1.zip", "Pendulum-v1"), ("HalfCheetah-v3_1/HalfCheetah-v3.zip", "HalfCheetah-v5")],
)
def test_published_zoo_agents_convert(folder, env_id):
    env = make_vec_env(env_id, n_envs=1, seed=0)
    source = load_sb3_agent(PUBLISHED / folder, env, device="cpu")
    model = convert_to_qsm(source, env, device="cpu", n_collect_steps=100, distill_steps=50, distill_batch_size=32)
    assert th.equal(model.critic_target.qf0[0].weight, source.critic_target.qf0[0].weight)
    assert model.policy.actor_kwargs["net_arch"] == list(source.actor.net_arch)
