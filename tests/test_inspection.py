"""Policy inspection: the multi-modal demonstration task, sampled actions, denoising chains, mode coverage, figures."""

import gymnasium as gym
import matplotlib
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3

import sb3_qsm.envs
from sb3_qsm import QSM
from sb3_qsm.common.diffusion import DiffusionSchedule
from sb3_qsm.envs.multimodal import MultiModalBandit, default_modes
from sb3_qsm.inspection import denoising_trajectories, mode_coverage, sample_actions

matplotlib.use("Agg")

from sb3_qsm.plotting import plot_action_distribution, plot_denoising


def test_multimodal_bandit_rewards() -> None:
    env = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID)
    bandit = env.unwrapped
    assert isinstance(bandit, MultiModalBandit)
    np.testing.assert_allclose(bandit.modes, [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    np.testing.assert_allclose(bandit.reward(bandit.modes), 1.0)
    # Half-way between two modes: exp(-0.5^2 / (2 * 0.15^2))
    np.testing.assert_allclose(bandit.reward(np.array([[0.0, 0.5]])), np.exp(-0.25 / 0.045))
    obs, _ = env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(np.array([0.5, -0.5], dtype=np.float32))
    assert reward == pytest.approx(1.0) and terminated and not truncated
    assert obs.shape == (1,)
    assert default_modes(3).shape == (8, 3)
    edge = np.array([[0.5 + bandit.half_peak_radius, 0.5]])
    np.testing.assert_allclose(bandit.reward(edge), 0.5)
    with pytest.raises(ValueError, match="width"):
        MultiModalBandit(width=0.0)
    with pytest.raises(ValueError, match="modes"):
        MultiModalBandit(action_dim=2, modes=np.array([[0.0, 2.0]]))


def test_mode_coverage() -> None:
    modes = np.array([[-0.5], [0.5]])
    actions = np.array([[-0.5], [-0.45], [0.5], [0.0], [0.52]])
    coverage = mode_coverage(actions, modes, radius=0.1, min_fraction=0.3)
    np.testing.assert_allclose(coverage["fractions"], [0.4, 0.4])
    assert coverage["n_covered"] == 2
    assert coverage["outside"] == pytest.approx(0.2)
    assert mode_coverage(actions, modes, radius=0.1, min_fraction=0.5)["n_covered"] == 0
    with pytest.raises(ValueError, match="same action dimension"):
        mode_coverage(actions, np.zeros((2, 2)), radius=0.1)


def test_sample_actions_for_qsm_sac_and_td3() -> None:
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    for algo in (QSM, SAC, TD3):
        model = algo("MlpPolicy", env, seed=0, policy_kwargs=dict(net_arch=[16]))
        actions = sample_actions(model, obs, n_samples=300)
        assert actions.shape == (300, 1)
        assert np.all(actions >= env.action_space.low) and np.all(actions <= env.action_space.high)
        spread = actions.std()
        assert spread == 0.0 if algo is TD3 else spread > 0.0  # TD3's policy is deterministic
        assert sample_actions(model, obs, n_samples=50, deterministic=True).std() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="n_samples"):
        sample_actions(model, obs, n_samples=0)


def test_denoising_trajectories() -> None:
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    model = QSM("MlpPolicy", env, seed=0, n_diffusion_steps=4, policy_kwargs=dict(net_arch=[16]))
    chains = denoising_trajectories(model, obs, n_samples=30)
    assert chains.shape == (5, 30, 1)
    # The last step of each chain is an action, within the bounds (Pendulum's are +-2)
    assert np.all(np.abs(chains[-1]) <= 2.0)
    deterministic = denoising_trajectories(model, obs, n_samples=3, deterministic=True)
    # The same chain for each copy of the observation (up to the rounding of the batched layers)
    np.testing.assert_allclose(deterministic[:, 0], deterministic[:, 2], atol=1e-6)
    np.testing.assert_allclose(deterministic[0], 0.0)  # the deterministic chain starts at x_T = 0
    actions = sample_actions(model, obs, n_samples=3, deterministic=True)
    np.testing.assert_allclose(deterministic[-1], actions, atol=1e-6)
    with pytest.raises(TypeError, match="QSM"):
        denoising_trajectories(SAC("MlpPolicy", env), obs)


def test_schedule_trajectory_is_the_chain() -> None:
    schedule = DiffusionSchedule(3, "vp")
    trajectory: list[th.Tensor] = []
    x_T = th.randn(4, 2)
    actions = schedule.sample(lambda x, t: th.zeros_like(x), x_T, deterministic=True, trajectory=trajectory)
    assert len(trajectory) == 4
    assert th.equal(trajectory[0], x_T) and th.equal(trajectory[-1], actions)


@pytest.mark.parametrize("action_dim", [1, 2, 3])
def test_figures(action_dim: int) -> None:
    rng = np.random.default_rng(0)
    actions = np.clip(rng.normal(0.0, 0.4, (500, action_dim)), -1, 1)
    fig = plot_action_distribution(actions, low=-1, high=1, modes=default_modes(action_dim), title="samples")
    assert len(fig.axes) >= (action_dim**2 if action_dim > 2 else 1)
    chains = rng.normal(size=(6, 20, action_dim))
    fig = plot_denoising(chains, title="chains")
    assert len(fig.axes) == (1 if action_dim == 2 else action_dim)
    # A deterministic policy's samples are all equal: the density estimate is skipped, not an error
    plot_action_distribution(np.zeros((50, action_dim)), low=-1, high=1)
    with pytest.raises(ValueError, match="shape"):
        plot_action_distribution(np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        plot_denoising(np.zeros((5, 2)))


def test_default_qsm_keeps_several_modes() -> None:
    """
    The short-budget multi-modal check: QSM with its defaults (posterior target, cosine schedule with 10 steps,
    fan-in init of the action weights), made cheap for the test suite (small networks, a larger learning rate, 16
    candidates, a short warm-up; docs/guide/multimodal.md), must spread 2000 samples over at least two of the four
    peaks with at least 10% each, and earn at least half the peak reward on average. A policy collapsed onto one peak
    covers one mode; samples that miss the peaks earn about 0.14 (uniform) or less.
    """
    env = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID)
    bandit = env.unwrapped
    assert isinstance(bandit, MultiModalBandit)
    model = QSM(
        "MlpPolicy",
        env,
        seed=0,
        learning_rate=1e-3,
        learning_starts=500,
        n_score_samples=16,
        policy_kwargs=dict(net_arch=[64, 64]),
    ).learn(5000)
    assert (model.score_target, model.n_diffusion_steps, model.beta_schedule) == ("posterior", 10, "cosine")
    obs, _ = env.reset(seed=0)
    actions = sample_actions(model, obs, n_samples=2000)
    coverage = mode_coverage(actions, bandit.modes, bandit.half_peak_radius, min_fraction=0.1)
    mean_reward = bandit.reward(actions).mean() / bandit.peak_reward
    assert coverage["n_covered"] >= 2, coverage
    assert mean_reward >= 0.5, (mean_reward, coverage)
