"""What exporting video models needs (``ctcrnn export``): a trace-safe forward for :class:`CSLRFrontend`.

Tracing (both ONNX and TorchScript export) keeps tensor shapes symbolic but freezes any number read out of
a tensor's values. :meth:`CSLRFrontend.forward` sizes VAC's edge-padded batch from ``lengths.max()`` (a
value), so a traced graph would keep the example's length for ever. The forward below sizes it from the
input's time axis instead: 4 * ceil(T / 4) + 12 frames, which is the same when the batch is padded to its
longest clip (as :func:`ctcrnn.data.collate` pads it); a batch padded beyond its longest clip just gets
more output frames past every ``out_lengths``. Registered with :mod:`ctcrnn.export`; imported by
``ctcrnn/__init__``.
"""
from __future__ import annotations

import torch

from ..export import ExportError, register_traceable_forward
from ..nn.masking import masked, valid_mask, zero_padding
from .frontends import CSLRFrontend


@register_traceable_forward(CSLRFrontend)
def cslr_traceable_forward(self: CSLRFrontend, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """:meth:`CSLRFrontend.forward` with the edge-padded length taken from ``x``'s time axis."""
    if not self.edge_padding:
        raise ExportError("CSLRFrontend(edge_padding=False) pads short batches by their values and cannot be "
                          "traced with a dynamic time axis; export a model with edge_padding=True")
    lengths = lengths.to(x.device)
    batch, steps = x.shape[:2]
    valid = valid_mask(lengths, steps)                                                       # (B, T)
    features = self.trunk(x[valid])                                                          # (N_valid, D)
    frames = features.new_zeros(batch, steps, self.trunk_dim)
    frames[valid] = features
    # Frame p of the padded clip is frame p - 6 of the clip, clamped to its first and last frames; the
    # padded batch length comes from the time axis (a shape, kept symbolic), not from lengths.max() (a value).
    padded_steps = self.padded_lengths(torch._shape_as_tensor(x)[1])
    index = torch.arange(padded_steps, device=x.device)[None, :] - self.edge_left
    index = torch.minimum(index.clamp(min=0), (lengths[:, None] - 1).clamp(min=0))          # (B, T_padded)
    frames = frames.gather(1, index[..., None].expand(-1, -1, self.trunk_dim))
    lengths = self.padded_lengths(lengths)
    out = zero_padding(frames.transpose(1, 2), lengths, time_dim=2)                         # (B, D, T_padded >= 16)
    for layer in self.temporal:
        lengths = lengths - 4
        out = masked(layer, out, lengths, time_dim=2)
        lengths = torch.div(lengths, 2, rounding_mode="floor")
        out = zero_padding(self.pool(out), lengths, time_dim=2)
    return out.transpose(1, 2)
