"""
What the benchmark runs: the suites (tasks, budgets, seeds) and how each algorithm is built for a task.

Algorithms:

- ``qsm``: ``QSM("MlpPolicy", env)`` with its constructor defaults (the ``"posterior"`` score target).
- ``qsm-gradient``: QSM with the paper's ``"gradient"`` score target and the defaults that went with it before the
  ``"posterior"`` target replaced it (``GRADIENT_HYPERPARAMS``: score scale 50, T=5 with the vp schedule, no fan-in
  initialisation), every other argument at QSM's default.
- ``qsm-paper``: ``QSM.from_paper_config(env)``, the configuration the QSM paper ran.
- ``sac``, ``td3``: SB3's SAC and TD3 with the RL Zoo's tuned hyperparameters for the task, read from the installed
  ``rl_zoo3`` package (``hyperparams/sac.yml``, ``td3.yml``). The zoo tunes the MuJoCo tasks under their ``-v4`` ids;
  a ``-v5`` task uses its ``-v4`` entry. A task the zoo has no entry for gets SB3's defaults. ``hyperparams_source``
  says which, and each raw result records it.
- ``sac-sb3``, ``td3-sb3``: SB3's SAC and TD3 with SB3's own defaults (TD3's default adds no action noise), for the
  tasks where the zoo's tuning is part of the question (MountainCarContinuous, which punishes timid exploration).

Every replay buffer is capped at the run's budget: a run never stores more transitions than that, so the cap changes
nothing but the memory a run (and its checkpoint) takes.
"""

import copy
import dataclasses
import inspect
import pathlib
from typing import Any

