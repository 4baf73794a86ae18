"""
Linear layers on the faster of the CPU's two matrix-multiply libraries, with the activation fused where it can be.

PyTorch multiplies float32 matrices on the CPU with Intel's MKL. On processors that MKL does not recognise as its
own (AMD's among them) MKL runs a generic code path, without AVX-512; the oneDNN library that PyTorch also ships
picks its kernels from the instruction set alone, and on such processors multiplies the large matrices of a training
step (a batch of 256 through a 256x256 layer, or the candidate actions of the posterior target) about twice as fast.
oneDNN also applies an activation to the product as it writes it, which saves a pass over a tensor of several
megabytes. Small products (a single observation when acting, a six-dimensional action through a layer) cost less on
MKL, whose fixed cost per call is lower.

``linear`` therefore sends the float32 products of at least ``ONEDNN_MIN_WORK`` multiply-adds on an x86-64 CPU to
oneDNN, with a backward pass of its own (the input and weight gradients, each one oneDNN product), and everything else
(small products, other dtypes, other devices and processors, ``torch.backends.mkldnn`` disabled) to
``torch.nn.functional.linear``.
Both compute the same product in float32; only the order of the additions, and so the last bits, differ.
"""

import itertools
import platform
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import torch as th
from torch import nn
from torch.nn import functional as F

# Products with at least this many multiply-adds (rows x inputs x outputs) go to oneDNN. Below it, MKL's lower
# fixed cost per call wins (measured on an AMD EPYC: 256x6x256 is faster on MKL, 256x17x256 on oneDNN).
ONEDNN_MIN_WORK = 1 << 20
# Activations oneDNN can apply to the product, by the name of its post-operation. ReLU keeps its gradient (its
# output tells where it passes the gradient through); the others are fused only where no gradient is needed.
FUSED_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.SiLU: "swish", nn.Tanh: "tanh"}
# A layer of an MLP as ``apply_mlp`` runs it: a module (or any function of its input), or a linear layer given as its
# weight and bias
Layer: TypeAlias = Callable[[th.Tensor], th.Tensor] | tuple[th.Tensor, th.Tensor | None]
_PLAIN_ACTIVATIONS: dict[str, Callable[[th.Tensor], th.Tensor]] = {
    "relu": F.relu,
    "swish": F.silu,
    "tanh": th.tanh,
}


def onednn_available() -> bool:
    """
    :return: Whether this is an x86-64 processor, this PyTorch build has oneDNN's linear kernel, oneDNN is
        enabled (``torch.backends.mkldnn.enabled``; read outside compiled code only), and no model is being exported
        (``torch.export``, ONNX, TorchScript tracing), whose graphs must hold standard operators
    """
    if not _ONEDNN_BUILT or th.compiler.is_exporting() or th.jit.is_tracing():
        return False
    return th.compiler.is_compiling() or bool(th.backends.mkldnn.enabled)


# oneDNN's x86-64 kernels are the ones measured; on other processors (Arm's) every product stays with torch
_ONEDNN_BUILT = (
    platform.machine().lower() in ("x86_64", "amd64")
    and hasattr(th.ops.mkldnn, "_linear_pointwise")
    and th.backends.mkldnn.is_available()
)


def _onednn_product(input: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, activation: str = "none") -> th.Tensor:
    """``activation(input @ weight.T + bias)`` with oneDNN (input of any number of leading dimensions, 2-d weight)."""
    if th.compiler.is_compiling():
        # Inductor lowers oneDNN's own operator only for the prepacked weights of its inference mode: hand it an
        # operator it calls as it is
        return onednn_linear(input, weight, bias, activation)
    return th.ops.mkldnn._linear_pointwise(input, weight, bias, activation, [], "")


@th.library.custom_op("sb3_qsm::onednn_linear", mutates_args=())
def onednn_linear(input: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, activation: str) -> th.Tensor:
    """oneDNN's ``activation(input @ weight.T + bias)`` as an operator that ``torch.compile`` leaves as it is."""
    return th.ops.mkldnn._linear_pointwise(input, weight, bias, activation, [], "")


@onednn_linear.register_fake
def _(input: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, activation: str) -> th.Tensor:
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


