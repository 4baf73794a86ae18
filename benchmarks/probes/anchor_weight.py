"""
How much of the posterior target is the replay action itself? Reads a runner checkpoint (a copy of a folder with
``model.zip`` and ``replay_buffer.pkl.gz``, see ``saturation.py``) and, for a replay batch of 1,024 noised to each
time index ``t``, draws the target's candidates as ``DiffusionSchedule.posterior_mean`` does (the replay action
first, then ``n_score_samples`` from the forward posterior), weights them as ``QSM._posterior_target`` does, and
prints one JSON line per ``t``: the replay action's mean weight (``anchor_weight``), how often it has the largest
weight (``anchor_first``), the mean largest weight, the spread at that ``t`` alone and how much higher the critics
value the replay action than the other candidates on average (``anchor_lead``).

    python benchmarks/probes/anchor_weight.py CHECKPOINT
"""

import json
import sys

import torch as th

from sb3_qsm import QSM
from sb3_qsm.common.critics import MIN_Q_SPREAD, candidate_q_values
from sb3_qsm.common.diffusion import truncated_normal


def main() -> None:
    folder = sys.argv[1]
    th.set_num_threads(1)
    th.manual_seed(0)
    model = QSM.load(f"{folder}/model.zip", device="cpu")
    model.load_replay_buffer(f"{folder}/replay_buffer.pkl.gz")
    assert model.replay_buffer is not None
    batch = model.replay_buffer.sample(1024)
    observations, actions = batch.observations, batch.actions
    alpha_bars = model.actor.schedule.alpha_bars
    n, dim = model.n_score_samples, actions.shape[1]
    for t in range(model.n_diffusion_steps):
        alpha_bar = alpha_bars[t]
        noisy = alpha_bar.sqrt() * actions + (1 - alpha_bar).sqrt() * th.randn_like(actions)
        mean = (noisy / alpha_bar.sqrt()).unsqueeze(1).expand(-1, n, dim)
        std = ((1 - alpha_bar) / alpha_bar).sqrt().expand(mean.shape)
        with th.no_grad():
            candidates = th.cat([actions.unsqueeze(1), truncated_normal(mean, std)], dim=1)
            values = candidate_q_values(model.critic, observations, candidates).mean(dim=-1)
            spread = values.std(dim=1).mean().clamp_min(max(model.q_spread_floor, MIN_Q_SPREAD))
            weights = th.softmax(model.score_scale * values / spread, dim=1)
        record = dict(
            t=t,
            alpha_bar=round(alpha_bar.item(), 3),
            anchor_weight=round(weights[:, 0].mean().item(), 3),
            anchor_first=round((weights.argmax(dim=1) == 0).float().mean().item(), 3),
            largest_weight=round(weights.max(dim=1).values.mean().item(), 3),
            spread=round(spread.item(), 3),
            anchor_lead=round((values[:, 0] - values[:, 1:].mean(dim=1)).mean().item(), 3),
        )
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
