"""
Demonstrations for pretraining: transitions from a Minari dataset (the ecosystem's offline format), from an SB3 replay
buffer, or recorded from an agent's rollouts into a Minari dataset.

Minari is an optional dependency (the ``demonstrations`` extra): it is imported only where a Minari dataset is read or
written.
"""

import dataclasses
import pathlib
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

from sb3_qsm.common.checkpoint import read_pickle_file
from sb3_qsm.common.utils import check_real, is_int_at_least

if TYPE_CHECKING:
    from minari import MinariDataset


@dataclasses.dataclass(frozen=True)
class Demonstrations:
    """
    Transitions ``(s, a, r, s')`` of one or more episodes, with actions in the environment's units (as passed to
    ``env.step``) and observations as the environment returns them (before any ``VecNormalize``).

    :param observations: Observations ``s``, shape ``(n, *observation_shape)``
    :param actions: Actions ``a``, shape ``(n, *action_shape)``
    :param rewards: Rewards ``r``, shape ``(n,)``
    :param next_observations: Next observations ``s'`` (the true last observation at an episode's end)
    :param terminations: Whether ``s'`` is terminal (no bootstrapping from it), shape ``(n,)``
    :param truncations: Whether the episode stopped at ``s'`` without terminating (a time limit, or the end of the
        recording), shape ``(n,)``
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __post_init__(self) -> None:
        size = len(self.observations)
        if size == 0:
            raise ValueError("Demonstrations hold no transition")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, np.ndarray) or len(value) != size:
                raise ValueError(
                    f"Demonstrations.{field.name} must be an array of {size} rows (as many as observations), got "
                    f"{type(value).__name__} of {len(value) if hasattr(value, '__len__') else 'no'} rows"
                )
        if not np.all(np.isfinite(self.actions)) or not np.all(np.isfinite(self.rewards)):
            raise ValueError("Demonstrations hold non-finite actions or rewards")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def episode_ends(self) -> np.ndarray:
        """Whether each transition ends its episode (terminated or truncated)."""
        return np.logical_or(self.terminations, self.truncations)

    @property
    def timeouts(self) -> np.ndarray:
        """Whether each transition ends its episode by truncation alone (SB3's ``TimeLimit.truncated``: bootstrap)."""
        return np.logical_and(self.truncations, np.logical_not(self.terminations))

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """
        :param observation_space: The environment's observation space
        :param action_space: The environment's action space
        :raises ValueError: if the observations or actions have other shapes, or the actions leave the action bounds
        """
        if not isinstance(observation_space, spaces.Box) or not isinstance(action_space, spaces.Box):
            raise ValueError(
                "Pretraining from demonstrations needs Box observation and action spaces, got "
                f"{type(observation_space).__name__} and {type(action_space).__name__}"
            )
        for kind, values, space in (
            ("observations", self.observations, observation_space),
            ("next_observations", self.next_observations, observation_space),
            ("actions", self.actions, action_space),
        ):
            if values.shape[1:] != space.shape:
                raise ValueError(
                    f"The demonstrations' {kind} have shape {values.shape[1:]}, the environment's space {space.shape}"
                )
        tolerance = 1e-5 * (1.0 + np.abs(action_space.high - action_space.low))
        if np.any(self.actions < action_space.low - tolerance) or np.any(self.actions > action_space.high + tolerance):
            raise ValueError(
                f"The demonstrations' actions (from {self.actions.min():.3g} to {self.actions.max():.3g}) leave the "
                f"environment's action bounds [{action_space.low.min():.3g}, {action_space.high.max():.3g}]: are they "
                "in the environment's units (not rescaled to [-1, 1])?"
            )

    @classmethod
    def from_minari(cls, dataset: "MinariDataset | str") -> "Demonstrations":
        """
        :param dataset: A Minari dataset, or the id of a local one (``minari.load_dataset``; nothing is downloaded)
        :return: Its transitions, episode by episode
        """
        import minari

        if isinstance(dataset, str):
            dataset = minari.load_dataset(dataset)
        columns: dict[str, list[np.ndarray]] = {field.name: [] for field in dataclasses.fields(cls)}
        for episode in dataset.iterate_episodes():
            if isinstance(episode.observations, dict):
                raise ValueError(f"Minari dataset {dataset.id} has Dict observations; pretraining reads Box observations")
            observations = np.asarray(episode.observations)
            columns["observations"].append(observations[:-1])
            columns["next_observations"].append(observations[1:])
            columns["actions"].append(np.asarray(episode.actions))
            columns["rewards"].append(np.asarray(episode.rewards, dtype=np.float32))
            columns["terminations"].append(np.asarray(episode.terminations, dtype=bool))
            columns["truncations"].append(np.asarray(episode.truncations, dtype=bool))
        if not columns["observations"]:
            raise ValueError(f"Minari dataset {dataset.id} holds no episode")
        return cls(**{name: np.concatenate(values) for name, values in columns.items()})

    @classmethod
    def from_replay_buffer(cls, replay_buffer: ReplayBuffer | str | pathlib.Path) -> "Demonstrations":
        """
        :param replay_buffer: An SB3 ``ReplayBuffer`` of a Box-action agent, or a file saved by ``save_replay_buffer``
            (or the zoo's ``--save-replay-buffer``), read by the allow-listed unpickler
        :return: Its transitions (the actions, stored in ``[-1, 1]``, mapped back to the environment's units)
        """
        buffer = replay_buffer if isinstance(replay_buffer, ReplayBuffer) else read_pickle_file(replay_buffer, "replay buffer")
        if not isinstance(buffer, ReplayBuffer) or isinstance(buffer, DictReplayBuffer):
            raise ValueError(
                f"{replay_buffer} must hold a Stable-Baselines3 ReplayBuffer (Box observations), got {type(buffer).__name__}"
            )
        if buffer.optimize_memory_usage:
            raise ValueError(f"{replay_buffer} was made with optimize_memory_usage=True, which pretraining does not read")
        if not isinstance(buffer.action_space, spaces.Box):
            raise ValueError(f"{replay_buffer} holds {type(buffer.action_space).__name__} actions; pretraining needs Box")
        size = buffer.buffer_size if buffer.full else buffer.pos
        if size == 0:
            raise ValueError(f"The replay buffer {replay_buffer} is empty")

        def rows(values: np.ndarray) -> np.ndarray:
            # (size, n_envs, ...) -> each env's transitions in a row, so that episodes stay contiguous
            return values[:size].swapaxes(0, 1).reshape(-1, *values.shape[2:])

        low, high = buffer.action_space.low, buffer.action_space.high
        scaled = rows(buffer.actions).reshape(-1, *buffer.action_space.shape)
        dones, timeouts = rows(buffer.dones).astype(bool), rows(buffer.timeouts).astype(bool)
        return cls(
            observations=rows(buffer.observations),
            actions=low + 0.5 * (scaled + 1.0) * (high - low),
            rewards=rows(buffer.rewards),
            next_observations=rows(buffer.next_observations),
            terminations=dones & ~timeouts,
            truncations=dones & timeouts,
        )


def record_demonstrations(
    agent: BaseAlgorithm,
    env: gym.Env | str,
    dataset_id: str,
    n_steps: int,
    noise_std: float = 0.0,
    seed: int = 0,
    **dataset_kwargs: Any,
) -> "MinariDataset":
    """
    Run an agent's deterministic policy (for instance a zoo agent) and record its transitions as a local Minari dataset
    with Minari's ``DataCollector``.

    :param agent: An SB3 agent that acts on the environment's raw observations (no ``VecNormalize``)
    :param env: The environment (a Gymnasium env or its id)
    :param dataset_id: The new dataset's id, ``namespace/name-v<version>`` (stored under ``MINARI_DATASETS_PATH``,
        ``~/.minari/datasets`` by default)
    :param n_steps: Number of environment steps to record (the last episode is cut, and marked truncated)
    :param noise_std: Std of Gaussian noise added to the agent's actions, as a fraction of the half-width of the
        action bounds (so that the data covers states around the agent's trajectories); the action is then clipped
    :param seed: Seed of the recording: of the first reset, of each later reset's seed (recorded with its episode)
        and of the noise, so that the same seed records the same dataset. Minari's collector would otherwise seed
        each later episode from the operating system's entropy
    :param dataset_kwargs: Passed to ``DataCollector.create_dataset`` (``description``, ``author``, ...)
    :return: The dataset
    """
    import minari

    if not is_int_at_least(n_steps, 1):
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    check_real("noise_std", noise_std, 0.0)
    collector = minari.DataCollector(gym.make(env) if isinstance(env, str) else env)
    action_space = collector.action_space
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"Recording needs a Box action space, got {type(action_space).__name__}")
    if agent.action_space != action_space:
        raise ValueError(f"The agent's action space {agent.action_space} differs from the environment's {action_space}")
    rng = np.random.default_rng(seed)
    half_width = 0.5 * (action_space.high - action_space.low)
    observation, _ = collector.reset(seed=seed)
    for _ in range(n_steps):
        action, _ = agent.predict(observation, deterministic=True)
        if noise_std > 0:
            action = action + noise_std * half_width * rng.standard_normal(action.shape)
            action = np.clip(action, action_space.low, action_space.high)
        observation, _, terminated, truncated, _ = collector.step(action.astype(action_space.dtype))
        if terminated or truncated:
            observation, _ = collector.reset(seed=int(rng.integers(2**31)))
    dataset_kwargs.setdefault("algorithm_name", type(agent).__name__)
    try:
        return collector.create_dataset(dataset_id=dataset_id, **dataset_kwargs)
    finally:
        collector.close()
