"""
The algorithms the benchmark runs, in one table (``ALGORITHMS``), and where each takes its settings from:

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

Beside them, QSM variants that differ from the defaults in a few arguments: cheaper arithmetic (``qsm-k*``,
``qsm-tt*``, suite ``cheaper``) and candidate changes to the defaults screened on short budgets (``SCREEN_VARIANTS``,
suite ``screen``) and on DeepMind Control (``DMC_VARIANTS``, suite ``dmc-screen``).
"""

import argparse
import contextlib
import dataclasses
import io
import math
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

import yaml
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

from sb3_qsm import QSM
from sb3_qsm.qsm.presets import PAPER_HYPERPARAMS, PAPER_UPDATE, PAPER_UPDATE_POLICY_KWARGS

# The "qsm-gradient" algorithm: the paper's update, with every other argument at QSM's default
GRADIENT_HYPERPARAMS: dict[str, Any] = dict(**PAPER_UPDATE, policy_kwargs=dict(PAPER_UPDATE_POLICY_KWARGS))
# Keys of a zoo entry that set up the environments, which the runner builds plainly
ZOO_ENVIRONMENT_KEYS = ("normalize", "n_envs", "frame_stack", "env_wrapper", "vec_env_wrapper", "callback", "env_kwargs")


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

# Candidate changes for DeepMind Control, whose rewards are at most 1 per step, about a tenth of Gymnasium's MuJoCo
# locomotion, where the defaults were chosen (suite "dmc-screen", against the dmc suite's defaults). The spread floor
# scaled with the rewards: walker-walk's critics spread by 0.04 to 0.16 over the actions for its first 30k steps
# (benchmarks/probes/critic_scales_walker_walk_seed0.jsonl), so the default 0.6 sets the posterior target's breadth
DMC_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "qsm-floor006": ("QSM (spread floor 0.06)", {"q_spread_floor": 0.06}),
}

ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        Algorithm("qsm", "QSM (defaults)", QSM, _fixed("QSM constructor defaults", {}), samples=True),
        Algorithm(
            "qsm-gradient",
            "QSM (gradient target)",
            QSM,
            # The source as the committed results record it (settings_match compares it), named where it was then
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
        *(
            _qsm_variant(name, label, hyperparams)
            for name, (label, hyperparams) in (*SCREEN_VARIANTS.items(), *DMC_VARIANTS.items())
        ),
        Algorithm("sac", "SAC (RL Zoo)", SAC, _zoo("sac"), samples=True),
        Algorithm("td3", "TD3 (RL Zoo)", TD3, _zoo("td3"), samples=False),
        Algorithm("sac-sb3", "SAC (SB3 defaults)", SAC, _fixed("SB3 defaults", {}), samples=True),
        Algorithm("td3-sb3", "TD3 (SB3 defaults)", TD3, _fixed("SB3 defaults", {}), samples=False),
    )
}