class _OneDNNLinear(th.autograd.Function):
    """``input @ weight.T + bias``, followed by a ReLU or not, and its gradients, each a oneDNN product."""

    @staticmethod
    def forward(input: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, relu: bool) -> th.Tensor:  # type: ignore[override]
        return _onednn_product(input, weight, bias, "relu" if relu else "none")

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: th.Tensor) -> None:
        input, weight, _, relu = inputs
        ctx.relu = relu
        ctx.save_for_backward(input, weight, output if relu else None)

    @staticmethod
    def backward(ctx: Any, grad_output: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        input, weight, output = ctx.saved_tensors
        grad_output = grad_output * (output > 0) if ctx.relu else _dense(grad_output)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = _onednn_product(grad_output, weight.t(), None)
        flat_grad = grad_output.reshape(-1, grad_output.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_weight = _onednn_product(flat_grad.t(), input.reshape(-1, input.shape[-1]).t(), None)
        if ctx.needs_input_grad[2]:
            grad_bias = flat_grad.sum(dim=0)
        return grad_input, grad_weight, grad_bias, None


def uses_onednn(input: th.Tensor, weight: th.Tensor) -> bool:
    """
    :param input: Input of a linear layer, shape ``(..., in_features)``
    :param weight: Its weight, shape ``(out_features, in_features)``
    :return: Whether ``linear`` multiplies them with oneDNN
    """
    return (
        onednn_available()
        and input.device.type == "cpu"
        and input.dtype == th.float32
        and weight.dtype == th.float32
        and input.numel() * weight.shape[0] >= ONEDNN_MIN_WORK
    )


def linear(input: th.Tensor, weight: th.Tensor, bias: th.Tensor | None = None, activation: str = "none") -> th.Tensor:
    """
    ``activation(input @ weight.T + bias)``, as ``torch.nn.functional.linear`` followed by the activation, with the
    large float32 products on the CPU done by oneDNN and the activation fused into them (see the module's
    documentation). Differentiable either way.

    :param input: Input, shape ``(..., in_features)``
    :param weight: Weight, shape ``(out_features, in_features)``
    :param bias: Bias, shape ``(out_features,)``, or None
    :param activation: ``"none"`` or one of the values of ``FUSED_ACTIVATIONS``
    :return: Output, shape ``(..., out_features)``
    """
    if uses_onednn(input, weight):
        input, weight = _dense(input), _dense(weight)
        if not _needs_grad(input, weight, bias):
            return _onednn_product(input, weight, bias, activation)
        if activation in ("none", "relu"):
            return _OneDNNLinear.apply(input, weight, bias, activation == "relu")
        return _PLAIN_ACTIVATIONS[activation](_OneDNNLinear.apply(input, weight, bias, False))
    output = F.linear(input, weight, bias)
    return output if activation == "none" else _PLAIN_ACTIVATIONS[activation](output)


def apply_mlp(layers: Iterable[Layer], input: th.Tensor) -> th.Tensor:
    """
    Run a sequence of modules (an MLP as SB3's ``create_mlp`` builds it), with every ``nn.Linear``, and every linear
    layer given as a ``(weight, bias)`` pair, through ``linear``, together with the activation module that follows it
    when that is one of ``FUSED_ACTIVATIONS``; every other module (or function) is called as it is.

    :param layers: The modules, functions and ``(weight, bias)`` pairs
    :param input: Input of the first layer
    :return: Output of the last layer
    """
    modules: Sequence[Layer] = list(layers)
    index = 0
    while index < len(modules):
        layer = modules[index]
        if not isinstance(layer, nn.Linear | tuple):
            input = layer(input)
            index += 1
            continue
        weight, bias = linear_parameters(layer)
        following = modules[index + 1] if index + 1 < len(modules) else None
        activation = FUSED_ACTIVATIONS.get(type(following), "none") if isinstance(following, nn.Module) else "none"
        input = linear(input, weight, bias, activation)
        index += 2 if activation != "none" else 1
    return input


def linear_parameters(layer: Layer) -> tuple[th.Tensor, th.Tensor | None]:
    """
    :param layer: A linear layer: an ``nn.Linear``, or a ``(weight, bias)`` pair (see ``apply_mlp``)
    :return: Its weight and bias
    :raises TypeError: if it is neither
    """
    if isinstance(layer, nn.Linear):
        return layer.weight, layer.bias
    if isinstance(layer, tuple):
        return layer
    raise TypeError(f"Expected a linear layer (nn.Linear or a (weight, bias) pair), got {type(layer).__name__}")


def skip_first(layers: nn.Sequential) -> Iterable[nn.Module]:
    """
    :param layers: A sequence of modules
    :return: Its modules after the first, without building a new ``nn.Sequential``
    """
    return itertools.islice(layers, 1, None)


def _needs_grad(*tensors: th.Tensor | None) -> bool:
    return th.is_grad_enabled() and any(tensor is not None and tensor.requires_grad for tensor in tensors)


def _dense(matrix: th.Tensor) -> th.Tensor:
    """
    ``matrix`` itself if it is contiguous or the transpose of a contiguous matrix, otherwise a contiguous copy:
    oneDNN multiplies such layouts at full speed, but builds a new kernel on every call for any other strides
    (a column slice of a weight, say), which costs hundreds of times the product.
    """
    if matrix.is_contiguous() or (matrix.dim() == 2 and matrix.t().is_contiguous()):
        return matrix
    return matrix.contiguous()
