"""
What the benchmark runs: the algorithms (one table), the suites (tasks, budgets, seeds) and how each algorithm is built
for a task.

Algorithms:

- ``qsm``: ``QSM("MlpPolicy", env)`` with its constructor defaults (the ``"posterior"`` score target).
- ``qsm-gradient``: QSM with the paper's ``"gradient"`` score target and the values that go with it in the paper's
  update (``GRADIENT_HYPERPARAMS``: score scale 50, T=5 with the vp schedule, no fan-in initialisation), every other
  argument at QSM's default.
- ``qsm-paper``: ``QSM.from_paper_config(env)``, the configuration the QSM paper ran.
- ``sac``, ``td3``: SB3's SAC and TD3 with the RL Zoo's tuned hyperparameters for the task, read and converted by the
  installed ``rl_zoo3``'s own ``ExperimentManager`` (from its ``hyperparams/sac.yml``, ``td3.yml``). The zoo tunes
  the MuJoCo tasks under their ``-v4`` ids; a ``-v5`` task uses its ``-v4`` entry. A task the zoo has no entry for
  gets SB3's defaults (not the zoo's ``default`` entry). ``hyperparams_source`` says which, and each raw result
  records it.
- ``sac-sb3``, ``td3-sb3``: SB3's SAC and TD3 with SB3's own defaults (TD3's default adds no action noise), for the
  tasks where the zoo's tuning is part of the question (MountainCarContinuous, which punishes timid exploration).

Every replay buffer is capped at the run's budget: a run never stores more transitions than that, so the cap changes
nothing but the memory a run (and its checkpoint) takes.
"""

import argparse
import contextlib
import copy
import dataclasses
import inspect
import io
import math
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import ConstantSchedule

from sb3_qsm import QSM
from sb3_qsm.qsm.arguments import auto_learning_starts, time_limit
from sb3_qsm.qsm.presets import (
    EXPLORATION_0_1,
    FULL_TARGET_CHAIN,
    PAPER_HYPERPARAMS,
    PAPER_UPDATE,
    PAPER_UPDATE_POLICY_KWARGS,
    REFERENCE_SAMPLER,
)

# The "qsm-gradient" algorithm: the paper's update, with every other argument at QSM's default
GRADIENT_HYPERPARAMS: dict[str, Any] = dict(**PAPER_UPDATE, policy_kwargs=dict(PAPER_UPDATE_POLICY_KWARGS))
# Keys of a zoo entry that set up the environments, which the runner builds plainly
ZOO_ENVIRONMENT_KEYS = ("normalize", "n_envs", "frame_stack", "env_wrapper", "vec_env_wrapper", "callback", "env_kwargs")


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


def zoo_file(algo: str) -> pathlib.Path:
    """
    :param algo: ``sac`` or ``td3``
    :return: The RL Zoo's hyperparameter file of the algorithm, in the installed ``rl_zoo3`` package
    """
    import rl_zoo3

    return pathlib.Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"


def zoo_entry_id(algo: str, env_id: str, config: pathlib.Path | None = None) -> str | None:
    """
    :param algo: ``sac`` or ``td3``
    :param env_id: Gymnasium environment id
    :param config: The hyperparameter file (default: the zoo's own, ``zoo_file(algo)``)
    :return: The id of the file's entry tuned for the task (its ``-v4`` entry for a ``-v5`` task), or None
    """
    entries = yaml.safe_load((config or zoo_file(algo)).read_text())
    candidates = [env_id, env_id[: -len("-v5")] + "-v4"] if env_id.endswith("-v5") else [env_id]
    return next((name for name in candidates if name in entries), None)


