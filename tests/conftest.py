"""Shared fixtures: small networks and short runs, so that the default suite stays fast on a CPU."""

from collections.abc import Callable
from typing import Any

import pytest
import torch as th
import yaml
from torch import nn

from sb3_qsm.zoo import default_hyperparams_file

# One torch thread per test process: `pytest -n auto` already runs one process per core, and more threads than cores
# make the small networks of the tests many times slower (one test went from 42 s to over 14 minutes on a loaded
# 2-core machine)
th.set_num_threads(1)

# Small networks and a short diffusion chain, used by every test that trains
SMALL: dict[str, Any] = dict(
    learning_starts=100,
    batch_size=32,
    buffer_size=2_000,
    n_diffusion_steps=3,
    policy_kwargs=dict(net_arch=[16], time_embed_dim=8, time_net_arch=[8]),
)


@pytest.fixture
def small_kwargs() -> dict[str, Any]:
    """Fresh copy of the small-model keyword arguments (policy_kwargs included)."""
    return {**SMALL, "policy_kwargs": dict(SMALL["policy_kwargs"])}


@pytest.fixture
def zoo_hyperparams() -> dict[str, Any]:
    """The packaged zoo hyperparameter file (``qsm.yml``), parsed: entry id -> entry."""
    with open(default_hyperparams_file()) as file:
        return yaml.safe_load(file)


@pytest.fixture
def zoo_kwargs() -> Callable[[str], Any]:
    """Evaluate a keyword-argument string of a zoo entry (``policy_kwargs``) as rl_zoo3 does: ``eval`` with torch's
    ``nn`` in scope."""
    return lambda text: eval(text, {"nn": nn})
