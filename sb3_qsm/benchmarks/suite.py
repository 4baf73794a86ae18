"""
The suites the benchmark runs: their tasks (environments, budgets, evaluations), seeds and the QSM defaults each was
run with; and how the suites build their environments. The algorithms are in ``sb3_qsm.benchmarks.algorithms``,
how a row's model is built and its settings recorded in ``sb3_qsm.benchmarks.settings``.
"""

import dataclasses
from typing import Any

import gymnasium as gym

from sb3_qsm.benchmarks.algorithms import CHEAPER_CANDIDATES, CHEAPER_TARGET_STEPS, DMC_VARIANTS, SCREEN_VARIANTS
from sb3_qsm.qsm.presets import (
    CRITICS_0_1,
    CRITICS_0_1_POLICY_KWARGS,
    EXPLORATION_0_1,
    FULL_TARGET_CHAIN,
    REFERENCE_SAMPLER,
)

# DeepMind Control tasks, through Shimmy's Gymnasium wrappers (the ``dmc`` extra): their ids start with this
DM_CONTROL_PREFIX = "dm_control/"


def make_env(env_id: str) -> gym.Env:
    """
    :param env_id: Gymnasium environment id
    :return: The environment as the suites run it: as ``gym.make`` builds it, with a DeepMind Control task's
        ``Dict`` of observations flattened into one vector (as the RL Zoo's entries for them do)
    """
    if env_id.startswith(DM_CONTROL_PREFIX):
        import shimmy  # noqa: F401  (registers the dm_control/ ids)

        return gym.wrappers.FlattenObservation(gym.make(env_id))
    return gym.make(env_id)


@dataclasses.dataclass(frozen=True)
class Task:
    """
    One environment of a suite.

    :param env_id: Gymnasium environment id
    :param budget: Environment steps of training
    :param algorithms: Algorithms run on it
    :param n_evaluations: Number of evaluations during training, evenly spaced (plus one before training)
    :param seeds: Seeds of this task, if not the suite's
    :param success_return: If set, an episode whose return exceeds it reached the task's goal (the report then
        counts the seeds that reached it)
    """

    env_id: str
    budget: int
    algorithms: tuple[str, ...]
    n_evaluations: int = 10
    seeds: tuple[int, ...] | None = None
    success_return: float | None = None

    @property
    def eval_freq(self) -> int:
        return self.budget // self.n_evaluations


@dataclasses.dataclass(frozen=True)
class Suite:
    """
    Tasks, seeds and evaluation sizes of a benchmark.

    :param name: Name, also the folder of its raw results
    :param tasks: The tasks
    :param seeds: Seeds every (task, algorithm) pair runs with, unless the task names its own
    :param eval_episodes: Deterministic episodes of each evaluation during training
    :param final_episodes: Episodes of the final evaluation (deterministic, and stochastic where the policy samples)
    :param max_learning_starts: If set, caps every algorithm's ``learning_starts`` (tiny smoke-test budgets only)
    :param qsm_defaults: QSM arguments that every QSM row of the suite takes unless the row sets them (its
        ``policy_kwargs`` entry by entry): the defaults the suite was run with, where QSM's have changed since (its
        committed results stay what they were)
    :param reuses: Earlier suites whose result of the same run (task, budget, evaluations and seed) this suite takes
        over where it was run with the settings this suite's row has today (``settings_match``), rather than running
        it again (``sb3_qsm.benchmarks.reuse``)
    """

    name: str
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]
    eval_episodes: int = 5
    final_episodes: int = 10
    max_learning_starts: int | None = None
    qsm_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    reuses: tuple[str, ...] = ()

    def seeds_of(self, task: Task) -> tuple[int, ...]:
        """:return: The seeds a task runs with"""
        return self.seeds if task.seeds is None else task.seeds


