import os
import sys

import sb3_qsm.common
from sb3_qsm import inspection
from sb3_qsm.common.callbacks import AtomicCheckpointCallback
from sb3_qsm.common.safe_pickle import add_safe_globals
from sb3_qsm.convert import Demonstrations, convert_to_qsm, pretrain_qsm
from sb3_qsm.convert import convert as _convert_module
from sb3_qsm.convert import warm_start as _warm_start_module
from sb3_qsm.qsm import QSM, DiffusionActorPolicy

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

# sb3_qsm.common imports nothing above itself, so conversion and inspection live outside it; these import paths
# under sb3_qsm.common, which users have, name the same modules
for _name, _module in (("convert", _convert_module), ("warm_start", _warm_start_module), ("inspection", inspection)):
    sys.modules.setdefault(f"sb3_qsm.common.{_name}", _module)
    setattr(sb3_qsm.common, _name, _module)

__all__ = [
    "QSM",
    "AtomicCheckpointCallback",
    "Demonstrations",
    "DiffusionActorPolicy",
    "__version__",
    "add_safe_globals",
    "convert_to_qsm",
    "pretrain_qsm",
]
