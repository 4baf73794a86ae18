"""
Carry a trained SB3 SAC agent over to QSM and fine-tune it: the critics are copied, the actor is distilled into a
diffusion policy, then QSM trains on from there.

    python examples/convert_sac_to_qsm.py --source rl-trained-agents/sac/Pendulum-v1_1/Pendulum-v1.zip --env Pendulum-v1

The default source is a published RL Zoo agent that ships with the repository (saved with the retired ``gym``
package, which ``convert_to_qsm`` reads too); your own SAC or TD3 ``.zip`` works the same way.
"""

import argparse

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_qsm import convert_to_qsm


def main(source: str, env_id: str, finetune_steps: int, out: str) -> None:
    """
    :param source: The SAC or TD3 checkpoint
    :param env_id: The environment it was trained on (or one with the same spaces)
    :param finetune_steps: QSM training steps after the conversion
    :param out: Where to save the QSM agent (SB3 appends ``.zip``)
    """
    env = make_vec_env(env_id, n_envs=1, seed=0)
    # Runs the source agent for 10k steps (its transitions seed the replay buffer), then distils its actor
    model = convert_to_qsm(source, env, seed=0)
    eval_env = make_vec_env(env_id, n_envs=1, seed=1000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=True)
    print(f"converted, before any QSM update: {mean:.1f} +/- {std:.1f}")

    model.learn(finetune_steps)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=True)
    print(f"after {finetune_steps} QSM steps: {mean:.1f} +/- {std:.1f}")
    model.save(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="rl-trained-agents/sac/Pendulum-v1_1/Pendulum-v1.zip", help="SAC/TD3 .zip")
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium environment id")
    parser.add_argument("--finetune-steps", type=int, default=2000, help="QSM training steps after the conversion")
    parser.add_argument("--out", default="qsm_converted", help="Path of the saved QSM agent (without .zip)")
    args = parser.parse_args()
    main(args.source, args.env, args.finetune_steps, args.out)
