"""
Start QSM from what already exists: carry SB3 SAC and TD3 agents over (read their checkpoints in ``sources``, copy
their critics in ``warm_start``, distil their actors in ``convert``), or pretrain from demonstrations (Minari datasets,
replay buffers or recorded rollouts in ``demonstrations``, the fits in ``pretrain``).
"""

from sb3_qsm.convert.convert import collect_source_data, convert_to_qsm, distill_actor, fit_denoiser, fit_score_scale
from sb3_qsm.convert.demonstrations import Demonstrations, record_demonstrations
from sb3_qsm.convert.pretrain import fill_replay_buffer, fit_critics, pretrain, pretrain_qsm
from sb3_qsm.convert.sources import load_sb3_agent
from sb3_qsm.convert.warm_start import load_critic_from_checkpoint

__all__ = [
    "Demonstrations",
    "collect_source_data",
    "convert_to_qsm",
    "distill_actor",
    "fill_replay_buffer",
    "fit_critics",
    "fit_denoiser",
    "fit_score_scale",
    "load_critic_from_checkpoint",
    "load_sb3_agent",
    "pretrain",
    "pretrain_qsm",
    "record_demonstrations",
]
