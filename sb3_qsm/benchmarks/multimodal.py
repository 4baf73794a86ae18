"""
Multi-modal demonstration: train QSM, SAC and TD3 on ``sb3_qsm/MultiModalBandit-v0`` (four equally good, separated
optimal actions), then measure, for 2000 stochastic samples of each trained policy, how many modes they cover and
how much reward they earn, and draw every policy's samples side by side.

    python -m sb3_qsm.benchmarks multimodal --steps 5000 --seeds 0 1 2 --out benchmarks/multimodal/defaults

A sample counts for a mode when it lies within the half-peak radius of it (its reward is at least half the peak);
a mode is covered when it holds at least 10% of the samples. Each (algorithm, seed) writes its own JSON file, and an
existing file is reused, so the script resumes after an interruption. ``--qsm-kwargs`` passes QSM arguments
(e.g. ``'{"score_scale": 1.0}'``) to compare settings; write each setting to its own ``--out`` folder.

``--ceiling`` trains nothing: it measures what the diffusion sampler itself allows. It runs QSM's reverse process
(``DiffusionSchedule.sample``) with the exact denoiser of a policy that already puts equal Gaussian bumps on the
modes, for several numbers of steps and schedules. No trained denoiser can do better than that exact one, so a
sampler whose ceiling misses the target cannot reach it whatever the training:

    python -m sb3_qsm.benchmarks multimodal --ceiling --out benchmarks/multimodal/ceiling
"""

import json
import pathlib
from typing import Any

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_qsm.envs
from sb3_qsm import QSM
from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.settings import effective_hyperparams
from sb3_qsm.common.diffusion import DiffusionSchedule
from sb3_qsm.envs.multimodal import MultiModalBandit
from sb3_qsm.inspection import mode_coverage, sample_actions
from sb3_qsm.plotting import plot_action_distribution

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"qsm": QSM, "sac": SAC, "td3": TD3}
N_SAMPLES, MIN_FRACTION = 2000, 0.1
# QSM's settings that decide whether it keeps the peaks, recorded in each result as the model holds them (defaults
# included), so that a result still says what ran after a default changes


def evaluate_samples(actions: np.ndarray, bandit: MultiModalBandit) -> dict[str, Any]:
    """Mode coverage and reward of a policy's samples."""
    coverage = mode_coverage(actions, bandit.modes, bandit.half_peak_radius, MIN_FRACTION)
    mean_reward = float(bandit.reward(actions).mean() / bandit.peak_reward)
    return {**coverage, "mean_reward_over_peak": mean_reward}


def run(algo: str, seed: int, steps: int, qsm_kwargs: dict[str, Any], out: pathlib.Path) -> dict[str, Any]:
    """Train one agent (or reuse its result file) and measure its samples."""
    path = out / f"{algo}_seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    env = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID)
    kwargs = qsm_kwargs if algo == "qsm" else {}
    model = ALGORITHMS[algo]("MlpPolicy", env, seed=seed, **kwargs)
    model.learn(steps)
    obs, _ = env.reset(seed=seed)
    actions = sample_actions(model, obs, N_SAMPLES)
    bandit = env.unwrapped
    assert isinstance(bandit, MultiModalBandit)
    result: dict[str, Any] = {"algo": algo, "seed": seed, "steps": steps, "kwargs": {k: repr(v) for k, v in kwargs.items()}}
    if isinstance(model, QSM):
        # Every argument as the model holds it (defaults included), so that a record says what ran after a default
        # changes
        settings = effective_hyperparams(model)
        result["settings"] = {**settings, "action_fan_in_init": repr(model.policy.actor.action_fan_in_init)}
    result |= {**evaluate_samples(actions, bandit), "actions": actions.tolist()}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def exact_denoiser(schedule: DiffusionSchedule, modes: np.ndarray, std: float) -> Any:
    """
    The exact noise prediction ``E[eps | x_t]`` for actions drawn from an equal mixture of Gaussians of standard
    deviation ``std`` centred on ``modes``: ``(x_t - sqrt(alpha_bar_t) E[a_0 | x_t]) / sqrt(1 - alpha_bar_t)``.
    """
    centres = th.as_tensor(modes, dtype=th.float64)

    def denoise(x: th.Tensor, t: int) -> th.Tensor:
        alpha_bar = schedule.alpha_bars[t].double()
        x64 = x.double()[:, None, :]
        variance = alpha_bar * std**2 + 1 - alpha_bar  # of x_t given the mode
        offset = x64 - alpha_bar.sqrt() * centres[None]
        weights = th.softmax(-(offset**2).sum(-1) / (2 * variance), dim=1)[..., None]
        clean = (weights * (centres[None] + alpha_bar.sqrt() * std**2 / variance * offset)).sum(1)
        return schedule.noise_from_clean(x.double(), clean, th.full((len(x),), t)).float()

    return denoise


