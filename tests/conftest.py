"""Shared fixtures: small networks and short runs, so that the default suite stays fast on a CPU."""

from typing import Any

import pytest

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
