"""
Read the agents that QSM converts from: SAC and TD3 checkpoints, including RL Zoo agents saved with the retired
``gym`` package, whose pickled spaces cannot be loaded any more.
"""

import ast
import io
import pathlib
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.vec_env import VecEnv

from sb3_qsm.common.checkpoint import decode_checkpoint_data, read_checkpoint_json


def load_sb3_agent(path: str | pathlib.Path | io.BufferedIOBase, env: VecEnv, device: th.device | str = "auto") -> SAC | TD3:
    """
    Load a SAC or TD3 checkpoint for use with ``env``, including checkpoints saved with the retired ``gym`` package
    (older RL Zoo agents), without running code from the file: the saved spaces are never unpickled, but their
    recorded shapes are checked against the environment's, which are then used; the other pickled entries are
    decoded by the allow-listed unpickler of ``sb3_qsm.common.safe_pickle``, and the weights read as tensors only.
    The replay buffer is allocated with one transition.

    :param path: The checkpoint (``.zip``)
    :param env: The environment the agent will act in
    :param device: Device to load the networks on
    :return: The loaded agent
    :raises ValueError: naming the file and the problem: unreadable or corrupt file, an algorithm other than SAC or
        TD3 (DDPG, a TD3 variant, is read as TD3), or spaces that differ from the environment's
    """
    data = read_checkpoint_json(path)
    algo = _algorithm_of(data, path)
    _check_saved_space(data.get("observation_space"), env.observation_space, "observation", path)
    _check_saved_space(data.get("action_space"), env.action_space, "action", path)
    replaced = {"observation_space": env.observation_space, "action_space": env.action_space, "learning_rate": 0.0}
    # Every other entry decoded without running code from the file, and handed to SB3's load, which then unpickles
    # nothing (lr_schedule is rebuilt from learning_rate)
    custom_objects, _ = decode_checkpoint_data(data, path, custom_objects=replaced)
    custom_objects["lr_schedule"] = None
    return algo.load(path, device=device, custom_objects=custom_objects, buffer_size=1, optimize_memory_usage=False)


def _algorithm_of(data: dict[str, Any], path: object) -> type[SAC] | type[TD3]:
    """
    :param data: The checkpoint's parsed ``data`` entry
    :param path: The checkpoint, for the messages
    :return: ``SAC`` or ``TD3``, from the saved policy class
    :raises ValueError: for any other algorithm
    """
    policy_class = data.get("policy_class") or {}
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    if module.startswith("stable_baselines3.sac"):
        algo: type[SAC] | type[TD3] = SAC
    elif module.startswith("stable_baselines3.td3"):
        algo = TD3
    else:
        raise ValueError(
            f"Cannot convert {path} to QSM: it holds a model whose policy comes from {module or 'an unknown module'}; "
            "only Stable-Baselines3 SAC and TD3 agents (continuous actions, ContinuousCritic) can be carried over"
        )
    return algo


def _check_saved_space(saved: Any, space: spaces.Space, kind: str, path: object) -> None:
    """
    Compare the shape recorded next to a pickled space with the environment's space.

    :param saved: The checkpoint's JSON entry for the space
    :param space: The environment's space
    :param kind: ``"observation"`` or ``"action"``, for the message
    :param path: The checkpoint, for the message
    :raises ValueError: if the shapes or the kinds of space differ
    """
    if not isinstance(saved, dict):
        return
    saved_type = str(saved.get(":type:", ""))
    if type(space).__name__ not in saved_type:
        raise ValueError(
            f"Cannot convert {path} to QSM: it was trained with a {kind} space of type {saved_type}, the environment's "
            f"is {type(space).__name__}"
        )
    shape = saved.get("shape", saved.get("_shape"))
    if shape is None:
        return
    saved_shape = tuple(ast.literal_eval(shape)) if isinstance(shape, str) else tuple(shape)
    if saved_shape != space.shape:
        raise ValueError(
            f"Cannot convert {path} to QSM: it was trained with {kind}s of shape {saved_shape}, the environment's "
            f"{kind} space has shape {space.shape}"
        )
