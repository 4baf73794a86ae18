"""
Variants of the posterior target that need no argument of QSM, for probing before one is added. Trains QSM at its
defaults (plus the QSM arguments given as JSON) with one torch thread and the target changed as ``variant`` says:

- ``mean``: none (the defaults);
- ``min``: each candidate valued by the smaller of the two critics rather than their mean. At HalfCheetah-v5's start
  the critics disagree over uniform actions by as much as those actions' values spread
  (``critic_scales_halfcheetah_seed0.jsonl``), so the mean rewards the candidates where one critic errs high; SAC's
  actor and SDAC's target take the smaller value;
- ``no-anchor``: the replay action is not one of the candidates. At HalfCheetah's noisy steps it carries about 60% of
  the weight against 8 nearly uniform candidates (``anchor_weight.py``), so the target there is mostly the replay
  action itself: a Q-weighted copy of the data more than a step towards the critics' preference;
- ``policy-anchor``: ``score_actions="policy"``: the actions noised into ``a_t`` (and kept as the extra candidate)
  are fresh samples of the policy (the critic target's chain, half of ``T``) rather than the replay actions, so that
  the estimate leans towards the current policy, not towards the replay's older behaviour; its fixed point is the
  target policy itself. Until the critic target's samples were reused, they were drawn at the replay observations,
  one more chain per update (this probe patched that in before the argument existed; the rows of
  ``target_variants.jsonl`` and the first rows of ``target_variants_warmup.jsonl``);
- ``policy-anchor-half``: half of the batch so, the other half on the replay actions (the first rows of the batch
  on the policy's samples; its line in ``target_variants_warmup.jsonl`` ran before the critic target's samples were
  reused, with the samples drawn at the replay observations);
- ``policy-clean`` and ``policy-noisy``: ``score_actions="policy"`` at the clean half of the steps (``t < T / 2``)
  and the replay actions at the noisy half (``score_actions="mixed"`` itself), or the other way round. The noisy
  steps choose among the policy's modes, where the replay anchors keep the four-peak bandit's (``"policy"`` alone
  settles on one peak on one seed of three); the clean steps place the action, where the policy's own samples may be
  what refines it. The two variants ask which half carries HalfCheetah's gain with ``"policy"``;
- ``recent-N`` (``N`` a number of steps, e.g. ``recent-20000``): the actor's batch is drawn from the replay buffer's
  last ``N`` transitions, the critics' from all of it. QSM's defaults lead SAC's HalfCheetah-v5 curve to about 50k
  steps and fall behind after; the posterior target leans towards the replay actions it noises, so a policy trained
  on the whole buffer stays a Q-weighted copy of all its past behaviour. The recent window asks whether that copy
  is what slows the late phase (at no cost: one more index draw per update);
- ``crossq-W`` (``W`` a layer width, e.g. ``crossq-256``): the critics are sb3-contrib's CrossQ critics (two hidden
  layers of width ``W``, batch renormalisation before each) without target networks: the TD target's values come
  from the same critics, evaluated on the batch's observations and next observations in one pass whose batch
  statistics cover both (CrossQ, Bhatt et al., ICLR 2024). Every other evaluation of the critics (the posterior
  target's candidates) uses their running statistics. Now the policy argument ``critic_batch_norm=True`` with the
  critics' layers ``[W, W]`` (the first HalfCheetah-v5 line ran a patch of this probe that computed the same values
  without folding the renormalisation into the linear layers). The CrossQ algorithm's other settings (learning
  rate 1e-3, Adam's beta1 0.5, policy delay 3) are QSM arguments, given as JSON;
- ``tqc-D`` (``D`` a number of quantiles, e.g. ``tqc-2``): the critics are sb3-contrib's TQC critics (each network
  25 quantiles of the return, the layers of QSM's critics) trained by quantile regression onto the TD targets of
  the target networks' pooled quantiles less the ``D`` largest per network (truncation, Kuznetsov et al., ICML 2020),
  in place of the minimum of two values; the actor's candidates are valued by each network's mean quantile, as TQC's
  actor values its actions. Now QSM's ``policy_kwargs=dict(n_quantiles=25)`` (unless the arguments give
  ``n_quantiles``) with ``top_quantiles_to_drop_per_net=D``
  (the lines of seed 0 on HalfCheetah-v5 and Walker2d-v5 and the first of Hopper-v5 and of seed 1 on HalfCheetah-v5
  ran a patch of this probe that built the same critics and loss around the model);
- ``local-spread``: each sample's candidates weighted by ``exp(score_scale * Q / spread_i)`` with ``spread_i`` the
  critics' spread over that sample's own candidates (floored as the defaults' is) rather than its mean over the batch.
  The batch's mean is dominated by the noisy steps, whose candidates cover the box; the variant asks whether the
  clean steps, whose candidates lie close around the noisy action, weight them too evenly to refine the action.
  Normalised per sample, every step's target is as sharp, relative to the values it compares, as the noisy steps'
  are (on HalfCheetah it gained nothing: ``target_variants_warmup.jsonl`` in the README).

With ``bandit`` as the task, trains on the multi-modality guide's bandit instead and writes its result as
``python -m sb3_qsm.benchmarks multimodal`` does, to ``benchmarks/multimodal/probe-<variant>``, followed by
``-<name>-<value>`` for each argument given beside the variant, and each of its ``policy_kwargs``
(``probe-tqc-2-policy_delay-2``).

Prints one JSON line per evaluation (5 deterministic episodes every 10,000 steps) and a last one with the final
evaluation (10 deterministic episodes), as the screen evaluates. Each evaluation line also gives the episodes' mean
length and the policy's breadth (``breadth``: the spread of its stochastic samples at replay observations). On
HalfCheetah-v5 each line also gives the fraction of one more deterministic episode that the cheetah runs on its back
(``upside_down.py``), and the last the final evaluation's:

    python benchmarks/probes/target_variants.py HalfCheetah-v5 min 1 50000 '{}'
"""

