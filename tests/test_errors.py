"""Bad input gets a clear error, naming the problem, before any training."""

import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.torch_layers import FlattenExtractor

from sb3_qsm import QSM


@pytest.mark.parametrize(
    "env",
    [IdentityEnv(5), IdentityEnvMultiDiscrete(3), IdentityEnvMultiBinary(3)],
    ids=["Discrete", "MultiDiscrete", "MultiBinary"],
)
def test_non_box_action_space(env):
    with pytest.raises(
        ValueError, match=r"QSM needs a continuous \(Box\) action space, got (Discrete|MultiDiscrete|MultiBinary)"
    ):
        QSM("MlpPolicy", env)


@pytest.mark.parametrize("kwargs", [dict(use_sde=True), dict(sde_sample_freq=4), dict(use_sde_at_warmup=True)])
def test_gsde_refused(kwargs):
    with pytest.raises(ValueError, match="QSM does not support gSDE"):
        QSM("MlpPolicy", "Pendulum-v1", **kwargs)


@pytest.mark.parametrize("key", ["log_std_init", "use_expln", "clip_mean", "full_std", "use_sde"])
def test_sac_only_policy_kwargs(key):
    with pytest.raises(ValueError, match=rf"policy_kwargs \['{key}'\] only apply to SAC's Gaussian actor"):
        QSM("MlpPolicy", "Pendulum-v1", policy_kwargs={key: 1})


def test_diffusion_args_in_policy_kwargs_refused():
    with pytest.raises(ValueError, match=r"Pass \['n_diffusion_steps'\] to the QSM constructor"):
        QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(n_diffusion_steps=3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_diffusion_steps=0), "n_diffusion_steps must be an integer >= 1, got 0"),
        (dict(n_diffusion_steps=-3), "n_diffusion_steps must be an integer >= 1, got -3"),
        (dict(beta_schedule="sigmoid"), "Unknown beta_schedule 'sigmoid': expected one of vp, linear, cosine"),
        (dict(score_scale=0.0), "score_scale must be a finite number > 0, got 0.0"),
        (dict(score_scale=-50.0), "score_scale must be a finite number > 0, got -50.0"),
        (dict(score_scale=float("inf")), "score_scale must be a finite number > 0, got inf"),
        (dict(score_scale=float("nan")), "score_scale must be a finite number > 0, got nan"),
        (dict(sampler_temperature=-1.0), "sampler_temperature must be a finite number >= 0, got -1.0"),
        (dict(sampler="ddim"), "sampler must be one of ('posterior', 'reference'), got 'ddim'"),
        (dict(sampler=None), "sampler must be one of ('posterior', 'reference'), got None"),
        (dict(policy_delay=0), "policy_delay must be an integer >= 1, got 0"),
        (dict(target_policy_noise=-0.1), "target_policy_noise must be a finite number >= 0, got -0.1"),
        (dict(target_noise_clip=0.0), "target_noise_clip must be a finite number > 0, got 0.0"),
        (dict(actor_lr_decay_steps=0), "actor_lr_decay_steps must be None or an integer >= 1, got 0"),
        (dict(bc_coef=-1.0), "bc_coef must be a finite number >= 0, got -1.0"),
        (dict(q_spread_floor=-0.1), "q_spread_floor must be a finite number >= 0, got -0.1"),
        (dict(q_spread_floor=float("inf")), "q_spread_floor must be a finite number >= 0, got inf"),
        (dict(sampler_noise_color=2.5), "sampler_noise_color must be a finite number >= 0 and <= 2, got 2.5"),
        (dict(sampler_noise_color="pink"), "sampler_noise_color must be a finite number >= 0 and <= 2, got 'pink'"),
        (dict(sampler_temperature="1"), "sampler_temperature must be a finite number >= 0, got '1'"),
        (dict(target_policy_noise="0.1"), "target_policy_noise must be a finite number >= 0, got '0.1'"),
        (dict(target_policy_noise=None), "target_policy_noise must be a finite number >= 0, got None"),
        (dict(target_noise_clip="0.5"), "target_noise_clip must be a finite number > 0, got '0.5'"),
        (dict(score_scale=True), "score_scale must be a finite number > 0, got True"),
        (dict(deterministic_target="yes"), "deterministic_target must be True or False, got 'yes'"),
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(gamma=float("nan")), "gamma must be a finite number >= 0 and <= 1, got nan"),
        (dict(gamma=1.5), "gamma must be a finite number >= 0 and <= 1, got 1.5"),
        (dict(buffer_size=0), "buffer_size must be an integer >= 1, got 0"),
        (dict(buffer_size=-5), "buffer_size must be an integer >= 1, got -5"),
        (dict(tau=0.0), "tau must be a finite number > 0 and <= 1, got 0.0"),
        (dict(tau=1.5), "tau must be a finite number > 0 and <= 1, got 1.5"),
        (dict(learning_starts=-1), "learning_starts must be an integer >= 0 or 'auto', got -1"),
        (dict(n_steps=0), "n_steps must be an integer >= 1, got 0"),
        (dict(n_steps="3"), "n_steps must be an integer >= 1, got '3'"),
        (dict(batch_size=512, buffer_size=100), "batch_size=512 is larger than buffer_size=100"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        QSM("MlpPolicy", "Pendulum-v1", **kwargs)


def test_bad_time_embedding():
    with pytest.raises(ValueError, match="time_embed_dim must be an even integer >= 2, got 3"):
        QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(time_embed_dim=3))