def zoo_hyperparams(algo: str, entry_id: str, env: GymEnv, budget: int, config: pathlib.Path | None = None) -> dict[str, Any]:
    """
    Read and convert an RL Zoo entry into constructor arguments with the zoo's own ``ExperimentManager``, as
    ``rl_zoo3 train`` does: schedules, ``policy_kwargs`` strings and action noise included.

    :param algo: ``sac`` or ``td3``
    :param entry_id: The entry's id
    :param env: The training environment (the zoo reads its action space, for the action noise)
    :param budget: Training budget (replaces the entry's ``n_timesteps``)
    :param config: The hyperparameter file (default: the zoo's own, ``zoo_file(algo)``)
    :return: Keyword arguments of the algorithm (``policy`` included)
    :raises NotImplementedError: for an entry that also sets up the environments (normalisation, wrappers, ...)
    """
    from rl_zoo3.exp_manager import ExperimentManager

    config = config or zoo_file(algo)
    with tempfile.TemporaryDirectory() as log_folder, contextlib.redirect_stdout(io.StringIO()):
        manager = ExperimentManager(argparse.Namespace(), algo, entry_id, log_folder, n_timesteps=budget, config=str(config))
        hyperparams, saved = manager.read_hyperparameters()
        environment_keys = sorted(set(hyperparams) & set(ZOO_ENVIRONMENT_KEYS))
        if environment_keys:
            raise NotImplementedError(f"The benchmark runner builds plain environments: it cannot apply {environment_keys}")
        hyperparams, *_ = manager._preprocess_hyperparams(hyperparams)
        return manager._preprocess_action_noise(hyperparams, saved, env)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """
    One algorithm the benchmark runs.

    :param name: Its name in the suites, the runner's ``--algos`` and the raw result files
    :param label: Its name in tables and figures
    :param algo_class: The SB3 algorithm class (also what loads its checkpoints)
    :param settings: ``(env_id, env, budget) -> (where the settings come from, constructor arguments)``
    :param samples: Whether its policy samples actions (its final evaluation then also runs stochastic episodes)
    :param build: ``(env, **runner_arguments) -> model`` for an algorithm that applies its own settings (a preset);
        otherwise the class is built with ``settings``' arguments
    """

    name: str
    label: str
    algo_class: type[BaseAlgorithm]
    settings: Callable[[str, GymEnv, int], tuple[str, dict[str, Any]]]
    samples: bool
    build: Callable[..., BaseAlgorithm] | None = None


def _fixed(source: str, hyperparams: dict[str, Any]) -> Callable[[str, GymEnv, int], tuple[str, dict[str, Any]]]:
    return lambda env_id, env, budget: (source, dict(hyperparams))


def _zoo(algo: str) -> Callable[[str, GymEnv, int], tuple[str, dict[str, Any]]]:
    def settings(env_id: str, env: GymEnv, budget: int) -> tuple[str, dict[str, Any]]:
        entry_id = zoo_entry_id(algo, env_id)
        if entry_id is None:
            return "SB3 defaults (the RL Zoo has no entry for this task)", {}
        return f"rl_zoo3 {algo}.yml: {entry_id}", zoo_hyperparams(algo, entry_id, env, budget)

    return settings


def _qsm_variant(name: str, label: str, hyperparams: dict[str, Any]) -> Algorithm:
    """:return: QSM at its defaults but for the given arguments"""
    return Algorithm(name, label, QSM, _fixed("QSM constructor defaults but these", hyperparams), samples=True)


# Cheaper arithmetic, measured for what it costs in returns (suite "cheaper"): fewer candidates for the posterior
# target than the default 8, fewer reverse steps for the critic target's next action than the suite's all T = 10
CHEAPER_CANDIDATES = (4, 2)
CHEAPER_TARGET_STEPS = (5, 2)

# The exploration defaults from the adoption of pink noise until the floor became 0.3 (pink sampler noise, spread floor
# 0.1), spelled out by the screen's rows that build on them, since the screen's own defaults keep those of sb3-qsm 0.1
PINK_FLOOR_01: dict[str, Any] = {"sampler_noise_color": 1.0, "q_spread_floor": 0.1}
# The defaults since the floor became 0.3, spelled out likewise
POSTERIOR_FLOOR_03: dict[str, Any] = {
    **PINK_FLOOR_01,
    "target_diffusion_steps": 5,
    "sampler": "posterior",
    "q_spread_floor": 0.3,
}