import copy
import json
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from upside_down import deterministic_episode, flipped

import sb3_qsm.common.critics
import sb3_qsm.qsm.training
from sb3_qsm import QSM
from sb3_qsm.benchmarks import multimodal

# Quantiles per critic network of the tqc-D variant (TQC's default)
TQC_QUANTILES = 25


def smallest_candidate_q_values(critic: Any, observations: Any, candidates: th.Tensor) -> th.Tensor:
    """``candidate_q_values`` with every critic's value replaced by the smallest of them (its mean is then the min)"""
    values = sb3_qsm.common.critics.candidate_q_values(critic, observations, candidates)
    return values.min(dim=-1, keepdim=True).values.expand_as(values)


def policy_rows(select: Callable[[th.Tensor, int], th.Tensor]) -> None:
    """
    Make ``score_actions="mixed"`` anchor on the policy's samples the rows that ``select(timesteps, T)`` marks
    (``policy-noisy``, ``policy-anchor-half``) instead of those noised to the clean half of the steps (``"mixed"``
    itself, ``policy-clean``). ``QSM._score_batch`` picks the policy's rows of ``"mixed"`` by its ``timesteps``
    argument alone (below ``T // 2``); the rows are still noised to their own steps, which the actor loss keeps.
    """
    score_batch = QSM._score_batch

    def patched(self: QSM, observations: Any, actions: Any, next_observations: Any, next_samples: Any, timesteps: Any) -> Any:
        n_steps = self.actor.n_diffusion_steps
        selector = th.where(select(timesteps, n_steps), 0, n_steps - 1)
        return score_batch(self, observations, actions, next_observations, next_samples, selector)

    QSM._score_batch = patched  # type: ignore[method-assign]


def recent_actor_batches(window: int) -> None:
    """Make ``QSM._update_actor`` train on a batch of the replay buffer's last ``window`` transitions (``recent-N``)"""
    update_actor = QSM._update_actor

    def recent(self: QSM, replay_data: Any, *args: Any) -> Any:
        buffer = self.replay_buffer
        assert buffer is not None
        stored = buffer.buffer_size if buffer.full else buffer.pos
        offsets = np.random.randint(1, min(window, stored) + 1, size=self.batch_size)
        indices = (buffer.pos - offsets) % buffer.buffer_size
        # The critic target's samples belong to the critics' batch: with the default replay anchors they are unused
        return update_actor(self, buffer._get_samples(indices, env=self._vec_normalize_env), *args)

    QSM._update_actor = recent  # type: ignore[method-assign]


def local_spread_target(
    self: QSM, observations: Any, noisy: th.Tensor, timesteps: th.Tensor, actions: Any, predicted_noise: Any = None
) -> tuple[th.Tensor, th.Tensor]:
    """``QSM._posterior_target`` (forward proposal) with the spread taken per sample (``local-spread``)"""
    spreads: list[th.Tensor] = []
    floor = max(self.q_spread_floor, sb3_qsm.common.critics.MIN_Q_SPREAD)

    def log_density(candidates: th.Tensor) -> th.Tensor:
        values = sb3_qsm.common.critics.candidate_q_values(self.critic, observations, candidates).mean(dim=-1)
        spread = values.std(dim=1, keepdim=True).clamp_min(floor)
        spreads.append(spread.mean())
        return self.score_scale * values / spread

    schedule = self.actor.schedule
    with th.no_grad():
        clean = schedule.posterior_mean(noisy, timesteps, log_density, self.n_score_samples, anchor=actions)
        return schedule.noise_from_clean(noisy, clean, timesteps), spreads[0]