def test_load_with_mismatched_env(tmp_path, small_kwargs):
    QSM("MlpPolicy", "Pendulum-v1", **small_kwargs).save(tmp_path / "qsm")
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        QSM.load(tmp_path / "qsm", env=gym.make("MountainCarContinuous-v0"))
    env = gym.make("Pendulum-v1")
    env.action_space = spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(ValueError, match="Action spaces do not match"):
        QSM.load(tmp_path / "qsm", env=env)


def test_corrupt_checkpoints(tmp_path, small_kwargs):
    path = tmp_path / "qsm.zip"
    QSM("MlpPolicy", "Pendulum-v1", **small_kwargs).save(path)
    content = path.read_bytes()

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(content[: len(content) // 2])
    # Depending on where the cut falls, the archive is unreadable or its entries are gone: both say "truncated"
    with pytest.raises(ValueError, match=r"Cannot load checkpoint .*truncated.zip: .*truncated"):
        QSM.load(truncated)

    not_zip = tmp_path / "text.zip"
    not_zip.write_text("hello")
    with pytest.raises(ValueError, match=r"Cannot load checkpoint .*text.zip: not a valid zip archive"):
        QSM.load(not_zip)

    # Flip bytes inside the stored weights: the CRC check names the member
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("policy.pth")
    data = bytearray(content)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
    data[start : start + 20] = bytes(20)
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupt.zip: member 'policy.pth' is corrupt"):
        QSM.load(corrupt)

    with pytest.raises(ValueError, match=r"Cannot load checkpoint .*missing.zip: no such file"):
        QSM.load(tmp_path / "missing.zip")

    no_data = tmp_path / "no_data.zip"
    with zipfile.ZipFile(no_data, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="no 'data' entry"):
        QSM.load(no_data)

    bad_json = tmp_path / "bad_json.zip"
    with zipfile.ZipFile(bad_json, "w") as archive:
        archive.writestr("data", "{not json")
    with pytest.raises(ValueError, match="its 'data' entry is not valid JSON"):
        QSM.load(bad_json)


def test_checkpoint_of_other_algorithm(tmp_path):
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=10, policy_kwargs=dict(net_arch=[8])).save(tmp_path / "sac")
    with pytest.raises(
        ValueError, match=r"holds a model whose policy is stable_baselines3.sac.policies.SACPolicy, not a DiffusionActorPolicy"
    ):
        QSM.load(tmp_path / "sac")


def test_non_finite_loss_stops_learning(small_kwargs):
    """A NaN reward must stop learn() with an error naming the update and the loss, and leave the weights finite."""

    class NaNRewardEnv(gym.Wrapper):
        def step(self, action):
            obs, _reward, terminated, truncated, info = self.env.step(action)
            return obs, float("nan"), terminated, truncated, info

    small_kwargs["learning_starts"] = 10
    model = QSM("MlpPolicy", NaNRewardEnv(gym.make("Pendulum-v1")), **small_kwargs)
    with pytest.raises(FloatingPointError, match=r"QSM update 1 \(after 11 environment steps\): critic_loss is nan"):
        model.learn(100)
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


def test_numpy_integers_accepted():
    model = QSM("MlpPolicy", "Pendulum-v1", n_diffusion_steps=np.int64(5), n_score_samples=np.int32(4))
    assert model.n_diffusion_steps == 5 and type(model.n_diffusion_steps) is int
    assert model.n_score_samples == 4 and type(model.n_score_samples) is int


class _FixedActionDimension(gym.ActionWrapper):
    """Pendulum with a second action dimension whose only allowed value is 1 (low == high)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = spaces.Box(np.array([-2.0, 1.0], np.float32), np.array([2.0, 1.0], np.float32))

    def action(self, action: np.ndarray) -> np.ndarray:
        return action[:1]


def test_action_dimension_without_range():
    with pytest.raises(ValueError, match=r"low < high on every dimension, .* dimensions \[1\] have low >= high"):
        QSM("MlpPolicy", _FixedActionDimension(gym.make("Pendulum-v1")))


def test_images_with_mlp_policy():
    env = FakeImageEnv(discrete=False)
    with pytest.raises(ValueError, match=r"are images, which MlpPolicy would flatten .* use 'CnnPolicy'"):
        QSM("MlpPolicy", env, buffer_size=10, batch_size=4)
    # Flattened on purpose
    policy_kwargs = dict(features_extractor_class=FlattenExtractor, net_arch=[8])
    QSM("MlpPolicy", env, buffer_size=10, batch_size=4, policy_kwargs=policy_kwargs)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_predict_refuses_non_finite_observations(small_kwargs, value):
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    observations = np.zeros((3, 3), dtype=np.float32)
    observations[1, 2] = value
    with pytest.raises(ValueError, match=r"predict got NaN or infinite values in the observation \(rows \[1\]\)"):
        model.predict(observations)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(observations[1])
