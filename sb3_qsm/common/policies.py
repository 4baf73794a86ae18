"""Policy base classes of sb3-qsm that are not specific to QSM: bounded actions, finite observations, safe loading."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import get_device

from sb3_qsm.common.checkpoint import atomic_file, read_saved_policy

SelfBoundedActionPolicy = TypeVar("SelfBoundedActionPolicy", bound="BoundedActionPolicy")


class BoundedActionPolicy(BasePolicy):
    """
    A ``BasePolicy`` whose actions, once mapped back from ``[-1, 1]`` to the action space, are clipped to its
    bounds, so that float rounding in ``unscale_action`` can never return an action outside the space.
    """

    action_space: spaces.Box
    # Constructor arguments added since a file may have been saved, with the value such a file was trained with
    arguments_of_older_files: ClassVar[dict[str, Any]] = {}

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        ``BasePolicy.predict``, refusing observations with NaN or infinite values, for which the networks would return
        NaN actions (which no clipping can place inside the action space).

        :param observation: the input observation
        :param state: The last hidden states (None: QSM's policies are not recurrent)
        :param episode_start: The last masks (unused)
        :param deterministic: Whether to return deterministic actions
        :return: the model's action and the next hidden state
        :raises ValueError: naming the rows of a non-finite observation
        """
        check_finite_observation(observation)
        return super().predict(observation, state, episode_start, deterministic)

    def save(self, path: str) -> None:
        """
        Save the policy (its weights and constructor arguments, as SB3's ``BaseModel.save``), written to a temporary
        file and renamed into place, so that a process killed during the save leaves the previous file whole.

        :param path: Path to the file
        """
        with atomic_file(path) as file:
            super().save(file)  # type: ignore[arg-type]

    @classmethod
    def load(
        cls: type[SelfBoundedActionPolicy], path: str, device: th.device | str = "auto", safe: bool = True
    ) -> SelfBoundedActionPolicy:
        """
        Load a policy saved with ``save``. By default (``safe=True``) no code from the file runs: it is read with
        ``torch.load(weights_only=True)``, its constructor arguments' classes from the allow-list of
        ``sb3_qsm.common.safe_pickle`` (extend it with ``sb3_qsm.add_safe_globals``). ``safe=False`` loads it as
        SB3's ``BaseModel.load`` does, which runs any code it holds: only for files you trust.

        :param path: Path to the saved policy
        :param device: Device on which the policy should be loaded
        :param safe: Run no code from the file
        :return: The policy; a file saved before a constructor argument existed gets the value it was trained with
            (``arguments_of_older_files``)
        """
        device = get_device(device)
        if safe:
            saved = read_saved_policy(path, device, extra=(cls,))
        else:
            saved = th.load(path, map_location=device, weights_only=False)
        model = cls(**{**cls.arguments_of_older_files, **saved["data"]})
        model.load_state_dict(saved["state_dict"])
        model.to(device)
        return model

    def unscale_action(self, scaled_action: np.ndarray) -> np.ndarray:
        """
        Rescale an action from ``[-1, 1]`` to ``[low, high]`` and clip it to the bounds.

        :param scaled_action: Action in ``[-1, 1]``
        :return: Action in ``[low, high]``
        """
        return np.clip(super().unscale_action(scaled_action), self.action_space.low, self.action_space.high)


def check_finite_observation(observation: Any) -> None:
    """
    :param observation: An observation or a batch (an array, or a dict of arrays), as passed to ``predict``
    :raises ValueError: if a floating-point entry is NaN or infinite, naming the entry and the rows
    """
    entries = observation.items() if isinstance(observation, dict) else [("observation", observation)]
    for name, value in entries:
        # Anything but an array (a list, a tuple) is left to SB3's checks of the observation
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating) or np.isfinite(value).all():
            continue
        array = value
        finite_rows = np.isfinite(array.reshape(len(array), -1) if array.ndim > 1 else array[None]).all(axis=-1)
        raise ValueError(
            f"predict got NaN or infinite values in the {name} (rows {np.flatnonzero(~finite_rows).tolist()}): the "
            "policy would return NaN actions. Check the environment's observations (VecCheckNan finds where they start)."
        )
