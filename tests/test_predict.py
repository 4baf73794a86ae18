"""predict(): shapes, action bounds, the deterministic path is RNG-free, the stochastic path is seeded."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_qsm.qsm.policies
from sb3_qsm import QSM
from sb3_qsm.common.critics import q_values
from sb3_qsm.common.utils import repeat_rows
from sb3_qsm.qsm.policies import FIXED_NOISE_SEED


class BoxEnv(gym.Env):
    """A one-step env with an arbitrary action box."""

    def __init__(self, low, high, dtype=np.float32):
        self.observation_space = spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = spaces.Box(np.asarray(low, dtype), np.asarray(high, dtype), dtype=dtype)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype))
        return self.observation_space.sample(), 0.0, True, False, {}


def test_auto_wrap_and_shapes(small_kwargs):
    model = QSM("MlpPolicy", gym.make("Pendulum-v1"), **small_kwargs)
    obs = np.zeros(3, dtype=np.float32)
    action, state = model.predict(obs)
    assert action.shape == (1,) and state is None
    actions, _ = model.predict(np.zeros((7, 3), dtype=np.float32))
    assert actions.shape == (7, 1)
    vec_env = make_vec_env("Pendulum-v1", n_envs=2)
    model = QSM("MlpPolicy", vec_env, **small_kwargs)
    actions, _ = model.predict(vec_env.reset())
    assert actions.shape == (2, 1)
    with pytest.raises(ValueError, match="tuple"):
        model.predict(gym.make("Pendulum-v1").reset())


@pytest.mark.parametrize(
    "low, high, dtype",
    [
        ([-2.0, 0.0, 10.0], [2.0, 1e-3, 10.5], np.float32),
        ([-1e6, -3.3], [1e6, 7.7], np.float32),
        ([0.1, -5.0], [0.2, -4.0], np.float64),
    ],
)
@pytest.mark.parametrize("deterministic", [True, False])
def test_actions_inside_action_space(low, high, dtype, deterministic):
    env = BoxEnv(low, high, dtype)
    model = QSM(
        "MlpPolicy",
        env,
        learning_starts=0,
        batch_size=8,
        n_diffusion_steps=2,
        sampler_temperature=5.0,
        policy_kwargs=dict(net_arch=[8]),
    )
    # Make the denoiser output huge, so that the sampler is pushed hard against the bounds
    with th.no_grad():
        model.actor.denoiser.net[-1].bias.fill_(-1e4)
    observations = np.random.uniform(-1, 1, (256, 3)).astype(np.float32)
    actions, _ = model.predict(observations, deterministic=deterministic)
    assert all(env.action_space.contains(action) for action in actions)
    model.learn(20)  # collecting rollouts steps the env, which asserts every action is inside the space


@pytest.mark.parametrize("best_of_n", [1, 8])
def test_deterministic_predict_is_pure(small_kwargs, best_of_n):
    """Deterministic actions are a function of the observations and draw nothing from the global RNG, the best of n
    included (its chains start from a fixed seed); stochastic ones follow the global seed."""
    small_kwargs["policy_kwargs"]["best_of_n"] = best_of_n
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    model.learn(150)
    obs = np.random.uniform(-1, 1, (5, 3)).astype(np.float32)
    th.manual_seed(123)
    state = th.get_rng_state()
    first, _ = model.predict(obs, deterministic=True)
    assert th.equal(state, th.get_rng_state()), "deterministic predict must not draw random numbers"
    th.manual_seed(999)
    second, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(first, second)
    # Stochastic predict draws from the global RNG: repeated with the same seed, different otherwise
    th.manual_seed(5)
    a, _ = model.predict(obs, deterministic=False)
    th.manual_seed(5)
    b, _ = model.predict(obs, deterministic=False)
    c, _ = model.predict(obs, deterministic=False)
    assert np.array_equal(a, b)
    if best_of_n == 1:  # the best of n fresh samples may be the same action again where the sampler saturates
        assert not np.array_equal(a, c)


def test_deterministic_predict_same_on_cuda(small_kwargs):
    if not th.cuda.is_available():
        pytest.skip("CUDA not available")
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", **small_kwargs)
    obs = np.random.uniform(-1, 1, (5, 3)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    model.policy.to("cuda")
    actions, _ = model.predict(obs, deterministic=True)
    assert np.allclose(expected, actions, atol=1e-5)


def _run(seed: int, small_kwargs) -> tuple[float, float]:
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    model = QSM(
        "MlpPolicy",
        env,
        seed=seed,
        train_freq=4,
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        **small_kwargs,
    )
    model.learn(256)
    env.seed(seed)
    obs = env.reset()
    actions, rewards = [], []
    for _ in range(50):
        action, _ = model.predict(obs, deterministic=False)
        obs, reward, _, _ = env.step(action)
        actions.append(action)
        rewards.append(reward)
    return float(np.sum(actions)), float(np.sum(rewards))


def test_seeded_runs_repeat_exactly(small_kwargs):
    first = _run(0, small_kwargs)
    second = _run(0, {**small_kwargs, "policy_kwargs": dict(small_kwargs["policy_kwargs"])})
    assert first == second
    other = _run(1, {**small_kwargs, "policy_kwargs": dict(small_kwargs["policy_kwargs"])})
    assert other != first


def test_seeded_runs_repeat_in_one_process_with_threads():
    # Two seeded runs one after the other in one process, with two torch threads, end with the same weights to the
    # bit (the batch of 256 through a 256-wide layer is large enough for PyTorch to split work across threads)
    def weights_after_training() -> dict[str, th.Tensor]:
        model = QSM(
            "MlpPolicy", "Pendulum-v1", learning_starts=50, n_diffusion_steps=3, policy_kwargs=dict(net_arch=[256]), seed=3
        )
        model.learn(80)
        return model.policy.state_dict()

    threads = th.get_num_threads()
    th.set_num_threads(2)
    try:
        first, second = weights_after_training(), weights_after_training()
    finally:
        th.set_num_threads(threads)
    assert all(th.equal(first[name], second[name]) for name in first)


def test_predict_2d_identity(small_kwargs):
    env = IdentityEnvBox(low=-2, high=2)
    model = QSM("MlpPolicy", env, **small_kwargs)
    action, _ = model.predict(np.array([0.5], dtype=np.float32), deterministic=True)
    assert env.action_space.contains(action)


def test_features_extracted_once_per_sample(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", n_diffusion_steps=7, policy_kwargs=dict(net_arch=[8]))
    calls = []
    model.actor.features_extractor.register_forward_hook(lambda *args: calls.append(1))
    model.predict(np.zeros((4, 3), dtype=np.float32), deterministic=False)
    assert len(calls) == 1
    model.predict(np.zeros((4, 3), dtype=np.float32), deterministic=True)
    assert len(calls) == 2


@pytest.mark.parametrize("dict_obs", [False, True])
def test_best_of_n_picks_the_sample_the_critics_value_most(small_kwargs, dict_obs):
    """best_of_n > 1: predict returns, in both modes, of the n actions sampled for each observation the one of
    highest min_i Q_i (same draws as sampling them by hand); best_of_n = 1 acts with the sampler alone."""
    if dict_obs:
        env = BoxEnv([-2, 0], [2, 1])
        env.observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (3,)), "b": spaces.Box(-1, 1, (2,))})
        model = QSM("MultiInputPolicy", env, seed=0, **small_kwargs)
    else:
        model = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    # Seeded: an untrained denoiser may saturate the clipped sampler, leaving nothing to choose from
    model.observation_space.seed(0)
    policy = model.policy
    observations = np.stack([model.observation_space.sample() for _ in range(5)]) if not dict_obs else None
    if dict_obs:
        samples = [model.observation_space.sample() for _ in range(5)]
        observations = {key: np.stack([sample[key] for sample in samples]) for key in samples[0]}
    obs_tensor, _ = policy.obs_to_tensor(observations)

    th.manual_seed(1)
    chosen = policy.best_sampled_actions(obs_tensor, 6)
    th.manual_seed(1)
    candidates = policy.actor.sample(repeat_rows(obs_tensor, 6), deterministic=False).view(5, 6, -1)
    values = th.stack([q_values(policy.critic, obs_tensor, candidates[:, i]).min(dim=1).values for i in range(6)], dim=1)
    assert th.equal(chosen, candidates[th.arange(5), values.argmax(dim=1)])
    assert candidates.flatten(0, 1).unique(dim=0).shape[0] > 5  # something to choose from

    policy.best_of_n = 6
    th.manual_seed(1)
    action, _ = model.predict(observations, deterministic=False)
    assert np.allclose(action, model.policy.unscale_action(chosen.detach().numpy()), atol=1e-6)
    # deterministic=True: the same choice, among chains of the fixed noise, which is that of FIXED_NOISE_SEED
    chosen = policy.best_sampled_actions(obs_tensor, 6, noise=policy.fixed_noise(6))
    action, _ = model.predict(observations, deterministic=True)
    assert np.allclose(action, model.policy.unscale_action(chosen.detach().numpy()), atol=1e-6)
    expected_noise = th.randn(
        (6, policy.actor.n_diffusion_steps, policy.actor.action_dim), generator=th.Generator().manual_seed(FIXED_NOISE_SEED)
    )
    assert th.equal(policy.fixed_noise(6), expected_noise)
    # Each observation's action is its own: the same alone as in the batch
    first = {key: value[:1] for key, value in observations.items()} if dict_obs else observations[:1]
    assert np.allclose(model.predict(first, deterministic=True)[0], action[:1], atol=1e-6)
    policy.best_of_n = 1
    th.manual_seed(2)
    stochastic, _ = model.predict(observations, deterministic=False)
    th.manual_seed(2)
    sampled = policy.actor.sample(obs_tensor, deterministic=False).detach().numpy()
    assert np.allclose(stochastic, model.policy.unscale_action(sampled), atol=1e-6)


def test_selection_temperature_draws_the_sampled_actions_by_value(small_kwargs, monkeypatch):
    """selection_temperature tau > 0: predict(deterministic=False) draws each of the n sampled actions with
    probability softmax(z / tau), z their critics' values standardised over the n; two equally valued actions are
    drawn equally often (equally good modes stay), deterministic=True still takes the best, tau = 0 too."""
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    policy = model.policy
    fixed = th.tensor([[-0.9], [-0.3], [0.4], [0.8]])

    def sample(observations, deterministic=False, n_steps=None, noise=None):
        return fixed.repeat(observations.shape[0] // len(fixed), 1)

    monkeypatch.setattr(policy.actor, "sample", sample)
    observation = np.zeros(3, dtype=np.float32)
    obs_tensor, _ = policy.obs_to_tensor(observation)
    with th.no_grad():
        values = q_values(policy.critic, repeat_rows(obs_tensor, len(fixed)), fixed).min(dim=1).values
    # Equal values for the first two candidates: the critic is replaced by one that says so
    values[1] = values[0]
    monkeypatch.setattr(sb3_qsm.qsm.policies, "candidate_q_values", lambda critic, obs, cand: values.view(1, -1, 1))
    policy.best_of_n, policy.selection_temperature = len(fixed), 0.7
    standardised = (values - values.mean()) / values.std()
    expected = th.softmax(standardised / 0.7, dim=0).numpy()

    th.manual_seed(0)
    n_draws = 4000
    actions = np.array([model.predict(observation, deterministic=False)[0] for _ in range(n_draws)]).ravel()
    picked = [np.isclose(actions, policy.unscale_action(fixed.numpy())[i, 0]).mean() for i in range(len(fixed))]
    assert np.allclose(picked, expected, atol=4 * np.sqrt(0.25 / n_draws))
    assert abs(picked[0] - picked[1]) < 4 * np.sqrt(0.5 / n_draws)
    best = policy.unscale_action(fixed[values.argmax()].numpy())
    assert np.allclose(model.predict(observation, deterministic=True)[0], best)
    policy.selection_temperature = 0.0
    assert np.allclose(model.predict(observation, deterministic=False)[0], best)
    # Infinite temperature: the uniform draw among samples, that is a plain sample of the sampler, taken as one
    monkeypatch.undo()
    policy.selection_temperature = math.inf
    th.manual_seed(3)
    stochastic, _ = model.predict(observation, deterministic=False)
    th.manual_seed(3)
    assert np.allclose(stochastic, policy.unscale_action(policy.actor.sample(obs_tensor).detach().numpy()), atol=1e-6)


def test_best_of_n_is_saved_and_checked(small_kwargs, tmp_path):
    small_kwargs["policy_kwargs"].update(best_of_n=8, selection_temperature=0.5)
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    model.save(tmp_path / "model.zip")
    loaded = QSM.load(tmp_path / "model.zip").policy
    assert (loaded.best_of_n, loaded.selection_temperature) == (8, 0.5)
    for value in (0, 2.0, True):
        with pytest.raises(ValueError, match=f"best_of_n must be an integer >= 1.*got {value!r}"):
            QSM("MlpPolicy", "Pendulum-v1", policy_kwargs={"best_of_n": value})
    for value in (-0.1, float("nan"), -math.inf, "0.5"):
        with pytest.raises(ValueError, match=rf"selection_temperature must be a number >= 0 \(0: .*\), got {value!r}"):
            QSM("MlpPolicy", "Pendulum-v1", policy_kwargs={"best_of_n": 8, "selection_temperature": value})


def test_sampler_noise_as_an_input(small_kwargs):
    """actor.sample(noise=...) runs the chain on the given noise (x_T, then one vector per reverse step but the
    last): the same actions as the sampler drawing those values itself, and a function of its inputs."""
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    actor = model.policy.actor
    obs = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (4, 3)), dtype=th.float32)
    n_steps = actor.n_diffusion_steps
    th.manual_seed(3)
    drawn = actor.sample(obs, deterministic=False)
    th.manual_seed(3)
    noise = th.stack([th.randn(4, 1) for _ in range(n_steps)], dim=1)
    assert th.equal(actor.sample(obs, noise=noise), drawn)
    state = th.get_rng_state()
    assert th.equal(actor.sample(obs, noise=noise), drawn)
    assert th.equal(state, th.get_rng_state())
    assert not th.equal(actor.sample(obs, noise=th.zeros_like(noise)), drawn)
