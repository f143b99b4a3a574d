"""Batch norm, MLPs and losses over the real rows of a padded batch (``data.static_shapes``).

A padded batch (:mod:`optimate_pl.data.padding`) carries rows that are not materials. Batch norm in
training mode takes its mean and variance over all rows, so pad rows would change every real output and
the running statistics. :func:`masked_mlp` runs a PyG ``MLP`` with its batch norms taking the statistics
over the ``mask``-ed rows only (the same numbers as the unpadded batch, tested), using tensor ops only:
no count is read on the host. Written by hand because neither torch nor PyG has a masked batch norm
(PyG's ``MLP`` passes no mask to its norms).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_batch_norm(bn: nn.BatchNorm1d, x: Tensor, mask: Tensor) -> Tensor:
    """``bn(x)`` with the training-mode statistics over the rows where ``mask`` is true.

    In training mode the batch's biased variance normalises and the running statistics move by
    ``bn.momentum`` towards the mean and the unbiased variance, as ``torch.nn.BatchNorm1d`` does; in
    evaluation mode the running statistics are used and ``mask`` changes nothing.
    """
    if not bn.training and bn.track_running_stats:
        return bn(x)
    w = mask.to(torch.float32).unsqueeze(1)
    x32 = x.float()
    n = w.sum()
    mean = (x32 * w).sum(0) / n
    var = ((x32 - mean).square() * w).sum(0) / n
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked.float()
            bn.running_mean.lerp_(mean.detach(), momentum)
            bn.running_var.lerp_(var.detach() * n / (n - 1), momentum)
    out = (x32 - mean) * torch.rsqrt(var + bn.eps)
    if bn.affine:
        out = out * bn.weight + bn.bias
    return out.to(x.dtype)


def _masked_norm(norm: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    bn = getattr(norm, "module", norm)  # PyG's BatchNorm wraps torch's as .module
    if isinstance(bn, nn.BatchNorm1d):
        return masked_batch_norm(bn, x, mask)
    return norm(x)  # identity or a per-row norm (layer norm): pad rows cannot reach the real ones


def masked_mlp(mlp: nn.Module, x: Tensor, mask: Tensor | None) -> Tensor:
    """``mlp(x)`` for a PyG ``MLP``, its batch norms over the rows where ``mask`` is true (``None``: all rows,
    the plain call). Follows ``torch_geometric.nn.MLP.forward`` (norm between linear and activation, or after
    the activation when ``act_first``; dropout after each layer; ``plain_last``)."""
    if mask is None:
        return mlp(x)
    for i, (lin, norm) in enumerate(zip(mlp.lins, mlp.norms)):
        x = lin(x)
        if mlp.act is not None and mlp.act_first:
            x = mlp.act(x)
        x = _masked_norm(norm, x, mask)
        if mlp.act is not None and not mlp.act_first:
            x = mlp.act(x)
        x = F.dropout(x, p=mlp.dropout[i], training=mlp.training)
    if mlp.plain_last:
        x = mlp.lins[-1](x)
        x = F.dropout(x, p=mlp.dropout[-1], training=mlp.training)
    return x


def masked_loss(loss, pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """``loss(pred, target)`` (a mean-reduced elementwise loss: L1, MSE) over the rows where ``mask`` is true.

    Pad rows are zeroed in both arguments, so they add 0 to the sum (for 0/1 weights ``|w p - w y| =
    w |p - y|``), and the sum is divided by the real element count, a device tensor (no host read).
    """
    if mask is None:
        return loss(pred, target)
    w = mask.to(pred.dtype).view(-1, *([1] * (pred.dim() - 1)))
    total = loss(pred * w, target * w, reduction="sum")
    return total / (w.sum() * pred[0].numel())
