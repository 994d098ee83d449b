"""Projection and prediction heads."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, *, num_layers: int = 3) -> nn.Sequential:
    """Linear → (BN → ReLU → Linear) × (num_layers − 1): the SimCLR / BYOL / VICReg heads.

    Batch norm and ReLU on every hidden layer, none on the output (ViDiDi App. B.2; BOLD-DI §5.1:
    3 layers, hidden 2048, for SimCLR / MoCo / SwAV; 2 layers, hidden 4096, for BYOL).

    Args:
        in_dim: input width (the backbone's `embed_dim`).
        hidden_dim: width of the hidden layers.
        out_dim: output width.
        num_layers: linear layers (≥ 1; 1 is a single linear map).

    Returns:
        The head: (B, in_dim) → (B, out_dim).

    Example:
        >>> head = mlp(512, 2048, 128, num_layers=3)   # (B, 512) → (B, 128)
    """
    if num_layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {num_layers}")
    if num_layers == 1:
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (num_layers - 1)
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)
