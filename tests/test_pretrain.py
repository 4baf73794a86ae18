"""Pretraining from demonstrations: Minari datasets recorded from a shipped zoo agent, replay buffers, the fits, errors."""

import dataclasses
import json
import pathlib
import re

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_qsm import QSM, Demonstrations, pretrain_qsm
from sb3_qsm.common.critics import q_values
from sb3_qsm.convert import fill_replay_buffer, fit_critics, load_sb3_agent, pretrain, record_demonstrations
from sb3_qsm.convert.pretrain import demonstrations_buffer

pytest.importorskip("minari")

ROOT = pathlib.Path(__file__).resolve().parents[1]
ZOO_AGENT = ROOT / "rl-trained-agents" / "sac" / "Pendulum-v1_1" / "Pendulum-v1.zip"
SMALL_POLICY = dict(net_arch=[32, 32], time_embed_dim=8, time_net_arch=[8])


@pytest.fixture
def datasets_path(tmp_path, monkeypatch) -> pathlib.Path:
    """Minari's datasets in a temporary folder: nothing is read from or written to the user's ~/.minari."""
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture(scope="module")
def zoo_agent() -> SAC:
    return load_sb3_agent(ZOO_AGENT, make_vec_env("Pendulum-v1", n_envs=1), device="cpu")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_recorded_minari_dataset_holds_the_agents_transitions(datasets_path, zoo_agent):
    dataset = record_demonstrations(zoo_agent, "Pendulum-v1", "test/pendulum-zoo-v0", 450, seed=3)
    assert (datasets_path / "test" / "pendulum-zoo-v0").is_dir()
    demonstrations = Demonstrations.from_minari("test/pendulum-zoo-v0")
    assert len(demonstrations) == dataset.total_steps == 450
    # Pendulum's 200-step time limit, then the recording's cut: truncations, never terminations
    assert np.flatnonzero(demonstrations.truncations).tolist() == [199, 399, 449]
    assert not demonstrations.terminations.any()
    # Within an episode, each next observation is the following observation; the actions are the agent's own
    inside = ~demonstrations.episode_ends[:-1]
    np.testing.assert_array_equal(demonstrations.next_observations[:-1][inside], demonstrations.observations[1:][inside])
    expected, _ = zoo_agent.predict(demonstrations.observations, deterministic=True)
    np.testing.assert_allclose(demonstrations.actions, expected, atol=1e-5)
    env = gym.make("Pendulum-v1")
    first, _ = env.reset(seed=3)
    np.testing.assert_array_equal(demonstrations.observations[0], first)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_seeded_recording_repeats_across_episodes(datasets_path, zoo_agent):
    # Three episodes: the resets after the first take their seeds from the recording's seed too
    for name in ("first", "second"):
        record_demonstrations(zoo_agent, "Pendulum-v1", f"test/pendulum-{name}-v0", 450, noise_std=0.1, seed=5)
    first, second = (Demonstrations.from_minari(f"test/pendulum-{name}-v0") for name in ("first", "second"))
    np.testing.assert_array_equal(first.observations, second.observations)
    np.testing.assert_array_equal(first.actions, second.actions)
    # Each episode starts from its own state
    starts = first.observations[[0, 200, 400]]
    assert len(np.unique(starts, axis=0)) == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_recording_noise_stays_within_the_action_bounds(datasets_path, zoo_agent):
    record_demonstrations(zoo_agent, "Pendulum-v1", "test/pendulum-noisy-v0", 200, noise_std=2.0)
    demonstrations = Demonstrations.from_minari("test/pendulum-noisy-v0")
    expected, _ = zoo_agent.predict(demonstrations.observations, deterministic=True)
    assert np.abs(demonstrations.actions - expected).mean() > 0.5
    assert demonstrations.actions.min() >= -2.0 and demonstrations.actions.max() <= 2.0


def test_replay_buffer_demonstrations_are_in_the_environments_units(tmp_path):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    sac = SAC("MlpPolicy", env, learning_starts=1000, buffer_size=1000, device="cpu", seed=0)
    sac.learn(300)
    path = tmp_path / "buffer.pkl"
    sac.save_replay_buffer(path)
    for source in (sac.replay_buffer, path):
        demonstrations = Demonstrations.from_replay_buffer(source)
        assert len(demonstrations) == 300
        # Stored in [-1, 1] by SB3; Pendulum's torque bound is 2
        np.testing.assert_allclose(demonstrations.actions / 2.0, sac.replay_buffer.actions[:150].swapaxes(0, 1).reshape(-1, 1))
        # Each environment's transitions stay contiguous: env 0's first 150, then env 1's
        np.testing.assert_array_equal(demonstrations.observations[150], sac.replay_buffer.observations[0, 1])
        # 150 steps per environment, inside Pendulum's 200-step episodes
        assert not demonstrations.episode_ends.any()


