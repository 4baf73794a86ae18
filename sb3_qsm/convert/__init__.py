"""
Carry SB3 SAC and TD3 agents over to QSM: read their checkpoints (``sources``), copy their critics (``warm_start``)
and distil their actors into a diffusion policy (``convert``).
"""

from sb3_qsm.convert.convert import collect_source_data, convert_to_qsm, distill_actor, fit_score_scale
from sb3_qsm.convert.sources import load_sb3_agent
from sb3_qsm.convert.warm_start import load_critic_from_checkpoint

__all__ = [
    "collect_source_data",
    "convert_to_qsm",
    "distill_actor",
    "fit_score_scale",
    "load_critic_from_checkpoint",
    "load_sb3_agent",
]
