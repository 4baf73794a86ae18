"""
RL Zoo glue: run ``rl_zoo3``'s commands with QSM available as ``--algo qsm``.

``rl_zoo3`` builds its ``--algo`` choices from its ``ALGOS`` registry and has no plugin hook, so (as its docs do for
SBX) QSM is added to that registry before the zoo's command runs: ``python -m sb3_qsm.zoo train --algo qsm ...``.
"""

import contextlib
import importlib.resources
from typing import Any

try:
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("sb3_qsm.zoo needs the RL Zoo: pip install 'sb3-qsm[zoo]' (rl_zoo3 and optuna)") from error

from sb3_qsm.qsm import QSM
from sb3_qsm.zoo.hyperparams_opt import convert_qsm_params, sample_qsm_params

ALGO_NAME = "qsm"


def default_hyperparams_file() -> str:
    """
    :return: Path of the hyperparameter file shipped with the package (``sb3_qsm/zoo/hyperparams/qsm.yml``),
        the zoo's default ``--conf-file`` for ``--algo qsm``
    """
    return str(importlib.resources.files("sb3_qsm.zoo") / "hyperparams" / f"{ALGO_NAME}.yml")


class PredictOnlyQSM(QSM):
    """
    QSM as ``enjoy`` loads it: the replay buffer is allocated with one transition (``buffer_size=1``) unless asked
    otherwise, as the zoo does for the off-policy algorithms it knows, since replaying an agent never samples it.
    """

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> "PredictOnlyQSM":  # type: ignore[override]
        kwargs.setdefault("buffer_size", 1)
        kwargs.setdefault("optimize_memory_usage", False)
        return super().load(*args, **kwargs)


def register(predict_only: bool = False) -> None:
    """
    Add QSM to the RL Zoo's registries, for this process: the algorithm (``rl_zoo3.ALGOS["qsm"]``) and its Optuna
    search space (``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``); with Shimmy installed, the DeepMind Control
    tasks are registered as Gymnasium environments too.

    :param predict_only: Register :class:`PredictOnlyQSM`, which loads without allocating the saved replay buffer
        size (for ``enjoy``), instead of :class:`~sb3_qsm.QSM`
    """
    rl_zoo3.ALGOS[ALGO_NAME] = PredictOnlyQSM if predict_only else QSM
    HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_qsm_params
    HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_qsm_params
    with contextlib.suppress(ImportError):
        # Shimmy registers the DeepMind Control tasks (dm_control/<domain>-<task>-v0) when imported (the dmc extra)
        import shimmy  # noqa: F401


__all__ = ["ALGO_NAME", "PredictOnlyQSM", "default_hyperparams_file", "register"]
