"""
The quantile Huber loss of TQC's critics (Dabney et al., AAAI 2018; Kuznetsov et al., ICML 2020), the value of
sb3-contrib's ``quantile_huber_loss`` with ``sum_over_quantiles=False``, with its gradient written out.

The loss compares every current quantile with every target quantile, so each training step builds tensors of
``batch * n_critics * n_quantiles * n_target_quantiles`` elements (about 590,000 with TQC's 2 networks of 25
quantiles). Autograd through sb3-contrib's version keeps several of them for the backward pass and walks them again;
here the forward pass reduces them to the gradient, ``-sum_j |tau_i - 1{delta_ij < 0}| clamp(delta_ij, -1, 1)``
over the number of pairs for current quantile ``i`` (``delta_ij`` its error against target quantile ``j``), and the
backward pass only scales it. On one CPU thread that makes the loss several times cheaper, and the critics' step
with it.
"""

import torch as th


class _QuantileHuberLoss(th.autograd.Function):
    """``quantile_huber_loss``'s forward pass, and its backward pass from the gradient the forward pass saved."""

    @staticmethod
    def forward(ctx: th.autograd.function.FunctionCtx, current_quantiles: th.Tensor, target_quantiles: th.Tensor) -> th.Tensor:  # type: ignore[override]
        n_quantiles = current_quantiles.shape[-1]
        cum_prob = (th.arange(n_quantiles, device=current_quantiles.device, dtype=current_quantiles.dtype) + 0.5) / n_quantiles
        # (batch, n_critics, n_quantiles, n_target_quantiles)
        delta = target_quantiles[:, None, None, :] - current_quantiles.unsqueeze(-1)
        clipped = delta.clamp(-1.0, 1.0)
        # |tau - 1{delta < 0}| * clipped = tau * clipped + (1 - 2 tau) * min(clipped, 0): the Huber loss's derivative,
        # weighted
        cum_prob = cum_prob.unsqueeze(-1)
        weighted = (clipped * cum_prob).addcmul_(delta.clamp(-1.0, 0.0), 1.0 - 2.0 * cum_prob)
        # The Huber loss is clipped * (delta - clipped / 2): delta^2 / 2 within [-1, 1], |delta| - 1/2 beyond
        huber_factor = delta.add_(clipped, alpha=-0.5)
        n_terms = huber_factor.numel()
        ctx.save_for_backward(weighted.sum(dim=-1).div_(-n_terms))
        return th.dot(weighted.reshape(-1), huber_factor.reshape(-1)) / n_terms

    @staticmethod
    def backward(ctx: th.autograd.function.FunctionCtx, grad_output: th.Tensor) -> tuple[th.Tensor, None]:  # type: ignore[override]
        (gradient,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad_output * gradient, None


def quantile_huber_loss(current_quantiles: th.Tensor, target_quantiles: th.Tensor) -> th.Tensor:
    """
    The quantile Huber loss (threshold 1) of every critic network's quantiles against the target quantiles, averaged
    over all pairs of them and over the batch, as ``sb3_contrib.common.utils.quantile_huber_loss`` with
    ``sum_over_quantiles=False`` computes it. The target gets no gradient.

    :param current_quantiles: The critics' quantiles at ``(s, a)``, shape ``(batch, n_critics, n_quantiles)``
    :param target_quantiles: The target quantiles, shape ``(batch, n_target_quantiles)``
    :return: The loss, a scalar
    """
    if current_quantiles.ndim != 3 or target_quantiles.ndim != 2 or current_quantiles.shape[0] != target_quantiles.shape[0]:
        raise ValueError(
            "quantile_huber_loss expects current_quantiles of shape (batch, n_critics, n_quantiles) and "
            f"target_quantiles of shape (batch, n_target_quantiles), got {tuple(current_quantiles.shape)} and "
            f"{tuple(target_quantiles.shape)}"
        )
    return _QuantileHuberLoss.apply(current_quantiles, target_quantiles.detach())
