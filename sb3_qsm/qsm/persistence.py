"""
How QSM is saved and loaded: ``QSMCheckpoints`` gives ``QSM`` the SB3 ``save``/``load`` pair (and the replay buffer's)
with atomic writes, the safe unpickler, and the values that archives of older versions trained with.
"""

import io
import pathlib
from collections.abc import Iterable
from typing import Any, TypeVar

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_qsm.common.checkpoint import (
    REBUILT_ENTRIES,
    atomic_file,
    check_policy_class,
    decode_checkpoint_data,
    decode_checkpoint_entry,
    read_checkpoint_json,
    read_pickle_file,
    unpickle_entries,
    with_values_of_older_archives,
)
from sb3_qsm.common.schedules import check_sampler, check_sampler_temperature
from sb3_qsm.qsm.actor import DiffusionActor
from sb3_qsm.qsm.arguments import (
    DEFAULT_TOP_QUANTILES_TO_DROP,
    DIFFUSION_POLICY_ARGS,
    FIXED_DIFFUSION_ARGS,
    SAMPLER_SETTINGS,
)
from sb3_qsm.qsm.policies import POLICY_ARGUMENTS_OF_OLDER_FILES, DiffusionActorPolicy

SelfQSMCheckpoints = TypeVar("SelfQSMCheckpoints", bound="QSMCheckpoints")

# Arguments that older archives may lack, with the value those archives trained with
ADDED_ARGUMENTS: dict[str, Any] = {
    "score_target": "gradient",
    "q_spread_floor": 0.0,
    "sampler_noise_color": 0.0,
    "target_diffusion_steps": None,
    "score_actions": "replay",
    "top_quantiles_to_drop_per_net": DEFAULT_TOP_QUANTILES_TO_DROP,
}


class QSMCheckpoints(OffPolicyAlgorithm):
    """QSM's ``save`` and ``load`` (and the replay buffer's). Not an algorithm of its own: ``QSM`` is."""

    policy: DiffusionActorPolicy
    actor: DiffusionActor

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfQSMCheckpoints],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        safe: bool = True,
        **kwargs: Any,
    ) -> SelfQSMCheckpoints:
        """
        Load a QSM model from a zip file. The file is checked first (a readable, uncorrupted Stable-Baselines3
        archive that holds a QSM model), so that a bad file fails with a ``ValueError`` naming the file and the
        problem; the check unpickles nothing. By default (``safe=True``) the load runs no code from the file: the
        objects SB3 pickled into it are decoded by an allow-listed unpickler (spaces, PyTorch and SB3 classes,
        ``sb3_qsm.common.safe_pickle``), the weights are read as tensors only, and an entry naming anything else is
        refused with an error naming it (replace it with ``custom_objects``, or allow a class of yours with
        ``sb3_qsm.add_safe_globals``). ``safe=False`` unpickles such entries as SAC's ``load`` does, which runs any
        code they hold: only for files you trust. Pass ``buffer_size=1`` to avoid allocating the full replay buffer
        when only predicting.
        An archive saved before ``score_target`` existed goes on training with the paper's ``"gradient"`` target it
        was trained with, not today's default; one saved before ``sampler`` existed samples with the
        ``"reference"`` sampler it was trained with; one saved before TQC's critics became the default keeps its
        plain critics (and the ``policy_delay`` and ``q_spread_floor`` it saved). ``sampler_temperature`` and
        ``sampler`` given here replace the saved ones; ``n_diffusion_steps`` and ``beta_schedule`` can only be given
        with their saved values, since the denoiser was trained for them. See ``BaseAlgorithm.load`` for the parameters.

        :param path: path to the file (or a file-like) where to load the agent from
        :param env: the new environment to run the loaded model on (its spaces must match the saved ones)
        :param device: Device on which the code should run.
        :param custom_objects: Dictionary of objects to replace upon loading.
        :param print_system_info: Whether to print system info from the saved model
        :param force_reset: Force call to ``reset()`` before training to avoid unexpected behavior.
        :param safe: Run no code from the file (see above); ``False`` only for files you trust
        :param kwargs: extra arguments to change the model when loading
        :return: new model instance with loaded parameters
        """
        stored = read_checkpoint_json(path)
        _check_saved_policy(stored, path, custom_objects, safe, cls.__name__)
        data, left_out = decode_checkpoint_data(stored, path, custom_objects, safe=safe)
        if "policy_kwargs" in left_out:
            data.update(unpickle_entries(stored, ["policy_kwargs"]))
        kwargs = with_values_of_older_archives(data, kwargs, ADDED_ARGUMENTS)
        data["policy_kwargs"] = _policy_kwargs_to_load(data, kwargs, path)
        # Every decoded entry is handed to SB3's load, which then unpickles only what a trusting caller left out;
        # lr_schedule is rebuilt from learning_rate by _setup_model
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects={**data, **dict.fromkeys(REBUILT_ENTRIES)},
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def load_replay_buffer(
        self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True, safe: bool = True
    ) -> None:
        """
        Load a replay buffer from a pickle file (see ``OffPolicyAlgorithm.load_replay_buffer``). By default
        (``safe=True``) no code from the file runs: it is read by the allow-listed unpickler of
        ``sb3_qsm.common.safe_pickle``, plain or gzip-compressed (as the benchmark runner keeps its checkpoints'
        buffers), and a truncated or corrupt file is refused with an error naming it. ``safe=False`` unpickles it as
        SB3 does, which runs any code it holds (only for files you trust) and reads plain pickles only.

        :param path: Path to the pickled replay buffer
        :param truncate_last_traj: With a ``HerReplayBuffer``: whether the last trajectory in the buffer was finished
            (and is truncated), or continues
        :param safe: Run no code from the file
        """
        if not safe:
            super().load_replay_buffer(path, truncate_last_traj)
            return
        buffer = read_pickle_file(path, "replay buffer")
        if not isinstance(buffer, ReplayBuffer):
            raise ValueError(f"{path} does not hold a Stable-Baselines3 ReplayBuffer (got {type(buffer).__name__})")
        if isinstance(buffer, HerReplayBuffer):
            if self.env is None:
                raise ValueError(f"Cannot load the HerReplayBuffer {path} without an environment: pass env to load first")
            buffer.set_env(self.env)
            if truncate_last_traj:
                buffer.truncate_last_trajectory()
        # The device of this model, not the one the buffer was saved from (SB3 GH#1561)
        buffer.device = self.device
        self.replay_buffer = buffer

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save the model to a zip file; ``load`` rebuilds the policy from ``policy_kwargs``, which therefore first
        records any sampler setting (``sampler_temperature``, ``sampler``, ``clip_sampler``) changed on the actor since
        it was built.
        A path is written atomically: to a temporary file in the same folder, renamed into place once complete, so a
        process killed during the save leaves the previous file whole.

        :param path: path to the file where the rl agent should be saved
        :param exclude: name of parameters that should be excluded in addition to the default ones
        :param include: name of parameters that might be excluded but should be included anyway
        """
        for name in SAMPLER_SETTINGS:
            value = getattr(self.actor, name)
            if value != self.policy_kwargs.get(name, self.policy.actor_kwargs[name]):
                self.policy_kwargs[name] = value
        if isinstance(path, io.BufferedIOBase):
            super().save(path, exclude, include)
            return
        with atomic_file(path, suffix="zip") as file:
            super().save(file, exclude, include)

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        Save the replay buffer as a pickle file (as SB3 does), written to a temporary file and renamed into place, so
        that a process killed during the save leaves the previous file whole.

        :param path: Path to the file where the replay buffer should be saved (``.pkl`` is added if it has no suffix)
        """
        if isinstance(path, io.BufferedIOBase):
            super().save_replay_buffer(path)
            return
        with atomic_file(path, suffix="pkl") as file:
            super().save_replay_buffer(file)

    def _excluded_save_params(self) -> list[str]:
        # The diffusion settings live in the actor (and policy_kwargs); archives of sb3-qsm 0.1 also stored them
        # at the top level, which load puts back into __dict__, where they must not be saved again
        # compile is a way to run the model, like device, not a property of it: a loaded model runs eagerly unless
        # load is given compile=True
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "critic_target",
            *DIFFUSION_POLICY_ARGS,
            "compile",
            "_colored_noise",
            "compile_kwargs",
            "_critic_loss_fn",
            "_actor_loss_fn",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer"]
        return state_dicts, []


