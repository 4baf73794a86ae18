"""QSM runs with every SB3 training option a user may set."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise, OrnsteinUhlenbeckActionNoise

from sb3_qsm import QSM


def test_run_default_pendulum(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    model.learn(200)
    assert model.num_timesteps == 200
    assert model.logger.name_to_value["train/n_updates"] == 100


def test_auto_learning_starts_is_ten_episodes_of_the_time_limit(small_kwargs):
    """learning_starts="auto" (the default): ten episodes of the environment's time limit, counted over all the
    environments of a VecEnv, or SB3's 100 steps without a limit; an integer is kept as given. Learning starts there."""
    del small_kwargs["learning_starts"]
    assert QSM("MlpPolicy", "Pendulum-v1", **small_kwargs).learning_starts == 2000
    assert QSM("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2), **small_kwargs).learning_starts == 2000
    import sb3_qsm.envs

    assert QSM("MlpPolicy", sb3_qsm.envs.MULTIMODAL_ENV_ID, **small_kwargs).learning_starts == 100
    explicit = QSM("MlpPolicy", "Pendulum-v1", learning_starts=np.int64(7), **small_kwargs)
    assert explicit.learning_starts == 7 and type(explicit.learning_starts) is int
    model = QSM("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=5), seed=0, **small_kwargs)
    assert model.learning_starts == 50
    model.learn(50)
    assert model._n_updates == 0
    model.learn(10, reset_num_timesteps=False)
    assert model._n_updates == 10


@pytest.mark.parametrize("n_critics", [1, 3])
def test_n_critics(small_kwargs, n_critics):
    small_kwargs["policy_kwargs"]["n_critics"] = n_critics
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    model.learn(150)
    assert len(model.critic.q_networks) == n_critics


def test_n_steps_returns(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", n_steps=3, **small_kwargs)
    model.learn(150)
    assert type(model.replay_buffer).__name__ == "NStepReplayBuffer"


@pytest.mark.parametrize("train_freq, every", [(4, 4), ((4, "step"), 4), ((1, "episode"), 200)])
def test_train_freq(small_kwargs, train_freq, every):
    """QSM trains once per rollout of ``train_freq``: every 4 steps, or at the end of each 200-step Pendulum episode."""
    model = QSM("MlpPolicy", "Pendulum-v1", train_freq=train_freq, **small_kwargs)
    trained_at = []
    train = model.train

    def recording_train(gradient_steps: int, batch_size: int) -> None:
        trained_at.append(model.num_timesteps)
        train(gradient_steps, batch_size)

    model.train = recording_train  # type: ignore[method-assign]
    model.learn(450)
    assert len(trained_at) >= 2
    assert all(step % every == 0 and step > small_kwargs["learning_starts"] for step in trained_at)
    assert np.all(np.diff(trained_at) == every)
    assert model.logger.name_to_value["train/n_updates"] == len(trained_at)


@pytest.mark.parametrize("train_freq", ["4", ("1", "episode"), "non_sense", (1, "close")])
def test_train_freq_fail(small_kwargs, train_freq):
    with pytest.raises(ValueError):
        QSM("MlpPolicy", "Pendulum-v1", train_freq=train_freq, **small_kwargs).learn(150)


class OffsetNoise(ActionNoise):
    """Action noise that adds a fixed offset, counting its draws and resets."""

    def __init__(self, offset: float):
        super().__init__()
        self.offset, self.calls, self.resets = offset, 0, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return np.full(1, self.offset)

    def reset(self) -> None:
        self.resets += 1


def test_action_noise_is_added_to_every_collected_action(small_kwargs):
    noise = OffsetNoise(3.0)
    model = QSM("MlpPolicy", "Pendulum-v1", action_noise=noise, **small_kwargs)
    model.learn(450)
    # Added to the random warm-up actions and to the diffusion samples alike, then clipped to the box
    stored = model.replay_buffer.actions[: model.replay_buffer.size()]
    assert stored.shape[0] == 450 and np.all(stored == 1.0)
    assert noise.calls == 450
    assert noise.resets == 1 + 2  # when learning starts, then at the end of each 200-step episode


@pytest.mark.parametrize("noise_class", [NormalActionNoise, OrnsteinUhlenbeckActionNoise])
def test_sb3_action_noise_spreads_the_collected_actions(small_kwargs, noise_class):
    """With a noise far wider than the box, nearly every stored action is clipped to a bound; without it, none of the
    100 random warm-up actions is."""
    quiet = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    noisy = QSM("MlpPolicy", "Pendulum-v1", seed=0, action_noise=noise_class(np.zeros(1), 100 * np.ones(1)), **small_kwargs)
    for model in (quiet, noisy):
        model.learn(300)
    at_bounds = [np.mean(np.abs(model.replay_buffer.actions[:300]) == 1.0) for model in (quiet, noisy)]
    assert at_bounds[0] < 0.7 and at_bounds[1] > 0.95, at_bounds


@pytest.mark.parametrize("color", [0.0, 1.0])
def test_sampler_noise_color_correlates_the_collected_actions_only(small_kwargs, color):
    """sampler_noise_color > 0: past learning_starts, every action collected in each of the envs is the sampler run on
    the next step of a colored noise series (shape (n_envs, T, action_dim)), which for pink noise is correlated from
    step to step and has unit variance; 0 leaves the sampler drawing white noise. predict outside of learn, and the
    training step's samples, always draw their own."""
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = QSM("MlpPolicy", env, seed=0, sampler_noise_color=color, **small_kwargs)
    actor = model.policy.actor
    calls = []
    sample = actor.sample

    def recording(obs, deterministic=False, trajectory=None, n_steps=None, noise=None):
        calls.append((obs.shape[0], noise))
        return sample(obs, deterministic, trajectory, n_steps, noise)

    actor.sample = recording
    model.learn(600)
    rollout = [noise for batch, noise in calls if batch == 2]
    assert len(rollout) == (600 - 100) // 2
    assert all(noise is None for batch, noise in calls if batch != 2)
    if color == 0:
        assert all(noise is None for noise in rollout)
    else:
        series = th.stack(rollout).numpy()  # (steps, n_envs, T, action_dim)
        assert series.shape == (250, 2, actor.n_diffusion_steps, 1)
        assert 0.5 < series.std() < 1.5
        lag_one = np.mean([np.corrcoef(s[:-1], s[1:])[0, 1] for s in series.reshape(250, -1).T])
        assert lag_one > 0.5, lag_one
    calls.clear()
    model.predict(np.zeros((2, 3), dtype=np.float32), deterministic=False)
    assert calls == [(2, None)]
    # A color set after the series was made takes effect at the next step
    model.sampler_noise_color = 2.0 - color
    model._next_sampler_noise(2)
    assert model._colored_noise.beta == 2.0 - color


def test_multi_env(small_kwargs):
    """Two envs with a TimeLimit, as SB3's ``test_offpolicy_multi_env``."""
    env = make_vec_env(
        "Pendulum-v1", n_envs=2, seed=0, wrapper_class=gym.wrappers.TimeLimit, wrapper_kwargs=dict(max_episode_steps=50)
    )
    noise = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
    model = QSM("MlpPolicy", env, train_freq=5, action_noise=noise, **small_kwargs)
    model.learn(200)
    assert model.num_timesteps == 200
    assert model.logger.name_to_value["train/n_updates"] > 0


def test_gradient_steps_minus_one_counts_updates(small_kwargs):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    small_kwargs["learning_starts"] = 0
    model = QSM("MlpPolicy", env, train_freq=4, gradient_steps=-1, **small_kwargs)
    model.learn(8)
    # one rollout of 4 steps in 2 envs: 8 gradient steps
    assert model.logger.name_to_value["train/n_updates"] == 8


def test_gradient_steps_zero_does_not_train(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", gradient_steps=0, **small_kwargs)
    before = [p.clone() for p in model.policy.parameters()]
    model.learn(150)
    assert all(th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))


@pytest.mark.parametrize("share", [False, True])
def test_share_features_extractor(small_kwargs, share):
    small_kwargs["policy_kwargs"]["share_features_extractor"] = share
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    assert (model.critic.features_extractor is model.actor.features_extractor) == share
    assert model.critic_target.features_extractor is not model.actor.features_extractor
    model.learn(150)


def test_net_arch_dict_and_activation(small_kwargs):
    small_kwargs["policy_kwargs"].update(net_arch=dict(pi=[8, 8], qf=[16]), activation_fn=th.nn.Tanh)
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    linear_sizes = [m.out_features for m in model.actor.denoiser.net if isinstance(m, th.nn.Linear)]
    assert linear_sizes == [8, 8, 1]
    # TQC's critics (the default): 25 quantiles per network
    assert [m.out_features for m in model.critic.qf0 if isinstance(m, th.nn.Linear)] == [16, 25]
    assert any(isinstance(m, th.nn.Tanh) for m in model.critic.qf0)
    model.learn(150)


def test_optimizer_kwargs(small_kwargs):
    small_kwargs["policy_kwargs"].update(optimizer_class=th.optim.AdamW, optimizer_kwargs=dict(weight_decay=0.01))
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    assert isinstance(model.actor.optimizer, th.optim.AdamW)
    assert isinstance(model.critic.optimizer, th.optim.AdamW)
    model.learn(150)


@pytest.mark.parametrize("schedule", ["vp", "linear", "cosine"])
def test_beta_schedules(small_kwargs, schedule):
    model = QSM("MlpPolicy", "Pendulum-v1", beta_schedule=schedule, **small_kwargs)
    assert model.actor.schedule.beta_schedule == schedule
    model.learn(150)


def test_policy_delay(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", policy_delay=3, **small_kwargs)
    actor_before = [p.clone() for p in model.actor.parameters()]
    model.learn(102)  # 2 updates: the actor is not updated yet
    assert all(th.equal(a, b) for a, b in zip(actor_before, model.actor.parameters(), strict=True))
    assert "train/actor_loss" not in model.logger.name_to_value
    model.learn(2, reset_num_timesteps=False)  # third update
    assert any(not th.equal(a, b) for a, b in zip(actor_before, model.actor.parameters(), strict=True))


@pytest.mark.parametrize("noise, clip, largest", [(10.0, 0.25, 0.25), (10.0, None, 1.0), (0.0, 0.25, 0.0)])
def test_target_policy_noise_and_its_clip(small_kwargs, noise, clip, largest):
    """The critic target's next action is the policy's sample plus Gaussian noise of std target_policy_noise, the noise
    clipped to +-target_noise_clip, the sum clipped to the box."""
    model = QSM("MlpPolicy", "Pendulum-v1", target_policy_noise=noise, target_noise_clip=clip, **small_kwargs)
    model.actor.sample = lambda obs, **kwargs: th.zeros(len(obs), 1)  # type: ignore[method-assign]
    th.manual_seed(0)
    samples, actions = model._target_actions(th.zeros(4096, 3))
    assert th.equal(samples, th.zeros(4096, 1))
    assert float(actions.abs().max()) == pytest.approx(largest)
    if noise > 0:
        # std 10: almost every draw reaches the clip (or the box), in both directions
        assert float((actions.abs() == largest).float().mean()) > 0.9
        assert float(actions.min()) == pytest.approx(-largest)


@pytest.mark.parametrize("deterministic_target", [False, True])
def test_deterministic_target_values_the_noise_free_chain(small_kwargs, deterministic_target):
    """deterministic_target: the critic target's next action is the sampler's noise-free chain, with the whole chain
    the action of predict(deterministic=True); otherwise a fresh sample."""
    kwargs = dict(target_policy_noise=0.0, deterministic_target=deterministic_target, target_diffusion_steps=None)
    model = QSM("MlpPolicy", "Pendulum-v1", **kwargs, **small_kwargs)
    observations = th.randn(64, 3)
    chain = model.actor.sample(observations, deterministic=True)
    samples, actions = model._target_actions(observations)
    assert th.equal(samples, actions)  # no target noise
    assert th.equal(actions, chain) == deterministic_target
    assert th.equal(actions, model._target_actions(observations)[1]) == deterministic_target


def test_actor_lr_cosine_decay(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, actor_lr_decay_steps=100, policy_delay=1, **small_kwargs)
    model.learn(151)  # 51 updates: the last one at actor update index 50 of 100 -> half the rate
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.logger.name_to_value["train/actor_learning_rate"] == pytest.approx(0.5e-3)
    model.learn(100, reset_num_timesteps=False)  # past the end of the decay: zero
    assert model.actor.optimizer.param_groups[0]["lr"] == 0.0


def test_paper_preset():
    model = QSM.from_paper_config("Pendulum-v1", learning_starts=50, buffer_size=1000)
    assert model.score_scale == 50.0 and model.n_diffusion_steps == 5 and model.beta_schedule == "vp"
    assert model.score_target == "gradient" and model.actor.action_fan_in_init is False
    assert model.learning_starts == 50  # overrides win
    assert model.actor_lr_decay_steps == 2_000_000
    assert [m.out_features for m in model.critic.qf0 if isinstance(m, th.nn.Linear)] == [512, 512, 1]
    assert [m.out_features for m in model.actor.denoiser.net if isinstance(m, th.nn.Linear)] == [512, 512, 1]
    assert any(isinstance(m, th.nn.Mish) for m in model.actor.denoiser.net)
    assert any(isinstance(m, th.nn.ReLU) for m in model.critic.qf0)
    assert isinstance(model.action_noise, NormalActionNoise)
    assert np.allclose(model.action_noise._sigma, 0.1)
    # Xavier-uniform with zero biases in the critics, as the reference
    assert all(th.all(m.bias == 0) for m in model.critic.qf0 if isinstance(m, th.nn.Linear))
    assert model.target_policy_noise == 0.1 and model.target_noise_clip is None
    model.learn(60)


@pytest.mark.parametrize("score_target, target_key", [("posterior", "train/q_spread"), ("gradient", "train/q_grad_norm")])
def test_logger_keys(small_kwargs, tmp_path, score_target, target_key):
    model = QSM("MlpPolicy", "Pendulum-v1", score_target=score_target, tensorboard_log=str(tmp_path), **small_kwargs)
    model.learn(150)
    values = model.logger.name_to_value
    for key in ("train/actor_loss", "train/critic_loss", "train/n_updates", target_key, "train/learning_rate"):
        assert key in values, key
        assert np.isfinite(values[key])
    assert values[target_key] > 0
    # Tensorboard event file written in a "QSM_1" folder
    assert list(tmp_path.glob("QSM_1/events.out.tfevents.*"))


@pytest.mark.slow
def test_learns_pendulum():
    """QSM with default settings improves a lot over a random policy within 5k steps (about a minute)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    model = QSM("MlpPolicy", "Pendulum-v1", seed=0)
    model.learn(5_000)
    mean_reward, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=5, deterministic=True)
    # a random policy scores about -1200
    assert mean_reward > -900
