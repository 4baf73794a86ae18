from sb3_qsm.qsm.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_qsm.qsm.qsm import QSM

__all__ = ["QSM", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
