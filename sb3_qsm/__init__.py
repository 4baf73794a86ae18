import os

from sb3_qsm.common.convert import convert_to_qsm
from sb3_qsm.qsm import QSM

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["QSM", "__version__", "convert_to_qsm"]
