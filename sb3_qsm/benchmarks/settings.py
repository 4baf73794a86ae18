"""
How the runner builds the model of a row (an algorithm of ``sb3_qsm.benchmarks.algorithms`` on a task) and what its
raw result records of its settings, so that a result is taken over by a later suite only where it ran with the
settings its row stands for today.

Every replay buffer is capped at the run's budget: a run never stores more transitions than that, so the cap changes
nothing but the memory a run (and its checkpoint) takes.
"""

import copy
import inspect
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import ConstantSchedule

from sb3_qsm import QSM
from sb3_qsm.benchmarks.algorithms import ALGORITHMS
from sb3_qsm.qsm.arguments import auto_learning_starts, time_limit


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
    :return: The same, each value as text (for the raw result files); in ``policy_kwargs``, a policy argument added
        since suite v1 ran is left out where it has its earlier value (``without_added_arguments``)
    """
    return {
        key: describe_value(without_added_arguments(value) if key == "policy_kwargs" else value)
        for key, value in sorted(hyperparams.items())
    }


def without_added_arguments(policy_kwargs: Any) -> Any:
    """
    :param policy_kwargs: A ``policy_kwargs`` argument
    :return: The same without the arguments added since suite v1 ran that have the value the runs before them
        computed with (``ADDED_ARGUMENTS``), so that a record from before them still matches a row that now pins that
        value
    """
    if not isinstance(policy_kwargs, dict):
        return policy_kwargs
    return {key: value for key, value in policy_kwargs.items() if ADDED_ARGUMENTS.get(key) != describe_value(value)}


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
    "top_quantiles_to_drop_per_net": "2",
    # a policy argument (in policy_kwargs): plain critics
    "n_quantiles": "None",
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
        # QSM forwards some of its arguments in policy_kwargs and records its critics' quantiles there: one added
        # since a record, at its earlier value, is left out there as at the top level
        effective["policy_kwargs"] = describe_value(without_added_arguments(model.policy_kwargs))
    return effective


def with_suite_defaults(suite_defaults: dict[str, Any], hyperparams: dict[str, Any]) -> dict[str, Any]:
    """
    :param suite_defaults: A suite's ``qsm_defaults`` (for a QSM row; empty otherwise)
    :param hyperparams: The row's constructor arguments
    :return: The row's arguments, completed by the suite's defaults; ``policy_kwargs`` merged entry by entry (the
        row's win), so that a row that sets some policy arguments keeps the suite's others
    """
    merged = {**suite_defaults, **hyperparams}
    if "policy_kwargs" in suite_defaults and "policy_kwargs" in hyperparams:
        merged["policy_kwargs"] = {**suite_defaults["policy_kwargs"], **hyperparams["policy_kwargs"]}
    return merged


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
        kwargs = with_suite_defaults(suite_defaults, kwargs)
        model = algorithm.algo_class(hyperparams.get("policy", "MlpPolicy"), env, **{**kwargs, **common})
    settings = {
        "hyperparams_source": source,
        "hyperparams": describe(hyperparams),
        "runner_overrides": describe(overrides),
        "effective_hyperparams": effective_hyperparams(model),
    }
    return model, settings
