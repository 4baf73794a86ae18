"""Small environments of sb3-qsm, registered with Gymnasium on import (``import sb3_qsm.envs``)."""

import gymnasium as gym

from sb3_qsm.envs.multimodal import MultiModalBandit

MULTIMODAL_ENV_ID = "sb3_qsm/MultiModalBandit-v0"

if MULTIMODAL_ENV_ID not in gym.registry:
    gym.register(MULTIMODAL_ENV_ID, entry_point="sb3_qsm.envs.multimodal:MultiModalBandit")

__all__ = ["MULTIMODAL_ENV_ID", "MultiModalBandit"]