# Candidate changes to the defaults, screened on short budgets (suite "screen") before any is promoted to a full
# suite: the name in the raw result files -> (label, the QSM arguments that differ from the defaults)
SCREEN_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # A sharper posterior target: the defaults' policy stays far broader than locomotion rewards
    "qsm-s25": ("QSM (score scale 25)", {"score_scale": 25.0}),
    "qsm-s100": ("QSM (score scale 100)", {"score_scale": 100.0}),
    # The critics value the noise-free chain (the evaluated policy), as TD3's value its deterministic actor
    "qsm-dt": ("QSM (deterministic target)", {"deterministic_target": True}),
    # Sharper sampled actions, for exploration and the critic target
    "qsm-st05": ("QSM (sampler temperature 0.5)", {"sampler_temperature": 0.5}),
    # More candidates for the posterior target: a sharp target needs more than 8 draws from the wide proposal
    "qsm-k32": ("QSM (32 candidates)", {"n_score_samples": 32}),
    # Act (explore and evaluate) with the best of 32 sampled actions by the critics, as SDAC does
    "qsm-bon32": ("QSM (best of 32)", {"policy_kwargs": {"best_of_n": 32}}),
    # Half of the posterior target's candidates around the policy's own clean estimate
    "qsm-pp": ("QSM (policy proposal)", {"score_proposal": "policy"}),
    "qsm-pp-s25": ("QSM (policy proposal, score scale 25)", {"score_proposal": "policy", "score_scale": 25.0}),
    "qsm-pp-bon32": ("QSM (policy proposal, best of 32)", {"score_proposal": "policy", "policy_kwargs": {"best_of_n": 32}}),
    # Evaluate with the best of 32, explore with the sampler alone (as MaxEntDP acts)
    "qsm-bon32-eval": (
        "QSM (best of 32 when evaluated)",
        {"policy_kwargs": {"best_of_n": 32, "selection_temperature": math.inf}},
    ),
    "qsm-st05-bon32": (
        "QSM (sampler temperature 0.5, best of 32)",
        {"sampler_temperature": 0.5, "policy_kwargs": {"best_of_n": 32}},
    ),
    # Exploration while the critic is flat (MountainCar): pink sampler noise over time, a floor under the posterior
    # target's spread (in reward units), and both
    "qsm-pink": ("QSM (pink sampler noise)", {"sampler_noise_color": 1.0}),
    "qsm-floor1": ("QSM (spread floor 1)", {"q_spread_floor": 1.0}),
    "qsm-pink-floor1": ("QSM (pink sampler noise, spread floor 1)", {"sampler_noise_color": 1.0, "q_spread_floor": 1.0}),
    "qsm-pink-floor01": ("QSM (pink sampler noise, spread floor 0.1)", dict(PINK_FLOOR_01)),
    # From here on, candidates on top of pink noise with a floor of 0.1 (the screen's rows keep the exploration of
    # sb3-qsm 0.1 unless they set them), to compare with qsm-pink-floor01. The critic: 3-step returns (SB3's n-step
    # replay)
    "qsm-pink-floor01-n3": (
        "QSM (pink sampler noise, spread floor 0.1, 3-step returns)",
        {**PINK_FLOOR_01, "n_steps": 3},
    ),
    # The exploration of the previous one with the sharper sampler that led on HalfCheetah (qsm-st05)
    "qsm-pink-floor01-st05": (
        "QSM (pink sampler noise, spread floor 0.1, sampler temperature 0.5)",
        {**PINK_FLOOR_01, "sampler_temperature": 0.5},
    ),
    # A sharper posterior target (the policy exp(score_scale * Q / spread)), the analogue of a lower entropy
    # coefficient in SAC, with the floor raised in proportion so that the target is as broad as the defaults' while the
    # critic is flat (MountainCar's exploration); the bandit keeps its four modes at 15 and 25 (benchmarks/multimodal)
    "qsm-pink-s25-floor05": (
        "QSM (pink sampler noise, score scale 25, spread floor 0.5)",
        {**PINK_FLOOR_01, "q_spread_floor": 0.5, "score_scale": 25.0},
    ),
    # Half the reverse steps for the critic target's next action: the step's costliest phase (cost per step)
    "qsm-pink-floor01-tt5": (
        "QSM (pink sampler noise, spread floor 0.1, critic target T=5)",
        {**PINK_FLOOR_01, "target_diffusion_steps": 5},
    ),
    # The sampler of Diffusion-QL on top of the previous one: each step clips its estimate of the clean action rather
    # than the noisy sample, and draws with the forward posterior's variance (QSM's defaults since)
    "qsm-posterior-sampler": (
        "QSM (pink sampler noise, spread floor 0.1, critic target T=5, posterior sampler)",
        {**PINK_FLOOR_01, "target_diffusion_steps": 5, "sampler": "posterior"},
    ),
    # The previous one with the floor of 1 that found MountainCar's goal early with it (benchmarks/probes)
    "qsm-posterior-sampler-floor1": (
        "QSM (pink sampler noise, spread floor 1, critic target T=5, posterior sampler)",
        {**PINK_FLOOR_01, "target_diffusion_steps": 5, "sampler": "posterior", "q_spread_floor": 1.0},
    ),
    # A floor between the two, which found MountainCar's goal early too (benchmarks/probes): QSM's default since
    "qsm-posterior-sampler-floor03": (
        "QSM (pink sampler noise, spread floor 0.3, critic target T=5, posterior sampler)",
        dict(POSTERIOR_FLOOR_03),
    ),
    # From here on, candidates on top of the previous one (sb3-qsm's defaults since). The sharper sampler that led on
    # HalfCheetah with the paper's sampler (qsm-pink-floor01-st05)
    "qsm-posterior-floor03-st05": (
        "QSM (posterior sampler, spread floor 0.3, sampler temperature 0.5)",
        {**POSTERIOR_FLOOR_03, "sampler_temperature": 0.5},
    ),
    # A sharper posterior target whose candidates follow the policy (half of them around its own clean estimate), so
    # that the sharpness is not bounded by 8 draws from the nearly uniform forward proposal; the floor raised in
    # proportion to the score scale, so that a flat critic's target stays as broad as the defaults'
    "qsm-posterior-floor15-pp-s25": (
        "QSM (posterior sampler, policy proposal, score scale 25, spread floor 1.5)",
        {**POSTERIOR_FLOOR_03, "score_proposal": "policy", "score_scale": 25.0, "q_spread_floor": 1.5},
    ),
    # Act (explore and evaluate) with the best of 32 sampled actions by the critics (SDAC's choice, which led on
    # HalfCheetah with the paper's sampler), to see whether the posterior sampler's plateau there is in the acting
    "qsm-posterior-floor03-bon32": (
        "QSM (posterior sampler, spread floor 0.3, best of 32)",
        {**POSTERIOR_FLOOR_03, "policy_kwargs": {"best_of_n": 32}},
    ),
    # 10,000 uniformly random warm-up steps before learning, as the RL Zoo's SAC and TD3 gather on MuJoCo
    "qsm-posterior-floor03-ls10k": (
        "QSM (posterior sampler, spread floor 0.3, 10k random warm-up steps)",
        {**POSTERIOR_FLOOR_03, "learning_starts": 10_000},
    ),
    # The actor loss noises fresh samples of the policy rather than the replay actions, which the posterior target
    # otherwise leans towards (benchmarks/probes: anchor_weight, target_variants)
    "qsm-posterior-floor03-policy-actions": (
        "QSM (posterior sampler, spread floor 0.3, score on policy samples)",
        {**POSTERIOR_FLOOR_03, "score_actions": "policy"},
    ),
}

ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        Algorithm("qsm", "QSM (defaults)", QSM, _fixed("QSM constructor defaults", {}), samples=True),
        Algorithm(
            "qsm-gradient",
            "QSM (gradient target)",
            QSM,
            _fixed("suite.GRADIENT_HYPERPARAMS (the earlier defaults)", GRADIENT_HYPERPARAMS),
            samples=True,
        ),
        Algorithm(
            "qsm-paper",
            "QSM (paper preset)",
            QSM,
            _fixed("QSM.from_paper_config (sb3_qsm.qsm.presets.PAPER_HYPERPARAMS)", PAPER_HYPERPARAMS),
            samples=True,
            build=QSM.from_paper_config,
        ),
        *(_qsm_variant(f"qsm-k{k}", f"QSM ({k} candidates)", {"n_score_samples": k}) for k in CHEAPER_CANDIDATES),
        *(
            _qsm_variant(f"qsm-tt{t}", f"QSM (critic target T={t})", {"target_diffusion_steps": t})
            for t in CHEAPER_TARGET_STEPS
        ),
        *(_qsm_variant(name, label, hyperparams) for name, (label, hyperparams) in SCREEN_VARIANTS.items()),
        Algorithm("sac", "SAC (RL Zoo)", SAC, _zoo("sac"), samples=True),
        Algorithm("td3", "TD3 (RL Zoo)", TD3, _zoo("td3"), samples=False),
        Algorithm("sac-sb3", "SAC (SB3 defaults)", SAC, _fixed("SB3 defaults", {}), samples=True),
        Algorithm("td3-sb3", "TD3 (SB3 defaults)", TD3, _fixed("SB3 defaults", {}), samples=False),
    )
}


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
    :param qsm_defaults: QSM arguments that every QSM row of the suite takes unless the row sets them: the defaults
        the suite was run with, where QSM's have changed since (its committed results stay what they were)
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
# The QSM defaults the committed suites v1, screen and cheaper ran with, where today's differ: the exploration of
# sb3-qsm 0.1, the critic target's full chain, the reference sampler, SB3's 100 warm-up steps and the replay actions
# as the actor loss's clean actions (rows that set any keep their own)
DEFAULTS_BEFORE_V2: dict[str, Any] = {
    **EXPLORATION_0_1,
    **FULL_TARGET_CHAIN,
    **REFERENCE_SAMPLER,
    "learning_starts": 100,
    "score_actions": "replay",
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


def describe_value(value: Any) -> str:
    """
    :param value: A constructor argument
    :return: It as text; a constant schedule reads as its value, since it trains exactly as that number does (the
        RL Zoo turns a number into one)
    """
    return repr(value.val) if isinstance(value, ConstantSchedule) else repr(value)


def describe(hyperparams: dict[str, Any]) -> dict[str, str]:
    """
    :param hyperparams: Constructor arguments
    :return: The same, each value as text (for the raw result files)
    """
    return {key: describe_value(value) for key, value in sorted(hyperparams.items())}


# Constructor arguments that say nothing about the algorithm's settings (how it is run, not what it computes: a
# compiled QSM step computes the eager update)
NOT_SETTINGS = {
    "policy",
    "env",
    "verbose",
    "seed",
    "device",
    "tensorboard_log",
    "stats_window_size",
    "_init_setup_model",
    "compile",
    "compile_kwargs",
}


# Constructor arguments added after suite v1 ran, with the value that computes what the runs before them computed:
# a record without such an argument matches a model that has that value
ADDED_ARGUMENTS = {
    "target_diffusion_steps": "None",
    "deterministic_target": "False",
    "score_proposal": "'forward'",
    "q_spread_floor": "0.0",
    "sampler_noise_color": "0.0",
    "sampler": "'reference'",
    "score_actions": "'replay'",
}


def same_settings(recorded: dict[str, str], effective: dict[str, str]) -> bool:
    """
    :param recorded: The effective hyperparameters of a raw result
    :param effective: Those of the model the runner builds today for the same row
    :return: Whether they are the same settings, an argument added since the record at its earlier behaviour included
    """
    added = {key: value for key, value in ADDED_ARGUMENTS.items() if key in effective and key not in recorded}
    return {**recorded, **added} == effective


def settings_match(recorded: dict[str, Any], built: dict[str, Any]) -> bool:
    """
    :param recorded: The settings of a raw result (its ``"settings"``)
    :param built: Those ``make_model`` gives today for the same row
    :return: Whether the result ran with the settings its row stands for today: the same source and runner
        overrides, and the same hyperparameters and effective hyperparameters up to arguments added since
        (``same_settings``; records older than the effective hyperparameters are compared on the rest)
    """
    if any(recorded[key] != built[key] for key in ("hyperparams_source", "runner_overrides")):
        return False
    if not same_settings(recorded["hyperparams"], built["hyperparams"]):
        return False
    return "effective_hyperparams" not in recorded or same_settings(
        recorded["effective_hyperparams"], built["effective_hyperparams"]
    )


def effective_hyperparams(model: BaseAlgorithm) -> dict[str, str]:
    """
    The value of every constructor argument as the built model holds it, defaults included, so that a raw result
    still says what ran after a default changes.

    :param model: The model
    :return: Argument name to the text of its value
    """
    names = [name for name in inspect.signature(type(model)).parameters if name not in NOT_SETTINGS]
    effective = {name: describe_value(getattr(model, name)) for name in names if hasattr(model, name)}
    if isinstance(getattr(model, "policy_kwargs", None), dict):
        # QSM forwards some of its arguments in policy_kwargs: one added since a record, at its earlier value, is left
        # out there as at the top level, so that the record's policy_kwargs still match
        policy_kwargs = model.policy_kwargs
        effective["policy_kwargs"] = describe_value(
            {key: value for key, value in policy_kwargs.items() if ADDED_ARGUMENTS.get(key) != describe_value(value)}
        )
    return effective


def make_model(
    algo: str,
    env: GymEnv,
    env_id: str,
    seed: int,
    budget: int,
    device: str,
    max_learning_starts: int | None = None,
    qsm_defaults: dict[str, Any] | None = None,
) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """
    Build an algorithm for a task as the suite runs it.

    :param algo: A key of ``ALGORITHMS``
    :param env: The training environment
    :param env_id: Its Gymnasium id (to find the zoo entry)
    :param seed: Random seed
    :param budget: Training budget (caps the replay buffer)
    :param device: Torch device
    :param max_learning_starts: If set, caps ``learning_starts``
    :param qsm_defaults: The suite's ``qsm_defaults``, taken by a QSM algorithm unless its settings set them
    :return: The model and a description of its settings
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {algo!r}, expected one of {sorted(ALGORITHMS)}")
    algorithm = ALGORITHMS[algo]
    source, hyperparams = algorithm.settings(env_id, env, budget)
    # The runner's own overrides: these change no update, only memory (and smoke-test budgets)
    defaults = inspect.signature(algorithm.algo_class).parameters
    overrides: dict[str, Any] = {"buffer_size": min(hyperparams.get("buffer_size", defaults["buffer_size"].default), budget)}
    suite_defaults = (qsm_defaults or {}) if algorithm.algo_class is QSM else {}
    settings_with_defaults = {"learning_starts": defaults["learning_starts"].default, **suite_defaults, **hyperparams}
    learning_starts = settings_with_defaults["learning_starts"]
    if learning_starts == "auto":
        learning_starts = auto_learning_starts(time_limit(env))
    if max_learning_starts is not None and learning_starts > max_learning_starts:
        overrides["learning_starts"] = max_learning_starts
    common = dict(seed=seed, device=device, verbose=0, **overrides)
    if algorithm.build is not None:
        model = algorithm.build(env, **common)
    else:
        # A copy: SB3 writes into the policy_kwargs it is given, which would then misreport the zoo's entry
        kwargs = {key: copy.deepcopy(value) for key, value in hyperparams.items() if key != "policy"}
        model = algorithm.algo_class(hyperparams.get("policy", "MlpPolicy"), env, **{**suite_defaults, **kwargs, **common})
    settings = {
        "hyperparams_source": source,
        "hyperparams": describe(hyperparams),
        "runner_overrides": describe(overrides),
        "effective_hyperparams": effective_hyperparams(model),
    }
    return model, settings
