"""
The floating-point work of a training step, counted from its matrix products, and the rate this machine reaches on
the same products alone: how far an algorithm's step sits from what the hardware allows.

The work is counted as ``torch.utils.flop_counter`` counts it, two operations per multiply-add of every matrix product
(linear layers, forward and backward), and nothing for the element-wise operations, which cost memory traffic rather
than arithmetic. The products are recorded while the model runs one gradient step (or the ``policy_delay`` steps of
one actor update, averaged) and acts once on one observation, with their shapes; the reference then times each shape
on its own, on both of PyTorch's CPU kernels (``torch.mm``, MKL, and oneDNN's, see ``sb3_qsm.common.linear``) or
``torch.mm`` alone on other devices, and keeps the faster.
"""

import dataclasses
import functools
import statistics
import time
from collections import Counter
from typing import Any

import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from torch.utils._python_dispatch import TorchDispatchMode

from sb3_qsm.common.linear import onednn_available

# A matrix product: rows, inner size, columns (``(M, K) @ (K, N)``)
Product = tuple[int, int, int]


class ProductRecorder(TorchDispatchMode):
    """Records the shape of every matrix product that runs under it (``mm``, ``addmm``, ``bmm`` and oneDNN's linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        packet = func._overloadpacket
        if packet in (th.ops.aten.mm, th.ops.aten.addmm):
            first, second = (args[0], args[1]) if packet is th.ops.aten.mm else (args[1], args[2])
            self.products.append((first.shape[0], first.shape[1], second.shape[1]))
        elif packet in (th.ops.aten.bmm, th.ops.aten.baddbmm):
            first, second = (args[0], args[1]) if packet is th.ops.aten.bmm else (args[1], args[2])
            self.products += [(first.shape[1], first.shape[2], second.shape[2])] * first.shape[0]
        elif packet is th.ops.mkldnn._linear_pointwise:
            input, weight = args[0], args[1]
            self.products.append((input.numel() // input.shape[-1], input.shape[-1], weight.shape[0]))
        return func(*args, **(kwargs or {}))


@dataclasses.dataclass(frozen=True)
class StepWork:
    """
    The matrix products of one environment step of training: acting on one observation, and one gradient step. An
    algorithm that updates its actor every ``policy_delay`` gradient steps (TD3, QSM) is recorded over that many, and
    its step counts their average.
    """

    training_products: tuple[Product, ...]
    acting_products: tuple[Product, ...]
    gradient_steps: int = 1

    @property
    def flops(self) -> float:
        """Floating-point operations: two per multiply-add"""
        return _flops(self.training_products) / self.gradient_steps + _flops(self.acting_products)

    @property
    def products(self) -> float:
        """The number of products"""
        return len(self.training_products) / self.gradient_steps + len(self.acting_products)


def _flops(products: tuple[Product, ...]) -> int:
    return sum(2 * m * k * n for m, k, n in products)


def training_step_work(model: OffPolicyAlgorithm) -> StepWork:
    """
    Record the products of the gradient steps of one actor update cycle (``policy_delay`` steps, or one), on batches
    from the model's replay buffer, which must hold one, and of acting on one observation. The steps change the model's
    weights, as training does.

    :param model: The model
    :return: The products
    """
    observation = model.observation_space.sample()
    gradient_steps = int(getattr(model, "policy_delay", 1))
    with ProductRecorder() as training:
        model.train(gradient_steps=gradient_steps, batch_size=model.batch_size)
    with ProductRecorder() as acting:
        model.predict(observation, deterministic=False)
    return StepWork(tuple(training.products), tuple(acting.products), gradient_steps)


def matmul_seconds(products: tuple[Product, ...], device: th.device, repeats: int = 20) -> float:
    """
    The time the products take on their own: each distinct shape timed (median of ``repeats`` runs) on each kernel
    at hand, the faster kept, times the number of products of that shape.

    :param products: The products
    :param device: The device to time them on
    :param repeats: Timed runs per shape and kernel
    :return: Seconds for all of them
    """
    total = 0.0
    for (m, k, n), count in Counter(products).items():
        left, right = th.randn(m, k, device=device), th.randn(k, n, device=device)
        kernels = [functools.partial(th.mm, left, right)]
        if device.type == "cpu" and onednn_available():
            onednn = th.ops.mkldnn._linear_pointwise
            kernels.append(functools.partial(onednn, left, right.t().contiguous(), None, "none", [], ""))
        total += count * min(median_seconds(kernel, repeats, device) for kernel in kernels)
    return total


def median_seconds(function: Any, repeats: int, device: th.device | None = None) -> float:
    """
    :param function: What to time (no arguments)
    :param repeats: Timed calls, after a few untimed ones
    :param device: A CUDA device to synchronise around each call, if any
    :return: The median time of a call, in seconds
    """
    device = device or th.device("cpu")
    for _ in range(10):  # warm-up
        function()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            th.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            th.cuda.synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def work_figures(model: OffPolicyAlgorithm, steps_per_second: float) -> dict[str, Any]:
    """
    :param model: A model that has been trained (its replay buffer holds a batch)
    :param steps_per_second: The environment steps per second it trained at
    :return: The floating-point work of a step of training, the rate achieved, and the rate of the same products alone
    """
    work = training_step_work(model)
    training_seconds = matmul_seconds(work.training_products, model.device)
    seconds = training_seconds / work.gradient_steps + matmul_seconds(work.acting_products, model.device)
    return {
        "step_gflop": work.flops / 1e9,
        "achieved_gflops": work.flops * steps_per_second / 1e9,
        "matmul_gflops": work.flops / seconds / 1e9,
        "matmul_ms_per_step": seconds * 1e3,
        "products_per_step": work.products,
    }
