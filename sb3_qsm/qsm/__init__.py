from sb3_qsm.qsm.policies import CnnPolicy, DiffusionActorPolicy, MlpPolicy, MultiInputPolicy
from sb3_qsm.qsm.qsm import QSM

__all__ = ["QSM", "CnnPolicy", "DiffusionActorPolicy", "MlpPolicy", "MultiInputPolicy"]