WITH_PAPER = ("qsm", "qsm-paper", "sac", "td3")
# Every task also measures the paper's gradient target beside QSM's defaults
WITH_GRADIENT = ("qsm", "qsm-gradient", "sac", "td3")
WITH_PAPER_AND_GRADIENT = ("qsm", "qsm-gradient", "qsm-paper", "sac", "td3")
# MountainCar measures exploration (the goal is reached or not): more seeds, and SAC/TD3 with SB3's defaults too
EXPLORATION = ("qsm", "qsm-gradient", "sac", "td3", "sac-sb3", "td3-sb3")
LOCOMOTION = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5")
# Two locomotion tasks, MountainCar (exploration) and InvertedDoublePendulum (where the defaults' noise-free chain
# balances but their samples do not)
SCREEN_TASKS = ("HalfCheetah-v5", "Hopper-v5", "MountainCarContinuous-v0", "InvertedDoublePendulum-v5")
# The goal pays +100 and an episode's action costs add up to less than 100: return > 0 <=> goal reached
MOUNTAIN_CAR_GOAL_RETURN = 0.0
# The QSM defaults the committed suites v1, screen and cheaper ran with, where today's differ: the exploration and the
# critics of sb3-qsm 0.1, the critic target's full chain, the reference sampler, SB3's 100 warm-up steps and the replay
# actions as the actor loss's clean actions (rows that set any keep their own)
DEFAULTS_BEFORE_V2: dict[str, Any] = {
    **EXPLORATION_0_1,
    **CRITICS_0_1,
    **FULL_TARGET_CHAIN,
    **REFERENCE_SAMPLER,
    "learning_starts": 100,
    "score_actions": "replay",
    "policy_kwargs": dict(CRITICS_0_1_POLICY_KWARGS),
}
SUITES = {
    "v1": Suite(
        "v1",
        tasks=(
            Task("Pendulum-v1", 20_000, WITH_PAPER_AND_GRADIENT),
            Task(
                "MountainCarContinuous-v0", 50_000, EXPLORATION, seeds=(0, 1, 2, 3, 4), success_return=MOUNTAIN_CAR_GOAL_RETURN
            ),
            Task("InvertedDoublePendulum-v5", 50_000, WITH_GRADIENT),
            Task("Hopper-v5", 100_000, WITH_PAPER_AND_GRADIENT),
            Task("HalfCheetah-v5", 100_000, WITH_GRADIENT),
        ),
        seeds=(0, 1, 2),
        qsm_defaults=DEFAULTS_BEFORE_V2,
    ),
    # The suite of the defaults chosen on locomotion: every MuJoCo task SB3 users run first, QSM at its defaults
    "v2": Suite(
        "v2",
        tasks=(
            Task("Pendulum-v1", 20_000, ("qsm", "sac", "td3")),
            Task(
                "MountainCarContinuous-v0",
                50_000,
                ("qsm", "sac", "td3"),
                seeds=(0, 1, 2, 3, 4),
                success_return=MOUNTAIN_CAR_GOAL_RETURN,
            ),
            Task("InvertedDoublePendulum-v5", 50_000, ("qsm", "sac", "td3")),
            *(Task(env_id, 100_000, ("qsm", "sac", "td3")) for env_id in LOCOMOTION),
        ),
        seeds=(0, 1, 2),
        # SAC and TD3 of the five tasks both suites share ran with the same settings in v1
        reuses=("v1",),
    ),
    # Short single-seed runs of candidate changes (SCREEN_VARIANTS) against the defaults (SCREEN_TASKS); SAC (RL Zoo)
    # at the same budget is the curve of its suite v1 run up to that step
    "screen": Suite(
        "screen",
        tasks=tuple(
            Task(
                env_id,
                50_000,
                ("qsm", *SCREEN_VARIANTS),
                n_evaluations=5,
                success_return=MOUNTAIN_CAR_GOAL_RETURN if env_id == "MountainCarContinuous-v0" else None,
            )
            for env_id in SCREEN_TASKS
        ),
        seeds=(0,),
        qsm_defaults=DEFAULTS_BEFORE_V2,
    ),
    # What cheaper arithmetic costs in returns, against QSM's defaults (the time per step is in the cost figures)
    "cheaper": Suite(
        "cheaper",
        tasks=(
            Task(
                "Pendulum-v1",
                20_000,
                ("qsm", *(f"qsm-k{k}" for k in CHEAPER_CANDIDATES), *(f"qsm-tt{t}" for t in CHEAPER_TARGET_STEPS)),
            ),
        ),
        seeds=(0, 1, 2),
        qsm_defaults=DEFAULTS_BEFORE_V2,
    ),
    # The paper's own suite, DeepMind Control through Shimmy: walker-walk, QSM's defaults and the paper preset against
    # SAC (the RL Zoo has no entry for it: SB3's defaults)
    "dmc": Suite(
        "dmc",
        tasks=(Task("dm_control/walker-walk-v0", 100_000, ("qsm", "qsm-paper", "sac")),),
        seeds=(0, 1, 2),
    ),
    # Candidate changes for DeepMind Control (DMC_VARIANTS), on the dmc suite's task, budget and first seeds, to be
    # read against its QSM defaults
    "dmc-screen": Suite(
        "dmc-screen",
        tasks=(Task("dm_control/walker-walk-v0", 100_000, tuple(DMC_VARIANTS)),),
        seeds=(0, 1),
    ),
    # Smoke test of the whole pipeline: every algorithm, tiny budgets, one seed
    "quick": Suite(
        "quick",
        tasks=(Task("Pendulum-v1", 400, WITH_PAPER, n_evaluations=2),),
        seeds=(0,),
        eval_episodes=1,
        final_episodes=2,
        max_learning_starts=100,
    ),
}
