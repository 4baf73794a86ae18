"""
QSM keeps several equally good actions: train it on a bandit whose reward has four separate peaks, then look at the
actions it samples for one observation and at the denoising chains that produce them.

    python examples/multimodal.py --steps 5000 --out multimodal.png

(The comparison with SAC and TD3 in docs/guide/multimodal.md comes from ``python -m sb3_qsm.benchmarks multimodal``.)
"""

import argparse

import gymnasium as gym
import matplotlib.pyplot as plt

import sb3_qsm.envs  # registers sb3_qsm/MultiModalBandit-v0
from sb3_qsm import QSM
from sb3_qsm.envs.multimodal import MultiModalBandit
from sb3_qsm.inspection import denoising_trajectories, mode_coverage, sample_actions
from sb3_qsm.plotting import plot_action_distribution, plot_denoising


def main(steps: int, seed: int, out: str) -> None:
    """
    :param steps: Environment steps to train for
    :param seed: Random seed
    :param out: Path of the figure
    """
    env = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID)
    model = QSM("MlpPolicy", env, seed=seed)
    model.learn(steps)

    bandit = env.unwrapped
    assert isinstance(bandit, MultiModalBandit)
    obs, _ = env.reset(seed=seed)
    actions = sample_actions(model, obs, n_samples=2000)  # stochastic samples of the policy
    coverage = mode_coverage(actions, bandit.modes, radius=bandit.half_peak_radius)
    shares = ", ".join(f"{fraction:.0%}" for fraction in coverage["fractions"])
    print(f"{coverage['n_covered']} of {len(bandit.modes)} modes hold at least 10% of the samples ({shares})")

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    plot_action_distribution(actions, low=-1, high=1, modes=bandit.modes, ax=left, title="sampled actions")
    plot_denoising(denoising_trajectories(model, obs, n_samples=50), ax=right, title="denoising chains")
    fig.savefig(out, dpi=90)
    print(f"Figure written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="Environment steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="Random seed")
    parser.add_argument("--out", default="multimodal.png", help="Path of the figure")
    args = parser.parse_args()
    main(args.steps, args.seed, args.out)