import numpy as np
import yaml
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from sb3_qsm import QSM
from sb3_qsm.qsm.presets import PAPER_HYPERPARAMS, PAPER_UPDATE, PAPER_UPDATE_POLICY_KWARGS

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "qsm": QSM,
    "qsm-gradient": QSM,
    "qsm-paper": QSM,
    "sac": SAC,
    "td3": TD3,
    "sac-sb3": SAC,
    "td3-sb3": TD3,
}
# Algorithms whose policies sample actions: their final evaluation also runs stochastic episodes
STOCHASTIC_POLICIES = ("qsm", "qsm-gradient", "qsm-paper", "sac", "sac-sb3")
# The "qsm-gradient" algorithm: the arguments whose defaults changed with the switch to the "posterior" target, at
# their earlier values (n_score_samples, whose default also changed, is unused by the gradient target)
GRADIENT_HYPERPARAMS: dict[str, Any] = dict(**PAPER_UPDATE, policy_kwargs=dict(PAPER_UPDATE_POLICY_KWARGS))
# Zoo entry keys that are not constructor arguments: the budget (set by the suite) and the action noise's description
N_TIMESTEPS_KEY, NOISE_KEYS = "n_timesteps", ("noise_type", "noise_std")


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
    """

    name: str
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]
    eval_episodes: int = 5
    final_episodes: int = 10
    max_learning_starts: int | None = None

    def seeds_of(self, task: Task) -> tuple[int, ...]:
        """:return: The seeds a task runs with"""
        return self.seeds if task.seeds is None else task.seeds


WITH_PAPER = ("qsm", "qsm-paper", "sac", "td3")
# Every task also measures the earlier defaults (the gradient target), which the current ones replaced
WITH_GRADIENT = ("qsm", "qsm-gradient", "sac", "td3")
WITH_PAPER_AND_GRADIENT = ("qsm", "qsm-gradient", "qsm-paper", "sac", "td3")
# MountainCar measures exploration (the goal is reached or not): more seeds, and SAC/TD3 with SB3's defaults too
EXPLORATION = ("qsm", "qsm-gradient", "sac", "td3", "sac-sb3", "td3-sb3")
SUITES = {
    "v1": Suite(
        "v1",
        tasks=(
            Task("Pendulum-v1", 20_000, WITH_PAPER_AND_GRADIENT),
            # The goal pays +100 and an episode's action costs add up to less than 100: return > 0 <=> goal reached
            Task("MountainCarContinuous-v0", 50_000, EXPLORATION, seeds=(0, 1, 2, 3, 4), success_return=0.0),
            Task("InvertedDoublePendulum-v5", 50_000, WITH_GRADIENT),
            Task("Hopper-v5", 100_000, WITH_PAPER_AND_GRADIENT),
            Task("HalfCheetah-v5", 100_000, WITH_GRADIENT),
        ),
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


def zoo_file(algo: str) -> pathlib.Path:
    """
    :param algo: ``sac`` or ``td3``
    :return: The RL Zoo's hyperparameter file of the algorithm, in the installed ``rl_zoo3`` package
    """
    import rl_zoo3

    return pathlib.Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"


def zoo_entry(algo: str, env_id: str) -> tuple[dict[str, Any], str]:
    """
    Find the RL Zoo's entry of an algorithm for a task.

    :param algo: ``sac`` or ``td3``
    :param env_id: Gymnasium environment id
    :return: The raw entry (empty if the zoo has none) and where it came from
    """
    entries = yaml.safe_load(zoo_file(algo).read_text())
    candidates = [env_id]
    if env_id.endswith("-v5"):
        candidates.append(env_id[: -len("-v5")] + "-v4")
    for name in candidates:
        if name in entries:
            return dict(entries[name]), f"rl_zoo3 {algo}.yml: {name}"
    return {}, "SB3 defaults (the RL Zoo has no entry for this task)"


def zoo_hyperparams(entry: dict[str, Any], n_actions: int) -> dict[str, Any]:
    """
    Turn an RL Zoo entry into constructor arguments, as the zoo's ``ExperimentManager`` does for the keys it holds.

    :param entry: The raw entry
    :param n_actions: Size of the action space (for the action noise)
    :return: Keyword arguments of the algorithm (``policy`` included)
    """
    hyperparams = {key: value for key, value in entry.items() if key not in (N_TIMESTEPS_KEY, *NOISE_KEYS)}
    supported = {"policy", "learning_rate", "buffer_size", "batch_size", "ent_coef", "train_freq", "gradient_steps"}
    supported |= {"gamma", "tau", "learning_starts", "use_sde", "policy_kwargs", "policy_delay", "target_policy_noise"}
    unsupported = set(hyperparams) - supported
    if unsupported:
        raise NotImplementedError(f"The benchmark runner does not handle the zoo keys {sorted(unsupported)}")
    if isinstance(hyperparams.get("policy_kwargs"), str):
        hyperparams["policy_kwargs"] = eval(hyperparams["policy_kwargs"], {"dict": dict, "nn": nn})
    if isinstance(hyperparams.get("learning_rate"), str):  # "lin_7.3e-4": linear decay to 0, as in the zoo
        hyperparams["learning_rate"] = LinearSchedule(float(hyperparams["learning_rate"].split("_")[1]), 0.0, 1.0)
    if isinstance(hyperparams.get("train_freq"), list):
        hyperparams["train_freq"] = tuple(hyperparams["train_freq"])
    if "noise_type" in entry:
        sigma = entry["noise_std"] * np.ones(n_actions)
        noise_class = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}
        hyperparams["action_noise"] = noise_class[entry["noise_type"].strip()](np.zeros(n_actions), sigma)
    return hyperparams


def describe(hyperparams: dict[str, Any]) -> dict[str, str]:
    """
    :param hyperparams: Constructor arguments
    :return: The same, each value as text (for the raw result files)
    """
    return {key: repr(value) for key, value in sorted(hyperparams.items())}


# Constructor arguments that say nothing about the algorithm's settings
NOT_SETTINGS = {"policy", "env", "verbose", "seed", "device", "tensorboard_log", "stats_window_size", "_init_setup_model"}


def effective_hyperparams(model: BaseAlgorithm) -> dict[str, str]:
    """
    The value of every constructor argument as the built model holds it, defaults included, so that a raw result
    still says what ran after a default changes.

    :param model: The model
    :return: Argument name to ``repr`` of its value
    """
    names = [name for name in inspect.signature(type(model)).parameters if name not in NOT_SETTINGS]
    return {name: repr(getattr(model, name)) for name in names if hasattr(model, name)}


def make_model(
    algo: str, env: GymEnv, env_id: str, seed: int, budget: int, device: str, max_learning_starts: int | None = None
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
    :return: The model and a description of its settings
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {algo!r}, expected one of {sorted(ALGORITHMS)}")
    if algo == "qsm-paper":
        source, hyperparams = "QSM.from_paper_config (sb3_qsm.qsm.presets.PAPER_HYPERPARAMS)", dict(PAPER_HYPERPARAMS)
    elif algo == "qsm":
        source, hyperparams = "QSM constructor defaults", {}
    elif algo == "qsm-gradient":
        source, hyperparams = "suite.GRADIENT_HYPERPARAMS (the earlier defaults)", dict(GRADIENT_HYPERPARAMS)
    elif algo.endswith("-sb3"):
        source, hyperparams = "SB3 defaults", {}
    else:
        entry, source = zoo_entry(algo, env_id)
        n_actions = int(np.prod(env.action_space.shape))  # type: ignore[union-attr, arg-type]
        hyperparams = zoo_hyperparams(entry, n_actions)
    # The runner's own overrides: these change no update, only memory (and smoke-test budgets)
    defaults = inspect.signature(ALGORITHMS[algo]).parameters
    overrides: dict[str, Any] = {"buffer_size": min(hyperparams.get("buffer_size", defaults["buffer_size"].default), budget)}
    learning_starts = hyperparams.get("learning_starts", defaults["learning_starts"].default)
    if max_learning_starts is not None and learning_starts > max_learning_starts:
        overrides["learning_starts"] = max_learning_starts
    common = dict(seed=seed, device=device, verbose=0, **overrides)
    if algo == "qsm-paper":
        model: BaseAlgorithm = QSM.from_paper_config(env, **common)
    else:
        # A copy: SB3 writes into the policy_kwargs it is given, which would then misreport the zoo's entry
        kwargs = {key: copy.deepcopy(value) for key, value in hyperparams.items() if key != "policy"}
        model = ALGORITHMS[algo](hyperparams.get("policy", "MlpPolicy"), env, **{**kwargs, **common})
    settings = {
        "hyperparams_source": source,
        "hyperparams": describe(hyperparams),
        "runner_overrides": describe(overrides),
        "effective_hyperparams": effective_hyperparams(model),
    }
    return model, settings