def _constant_reward_demonstrations(n: int, reward: float) -> Demonstrations:
    rng = np.random.default_rng(0)
    observations = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    return Demonstrations(
        observations=observations,
        actions=rng.uniform(-2, 2, size=(n, 1)).astype(np.float32),
        rewards=np.full(n, reward, dtype=np.float32),
        next_observations=np.roll(observations, -1, axis=0),
        terminations=np.ones(n, dtype=bool),
        truncations=np.zeros(n, dtype=bool),
    )


def test_fit_critics_learns_the_value_of_terminal_transitions():
    # Every transition terminates: the TD target is the reward itself, so the critics must reach it
    model = QSM(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=SMALL_POLICY, n_diffusion_steps=3, learning_rate=1e-3, device="cpu", seed=0
    )
    demonstrations = _constant_reward_demonstrations(512, reward=2.5)
    fit_critics(model, demonstrations_buffer(model, demonstrations), gradient_steps=1000, batch_size=64)
    with th.no_grad():
        q = q_values(model.critic, th.as_tensor(demonstrations.observations), th.as_tensor(demonstrations.actions / 2.0))
    assert (q - 2.5).abs().mean() < 0.1, q


def test_conservative_penalty_lowers_the_critics_away_from_the_data():
    # The demonstrator always applies a torque of 1 (0.5 in [-1, 1] units): TD fits the values at that action only
    demonstrations = _constant_reward_demonstrations(512, reward=2.5)
    demonstrations = Demonstrations(**{**vars(demonstrations), "actions": np.ones_like(demonstrations.actions)})
    observations = th.as_tensor(demonstrations.observations)
    gaps = {}
    for weight in (0.0, 1.0):
        model = QSM(
            "MlpPolicy",
            "Pendulum-v1",
            policy_kwargs=SMALL_POLICY,
            n_diffusion_steps=3,
            learning_rate=1e-3,
            device="cpu",
            seed=0,
        )
        fit_critics(model, demonstrations_buffer(model, demonstrations), 1000, 64, conservative_weight=weight)
        with th.no_grad():
            at_data = q_values(model.critic, observations, th.full((512, 1), 0.5)).mean()
            away = q_values(model.critic, observations, th.full((512, 1), -0.9)).mean()
        gaps[weight] = (at_data - away).item()
    # Without the penalty nothing ties the values away from the data; with it they fall well below
    assert gaps[1.0] > 1.0 and gaps[1.0] > gaps[0.0] + 1.0, gaps


def test_fill_replay_buffer_gives_each_environment_a_contiguous_share():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = QSM("MlpPolicy", env, policy_kwargs=SMALL_POLICY, n_diffusion_steps=3, buffer_size=1000, device="cpu")
    demonstrations = _constant_reward_demonstrations(101, reward=1.0)
    fill_replay_buffer(model, demonstrations)
    buffer = model.replay_buffer
    assert buffer.size() == 50  # per environment; the 101st transition is left out
    np.testing.assert_array_equal(buffer.observations[:50, 0], demonstrations.observations[:50])
    np.testing.assert_array_equal(buffer.observations[:50, 1], demonstrations.observations[50:100])
    np.testing.assert_allclose(buffer.actions[:50, 1], demonstrations.actions[50:100] / 2.0, rtol=1e-6, atol=1e-6)
    assert buffer.dones[:50].all() and not buffer.timeouts[:50].any()


def test_truncations_alone_are_timeouts_in_both_buffers():
    demonstrations = dataclasses.replace(
        _constant_reward_demonstrations(4, reward=1.0),
        terminations=np.array([True, False, False, True]),
        truncations=np.array([False, True, False, True]),
    )
    # A time limit alone bootstraps (SB3's TimeLimit.truncated); an episode that also terminated does not
    np.testing.assert_array_equal(demonstrations.timeouts, [False, True, False, False])
    model = QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=SMALL_POLICY, n_diffusion_steps=3, buffer_size=1000, device="cpu")
    fill_replay_buffer(model, demonstrations)
    for buffer in (model.replay_buffer, demonstrations_buffer(model, demonstrations)):
        np.testing.assert_array_equal(buffer.dones[:4, 0], [1, 1, 0, 1])
        np.testing.assert_array_equal(buffer.timeouts[:4, 0], [0, 1, 0, 0])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pretrained_agent_imitates_the_demonstrator_then_learns(datasets_path, zoo_agent):
    record_demonstrations(zoo_agent, "Pendulum-v1", "test/pendulum-zoo-v0", 600, noise_std=0.1)
    demonstrations = Demonstrations.from_minari("test/pendulum-zoo-v0")
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    model = pretrain_qsm(
        demonstrations, env, actor_steps=3000, critic_steps=300, batch_size=128, device="cpu", seed=0,
        policy_kwargs=dict(net_arch=[64, 64]),
    )  # fmt: skip
    observations = demonstrations.observations
    expected, _ = zoo_agent.predict(observations, deterministic=True)
    # An untrained policy with the same diffusion chain and sampler
    chain = dict(n_diffusion_steps=model.n_diffusion_steps, beta_schedule=model.beta_schedule, sampler=model.sampler)
    fresh = QSM("MlpPolicy", env, policy_kwargs=dict(net_arch=[64, 64]), device="cpu", seed=0, **chain)
    error = np.abs(model.predict(observations, deterministic=True)[0] - expected).mean()
    assert error < 0.3 * np.abs(fresh.predict(observations, deterministic=True)[0] - expected).mean()
    # Fine-tuning starts from the demonstrations, with the settings measured for a policy that imitates another
    assert model.replay_buffer.size() == 600 and model.learning_starts == 0
    assert model.score_target == "gradient" and model.bc_coef == 3.0 and model.score_scale > 0
    model.learn(100)


