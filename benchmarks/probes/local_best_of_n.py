"""
Does exploring with the best of ``n`` chains keep the four-peak bandit's modes when the ``n`` chains share the early,
mode-choosing noise of the reverse process and differ only in the last steps' noise (a choice among neighbours of
one sample, not among the modes)? Trains QSM at its defaults on the bandit with that exploration, one torch thread,
and prints, every 1,000 steps, the mode shares of the exploring policy and of the plain sampler.

    python benchmarks/probes/local_best_of_n.py 0 8 8    # seed, n chains, shared noise entries (of T = 10)
"""

import sys

import gymnasium as gym
import torch as th

import sb3_qsm.envs
from sb3_qsm import QSM
from sb3_qsm.benchmarks.multimodal import evaluate_samples
from sb3_qsm.common.critics import candidate_q_values
from sb3_qsm.inspection import sample_actions
from sb3_qsm.qsm.policies import DiffusionActorPolicy


def local_best_of_n(n_chains: int, shared: int):  # type: ignore[no-untyped-def]
    """:return: A ``_predict`` that acts with the best of ``n_chains`` sharing their first ``shared`` noise entries"""

    def _predict(self: DiffusionActorPolicy, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        if deterministic:
            return self.actor.sample(observation, True)
        n_obs, steps, dim = observation.shape[0], self.actor.n_diffusion_steps, self.actor.action_dim
        base = self._exploration_noise if self._exploration_noise is not None else th.randn(n_obs, steps, dim)
        noise = base.repeat_interleave(n_chains, dim=0).clone()
        noise[:, shared:] = th.randn(n_obs * n_chains, steps - shared, dim)
        candidates = self.actor.sample(observation.repeat_interleave(n_chains, dim=0), noise=noise)
        candidates = candidates.view(n_obs, n_chains, dim)
        values = candidate_q_values(self.critic, observation, candidates).min(dim=-1).values
        return candidates[th.arange(n_obs), values.argmax(dim=1)]

    return _predict


def main() -> None:
    seed, n_chains, shared = (int(arg) for arg in sys.argv[1:4])
    th.set_num_threads(1)
    DiffusionActorPolicy._predict = local_best_of_n(n_chains, shared)  # type: ignore[method-assign]
    env = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID)
    model = QSM("MlpPolicy", env, seed=seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(5):
        model.learn(1000, reset_num_timesteps=False)
        exploring = evaluate_samples(sample_actions(model, obs, 1000), env.unwrapped)
        with th.no_grad():
            plain = model.actor.sample(th.as_tensor(obs)[None].repeat(1000, 1)).numpy()
        sampler = evaluate_samples(model.policy.unscale_action(plain), env.unwrapped)
        print(model.num_timesteps, "exploring", exploring["fractions"], "sampler", sampler["fractions"], flush=True)


if __name__ == "__main__":
    main()