def ceiling(bandit: MultiModalBandit, stds: list[float], out: pathlib.Path) -> str:
    """The samplers' ceilings (see the module's docstring) as a Markdown table, also written to ``out``."""
    rng = np.random.default_rng(0)
    lines = ["| Mixture std | Its own mean reward / peak | Steps T | Schedule | Modes with >= 10% | Mean reward / peak |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    records = []
    for std in stds:
        mixture = bandit.modes[rng.integers(len(bandit.modes), size=N_SAMPLES)]
        own = evaluate_samples(mixture + std * rng.standard_normal(mixture.shape), bandit)["mean_reward_over_peak"]
        for n_diffusion_steps in (5, 10, 20):
            for name in ("vp", "cosine", "linear"):
                schedule = DiffusionSchedule(n_diffusion_steps, name)
                th.manual_seed(0)
                noise = th.randn(N_SAMPLES, bandit.modes.shape[1])
                actions = schedule.sample(exact_denoiser(schedule, bandit.modes, std), noise).numpy()
                result = evaluate_samples(actions, bandit)
                records.append({"std": std, "n_diffusion_steps": n_diffusion_steps, "beta_schedule": name, **result})
                lines.append(
                    f"| {std:g} | {own:.2f} | {n_diffusion_steps} | {name} | {result['n_covered']} "
                    f"| {result['mean_reward_over_peak']:.2f} |"
                )
    out.mkdir(parents=True, exist_ok=True)
    (out / "ceiling.json").write_text(json.dumps(records, indent=1))
    table = "\n".join(lines) + "\n"
    (out / "ceiling.md").write_text(table)
    return table


def summary_table(results: list[dict[str, Any]]) -> str:
    lines = ["| Algorithm | Seed | Modes with >= 10% | Share at each mode | Outside every mode | Mean reward / peak |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        shares = ", ".join(f"{f:.0%}" for f in r["fractions"])
        lines.append(
            f"| {r['algo']} | {r['seed']} | {r['n_covered']} | {shares} | {r['outside']:.0%} "
            f"| {r['mean_reward_over_peak']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = command_parser("multimodal", __doc__)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--qsm-kwargs", type=json.loads, default={}, help="QSM arguments, as JSON")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/multimodal/defaults"))
    parser.add_argument("--ceiling", action="store_true", help="measure the samplers' ceilings instead (see above)")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    if args.ceiling:
        bandit = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID).unwrapped
        assert isinstance(bandit, MultiModalBandit)
        print(ceiling(bandit, [bandit.width / 2, bandit.width / 4], args.out))
        return 0
    results = [run(algo, seed, args.steps, args.qsm_kwargs, args.out) for algo in args.algos for seed in args.seeds]
    bandit = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID).unwrapped
    assert isinstance(bandit, MultiModalBandit)
    fig, axes = plt.subplots(len(args.algos), len(args.seeds), figsize=(3.2 * len(args.seeds), 3 * len(args.algos)))
    for ax, r in zip(np.atleast_2d(axes).flat, results, strict=True):
        title = f"{r['algo']} seed {r['seed']}: {r['n_covered']} modes, reward {r['mean_reward_over_peak']:.2f}"
        plot_action_distribution(np.array(r["actions"]), -1, 1, modes=bandit.modes, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(args.out / "comparison.png", dpi=90)
    table = summary_table(results)
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"Written to {args.out}")
    return 0