def test_pretrain_leaves_out_what_is_switched_off():
    model = QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=SMALL_POLICY, n_diffusion_steps=3, device="cpu", seed=0)
    before = {key: value.clone() for key, value in model.policy.state_dict().items()}
    losses = pretrain(
        model, _constant_reward_demonstrations(64, 1.0), actor_steps=0, critic_steps=0, add_to_replay_buffer=False
    )
    assert losses == {} and model.replay_buffer.size() == 0
    assert all(th.equal(value, before[key]) for key, value in model.policy.state_dict().items())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(actor_steps=-1), "actor_steps must be an integer >= 0, got -1"),
        (dict(critic_steps=1.5), "critic_steps must be an integer >= 0, got 1.5"),
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(learning_rate=0.0), "learning_rate must be a finite number > 0, got 0.0"),
        (dict(add_to_replay_buffer="yes"), "add_to_replay_buffer must be True or False, got 'yes'"),
        (dict(conservative_weight=-1.0), "conservative_weight must be a finite number >= 0, got -1.0"),
        (dict(critic_steps=0), "score_scale='auto' fits the scale to the fitted critics"),
        (dict(score_target="posterior"), "score_scale='auto' fits the scale of the gradient score target"),
    ],
)
def test_pretrain_qsm_refuses_bad_arguments_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pretrain_qsm(_constant_reward_demonstrations(8, 1.0), "Pendulum-v1", device="cpu", **kwargs)


def test_demonstrations_that_do_not_fit_the_environment_are_refused():
    demonstrations = _constant_reward_demonstrations(8, 1.0)
    with pytest.raises(ValueError, match=re.escape("observations have shape (3,), the environment's space (2,)")):
        pretrain_qsm(demonstrations, "MountainCarContinuous-v0", device="cpu")
    scaled_twice = Demonstrations(**{**vars(demonstrations), "actions": demonstrations.actions * 3})
    with pytest.raises(ValueError, match="leave the environment's action bounds"):
        pretrain_qsm(scaled_twice, "Pendulum-v1", device="cpu")
    with pytest.raises(ValueError, match=re.escape("Demonstrations.rewards must be an array of 8 rows")):
        Demonstrations(**{**vars(demonstrations), "rewards": demonstrations.rewards[:5]})
    with pytest.raises(ValueError, match="hold no transition"):
        Demonstrations(*(np.zeros((0, 1)) for _ in range(6)))


def test_replay_buffers_pretraining_cannot_read_are_refused(tmp_path):
    sac = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, device="cpu")
    with pytest.raises(ValueError, match="is empty"):
        Demonstrations.from_replay_buffer(sac.replay_buffer)
    path = tmp_path / "not_a_buffer.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=str(path.name)):
        Demonstrations.from_replay_buffer(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pretraining_guide_runs_as_written(datasets_path, tmp_path, monkeypatch):
    """The pretraining guide's Python blocks, run in order in one namespace, with shorter fits."""
    guide = ROOT / "docs" / "guide" / "pretrain.md"
    blocks = re.findall(r"^```python\n(.*?)^```", guide.read_text(), flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        # The guide's budgets, shortened for the test, and its paths relative to the repository; the rest as written
        block = re.sub(r"_steps=\d[\d_]*", "_steps=200", block).replace("learn(20_000)", "learn(100)")
        block = block.replace('"rl-trained-agents/', f'"{ROOT}/rl-trained-agents/')
        exec(compile(block, str(guide), "exec"), namespace)
    assert len(namespace["demonstrations"]) == 200
    assert (tmp_path / "qsm_pendulum_pretrained.zip").is_file()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pretrain_benchmark_writes_every_stage(datasets_path, tmp_path):
    # (datasets_path: the command sets MINARI_DATASETS_PATH itself; the fixture restores it afterwards)
    from sb3_qsm.benchmarks import pretrain as benchmark

    out = tmp_path / "pretrain"
    args = ["--source", str(ZOO_AGENT), "--env", "Pendulum-v1", "--demo-steps", "300", "--actor-steps", "50"]
    args += ["--critic-steps", "50", "--finetune-steps", "100", "--eval-episodes", "1", "--out", str(out)]
    assert benchmark.main(args) == 0
    record = json.loads((out / "Pendulum-v1.json").read_text())
    for stage in ("source", "pretrained", "finetuned"):
        assert len(record[stage]["returns"]) == 1, stage
    assert record["demonstrations"] == {**record["demonstrations"], "transitions": 300, "episodes": 2}
    assert (out / "Pendulum-v1_pretrained.zip").is_file() and (out / "Pendulum-v1_finetuned.zip").is_file()