def with_variant(variant: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """
    Patch QSM as ``variant`` says (module docstring)

    :param variant: The variant's name
    :param arguments: The QSM arguments given
    :return: The QSM arguments to train with: those given, and the variant's own
    """
    if variant == "min":
        sb3_qsm.qsm.training.candidate_q_values = smallest_candidate_q_values  # type: ignore[assignment]
    elif variant == "no-anchor":
        posterior_target = QSM._posterior_target

        def without_anchor(self: QSM, observations: Any, noisy: th.Tensor, timesteps: th.Tensor, *args: Any) -> Any:
            return posterior_target(self, observations, noisy, timesteps, None, *args[1:])

        QSM._posterior_target = without_anchor  # type: ignore[method-assign]
    elif variant == "local-spread":
        QSM._posterior_target = local_spread_target  # type: ignore[method-assign]
    elif variant == "policy-anchor":
        arguments["score_actions"] = "policy"
    elif variant in ("policy-anchor-half", "policy-clean", "policy-noisy"):
        arguments["score_actions"] = "mixed"
        if variant == "policy-anchor-half":
            policy_rows(lambda timesteps, _: th.arange(len(timesteps)) < len(timesteps) // 2)
        elif variant == "policy-noisy":
            policy_rows(lambda timesteps, n_steps: timesteps >= n_steps // 2)
    elif variant.startswith("recent-"):
        recent_actor_batches(int(variant.removeprefix("recent-")))
    elif variant.startswith("crossq-"):
        width = int(variant.removeprefix("crossq-"))
        policy_kwargs = arguments.setdefault("policy_kwargs", {})
        policy_kwargs.update(critic_batch_norm=True, net_arch={"pi": [256, 256], "qf": [width, width]})
    elif variant.startswith("tqc-"):
        arguments["top_quantiles_to_drop_per_net"] = int(variant.removeprefix("tqc-"))
        arguments.setdefault("policy_kwargs", {}).setdefault("n_quantiles", TQC_QUANTILES)
    elif variant != "mean":
        variants = ("mean", "min", "no-anchor", "local-spread", "policy-anchor", "policy-anchor-half")
        variants += ("policy-clean", "policy-noisy", "recent-N", "crossq-W", "tqc-D")
        raise ValueError(f"variant must be one of {variants}, got {variant!r}")
    return arguments


def breadth(model: QSM, n_observations: int = 256, n_samples: int = 16) -> float:
    """
    :return: The policy's breadth: the standard deviation of ``n_samples`` stochastic samples of the plain sampler (no
        sampler noise colour) at each of ``n_observations`` replay observations, per action coordinate, averaged
        (in the normalised box ``[-1, 1]``). A uniform policy has 0.58; SAC's policy at its target entropy, a Gaussian
        of about 0.09 before the squashing.
    """
    observations = model.replay_buffer.sample(n_observations).observations
    repeated = observations.repeat_interleave(n_samples, dim=0)
    with th.no_grad():
        samples = model.policy.actor.sample(repeated, deterministic=False)
    return round(float(samples.view(n_observations, n_samples, -1).std(dim=1).mean()), 3)


def main() -> None:
    env_id, variant, seed, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    kwargs = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    arguments = with_variant(variant, copy.deepcopy(kwargs))
    th.set_num_threads(1)
    if env_id == "bandit":
        flat = {name: value for name, value in kwargs.items() if not isinstance(value, dict)}
        flat.update(kwargs.get("policy_kwargs", {}))
        suffix = "".join(f"-{name}-{value}" for name, value in sorted(flat.items()))
        out = pathlib.Path(f"benchmarks/multimodal/probe-{variant}{suffix}")
        result = multimodal.run("qsm", seed, budget, arguments, out)
        record = dict(env=env_id, variant=variant, seed=seed, budget=budget, kwargs=kwargs)
        coverage = {key: result[key] for key in ("fractions", "n_covered", "outside")}
        print(json.dumps({**record, **coverage}))
        return
    model = QSM("MlpPolicy", env_id, seed=seed, **arguments)
    eval_env = gym.make(env_id)
    eval_env.reset(seed=seed + 1000)
    start = time.time()

    def posture() -> dict[str, float]:
        """:return: On HalfCheetah-v5, the fraction of a deterministic episode (seed 0) spent on the cheetah's back"""
        if env_id != "HalfCheetah-v5":
            return {}
        observations, _ = deterministic_episode(model)
        return {"upside_down": round(float(flipped(observations).mean()), 3)}

    class Report(EvalCallback):
        def _on_step(self) -> bool:
            result = super()._on_step()
            if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
                mean_return = round(float(self.last_mean_reward), 1)
                length = round(float(np.mean(self.evaluations_length[-1])), 1)
                line = dict(variant=variant, seed=seed, t=self.num_timesteps, mean_return=mean_return, length=length)
                print(json.dumps({**line, "breadth": breadth(model), **posture()}), flush=True)
            return result

    with tempfile.TemporaryDirectory() as log_path:
        report = Report(eval_env, n_eval_episodes=5, eval_freq=10_000, log_path=log_path, verbose=0)
        model.learn(budget, callback=report)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, return_episode_rewards=True)
    record = dict(env=env_id, variant=variant, seed=seed, budget=budget, kwargs=kwargs)
    final = dict(mean=round(float(np.mean(returns)), 1), std=round(float(np.std(returns)), 1))
    minutes = round((time.time() - start) / 60, 1)
    print(json.dumps({**record, "final": final, **posture(), "minutes": minutes}), flush=True)


if __name__ == "__main__":
    main()