def _check_saved_policy(
    stored: dict[str, Any], path: Any, custom_objects: dict[str, Any] | None, safe: bool, algo_name: str
) -> None:
    """
    Refuse a checkpoint of another algorithm before anything else of it is decoded. Its policy class is read without
    running code; one outside the allow-list (a user's own class) is refused with ``safe``, and left to the check of
    SB3's load otherwise.

    :param stored: The checkpoint's ``data`` entry, parsed
    :raises ValueError: naming the file and the policy it holds
    """
    if custom_objects is not None and "policy_class" in custom_objects:
        policy_class = custom_objects["policy_class"]
    else:
        try:
            policy_class = decode_checkpoint_entry(stored, "policy_class", path)
        except ValueError:
            if safe:
                raise
            return
    check_policy_class({"policy_class": policy_class}, DiffusionActorPolicy, algo_name, path)


def _policy_kwargs_to_load(data: dict[str, Any], kwargs: dict[str, Any], path: Any) -> dict[str, Any]:
    """
    Take the diffusion settings out of ``load``'s extra arguments, where ``BaseAlgorithm.load`` would set them as
    attributes that the actor never reads, and give an archive saved before ``sampler`` existed the sampler it
    trained with, and one saved before TQC's critics became the default its plain critics (every later archive
    records both in ``policy_kwargs``).

    :param data: Decoded ``data`` entry of the checkpoint
    :param kwargs: ``load``'s extra arguments; the diffusion settings are removed from it
    :param path: The checkpoint, for the messages
    :return: The ``policy_kwargs`` to build the policy from: the saved ones, with the given ``sampler_temperature``
        and ``sampler``
    :raises ValueError: for a ``n_diffusion_steps`` or ``beta_schedule`` other than the saved one, or an unusable
        ``sampler_temperature`` or ``sampler``
    """
    saved = dict(data.get("policy_kwargs") or {})
    for name in FIXED_DIFFUSION_ARGS:
        if name not in kwargs:
            continue
        value = kwargs.pop(name)
        if value != saved.get(name):
            raise ValueError(
                f"Cannot load {path} with {name}={value!r}: its denoiser was trained with {name}={saved.get(name)!r}, "
                "which a loaded model keeps. Train a new model (or convert this one) to use another value."
            )
    saved = {**POLICY_ARGUMENTS_OF_OLDER_FILES, **saved}
    if "sampler_temperature" in kwargs:
        check_sampler_temperature(kwargs["sampler_temperature"])
        saved["sampler_temperature"] = kwargs.pop("sampler_temperature")
    if "sampler" in kwargs:
        check_sampler(kwargs["sampler"])
        saved["sampler"] = kwargs.pop("sampler")
    return saved
