"""SCANN and SCANN+ (thesis chapter 4, SPEC §6) on padded batches.

Shapes: B structures, M atoms (padded), K Voronoi neighbours (padded), h width, H heads.
Equation numbers refer to the thesis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .voronoi import MAX_Z

_NEG = -1e9  # finite "minus infinity" for masked softmax (no NaN for atoms without neighbours)


@dataclass
class ScannConfig:
    """Architecture of a SCANN model (defaults: the paper's QM9 setting, < 1 M parameters)."""

    variant: str = "scann+"  # "scann" or "scann+"
    width: int = 128  # h
    n_layers: int = 8  # L local attention layers
    n_heads: int = 8
    z_embedding: int = 48  # v
    n_gaussians: int = 20  # k
    distance_max: float = 4.0  # Å, centres of the distance Gaussians on [0, distance_max]
    angle_max: float = 2 * math.pi  # sr, centres of the solid-angle Gaussians on [0, angle_max]
    gaussian_width: float = 0.5  # exp(-(x - mu)^2 / width^2)
    dropout: float = 0.1
    readout: int = 128
    n_targets: int = 1
    max_z: int = MAX_Z
    target_names: list[str] = field(default_factory=lambda: ["y"])

    def __post_init__(self):
        if self.variant not in ("scann", "scann+"):
            raise ConfigError(f"variant must be 'scann' or 'scann+', got {self.variant!r}")
        if self.width % self.n_heads:
            raise ConfigError(f"width {self.width} is not divisible by n_heads {self.n_heads}")
        if self.n_layers < 1:
            raise ConfigError("n_layers must be >= 1")


class ScannOutput(NamedTuple):
    prediction: torch.Tensor  # (B, T) in target units
    ga_scores: torch.Tensor  # (B, M), softmax over the real atoms of each structure, 0 on padding
    local_attention: list[torch.Tensor] | None  # L x (B, M, K, H), 0 on padded neighbours
    atom_features: torch.Tensor | None = None  # (B, M, h) atom vectors after the last local layer


class GaussianExpansion(nn.Module):
    """phi_k(x) = exp(-(x - mu_k)^2 / width^2), ``n`` centres evenly on [0, stop]; (...) -> (..., n)."""

    def __init__(self, stop: float, n: int, width: float):
        super().__init__()
        self.register_buffer("mu", torch.linspace(0.0, stop, n))
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((x[..., None] - self.mu) ** 2) / self.width ** 2)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` restricted to ``mask``; exactly 0 where masked (rows without any entry: 0)."""
    a = torch.softmax(scores.masked_fill(~mask, _NEG), dim=dim)
    return a * mask


class LocalAttention(nn.Module):
    """One local attention layer, Eqs. 4.4–4.6 (and the SCANN+ geometry update, Eq. 4.14).

    q_i = W_q c_i,  k_ij = W_k (c_j * g_ij),  a_ij = softmax_j(q_i . k_ij / sqrt(d_head)) per head,
    c_i <- LN(q_i + sum_j a_ij k_ij),  c_i <- LN(c_i + swish(F_n c_i)),
    SCANN+: g_ij <- LN(g_ij + swish(F_g [c_i ; g_ij ; c_j]))  (with the layer's input c).

    Atoms are flat slots (B*M, h); neighbour pairs an edge list (E,) so that no work is spent on
    padding; the softmax over each atom's neighbours runs on the padded (B*M, K) view.
    """

    def __init__(self, width: int, n_heads: int, dropout: float, update_geometry: bool):
        super().__init__()
        self.n_heads, self.d_head = n_heads, width // n_heads
        self.W_q = nn.Linear(width, width)
        self.W_k = nn.Linear(width, width)
        self.F_n = nn.Linear(width, width)
        self.norm_attention = nn.LayerNorm(width)
        self.norm_feedforward = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = nn.Dropout(dropout)
        self.F_g = nn.Linear(3 * width, width) if update_geometry else None
        self.norm_geometry = nn.LayerNorm(width) if update_geometry else None

    def forward(self, c: torch.Tensor, g: torch.Tensor, edges: dict, n_slots: int):
        """c (A, h) flat atoms, g (E, h) -> c' (A, h), g' (E, h), attention (E, H).

        ``edges``: ``center``/``neighbor`` (E,) atom slots, ``slot`` (E,) index into (A * K,),
        ``K`` the padded neighbour count; ``n_slots`` = A * K.
        """
        A, h = c.shape
        H, dh = self.n_heads, self.d_head
        ci, cj = edges["center"], edges["neighbor"]
        q = self.W_q(c)  # (A, h)
        k = self.W_k(c[cj] * g).view(-1, H, dh)  # (E, H, dh); keys are reused as values
        s = (q[ci].view(-1, H, dh) * k).sum(-1) / math.sqrt(dh)  # (E, H)
        padded = s.new_full((n_slots, H), _NEG).index_copy(0, edges["slot"], s)
        a = torch.softmax(padded.view(A, -1, H), dim=1).view(n_slots, H)[edges["slot"]]  # (E, H)
        context = torch.zeros(A, H, dh, dtype=c.dtype, device=c.device).index_add_(
            0, ci, self.attention_dropout(a)[..., None] * k)
        c_new = self.norm_attention(q + self.dropout(context.view(A, h)))
        c_new = self.norm_feedforward(c_new + self.dropout(F.silu(self.F_n(c_new))))
        if self.F_g is not None:  # F_g[c_i; g; c_j] = W_i c_i + W_g g + W_j c_j + b, atom terms per atom
            W_i, W_g, W_j = self.F_g.weight.split(h, dim=1)
            atom_i, atom_j = c @ W_i.T, c @ W_j.T
            g = self.norm_geometry(g + F.silu(atom_i[ci] + F.linear(g, W_g, self.F_g.bias) + atom_j[cj]))
        return c_new, g, a


class GlobalAttention(nn.Module):
    """Global attention, Eqs. 4.7–4.10.

    Q = W_Q C, K = W_K C;  s_i = sum_{j != i} q_j . k_i;  s <- s / ||s||_2;
    alpha = softmax(s) over the atoms of the structure;  x = sum_i alpha_i k_i.
    """

    def __init__(self, width: int, eps: float = 1e-8):
        super().__init__()
        self.W_Q = nn.Linear(width, width, bias=False)
        self.W_K = nn.Linear(width, width, bias=False)
        self.eps = eps

    def forward(self, c: torch.Tensor, atom_mask: torch.Tensor):
        """c (B, M, h), atom_mask (B, M) -> x (B, h), alpha (B, M)."""
        m = atom_mask.to(c.dtype)[..., None]
        Q, Kg = self.W_Q(c) * m, self.W_K(c) * m
        s = ((Q.sum(dim=1, keepdim=True) - Q) * Kg).sum(-1)  # (B, M): sum over j != i of q_j . k_i
        s = s / (s.norm(dim=1, keepdim=True) + self.eps)
        alpha = masked_softmax(s, atom_mask, dim=1)
        x = torch.einsum("bm,bmh->bh", alpha, Kg)
        return x, alpha


class SCANN(nn.Module):
    """SCANN / SCANN+ structure -> property model with per-atom global-attention scores.

    Predictions are in target units: ``y = mean + std * F_S(x)``, with the target statistics
    stored as buffers (set by the trainer), so a checkpoint is self-contained.
    """

    def __init__(self, config: ScannConfig):
        super().__init__()
        self.config = cfg = config
        h = cfg.width
        self.atom_embedding = nn.Embedding(cfg.max_z + 1, cfg.z_embedding, padding_idx=0)  # e_i
        self.F_e = nn.Linear(cfg.z_embedding, h)  # c_i^0 = swish(F_e e_i)
        self.distance_expansion = GaussianExpansion(cfg.distance_max, cfg.n_gaussians, cfg.gaussian_width)
        self.F_d = nn.Linear(cfg.n_gaussians, h)  # DE(d), Eq. 4.2
        self.plus = cfg.variant == "scann+"
        if self.plus:
            self.angle_expansion = GaussianExpansion(cfg.angle_max, cfg.n_gaussians, cfg.gaussian_width)
            self.F_a = nn.Linear(cfg.n_gaussians, h)  # AE(Omega), Eq. 4.13
        self.layers = nn.ModuleList(
            LocalAttention(h, cfg.n_heads, cfg.dropout, update_geometry=self.plus and l < cfg.n_layers - 1)
            for l in range(cfg.n_layers)
        )
        self.global_attention = GlobalAttention(h)
        self.F_S = nn.Sequential(nn.Linear(h, cfg.readout), nn.SiLU(), nn.Linear(cfg.readout, cfg.n_targets))
        self.register_buffer("target_mean", torch.zeros(cfg.n_targets))
        self.register_buffer("target_std", torch.ones(cfg.n_targets))
        self._init_weights()

    def _init_weights(self):
        for mod in self.modules():  # Glorot uniform weights, zero biases (thesis §4.3.5)
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)

    def geometry(self, batch: dict) -> torch.Tensor:
        """g_ij^0 (E, h): SCANN Eq. 4.3 DE(d) * Omega/max Omega; SCANN+ Eq. 4.12 DE(d) * AE(Omega)."""
        de = F.silu(self.F_d(self.distance_expansion(batch["distance"])))
        if self.plus:
            return de * F.silu(self.F_a(self.angle_expansion(batch["solid_angle"])))
        return de * batch["solid_angle_ratio"][:, None]

    def forward(self, batch: dict, return_local_attention: bool = False) -> ScannOutput:
        """``batch`` from :func:`napari_cxdi.scann.batching.collate`.

        Returns predictions (B, T) in target units, GA scores (B, M) and, if asked, the local
        attention weights of every layer as (B, M, K, H) (0 on padded neighbours).
        """
        atom_mask = batch["atom_mask"]
        B, M = atom_mask.shape
        K = batch["neighbor_mask"].shape[2]
        edges = {"center": batch["edge_center"], "neighbor": batch["edge_neighbor"], "slot": batch["edge_slot"]}
        flat_mask = atom_mask.reshape(B * M, 1)
        c = F.silu(self.F_e(self.atom_embedding(batch["z"].reshape(B * M)))) * flat_mask  # c_i^0
        g = self.geometry(batch)
        attentions = []
        for layer in self.layers:
            c, g, a = layer(c, g, edges, B * M * K)
            c = c * flat_mask
            if return_local_attention:
                full = a.new_zeros(B * M * K, a.shape[1]).index_copy(0, edges["slot"], a)
                attentions.append(full.view(B, M, K, -1))
        x, alpha = self.global_attention(c.view(B, M, -1), atom_mask)
        y = self.target_mean + self.target_std * self.F_S(x)
        return ScannOutput(y, alpha, attentions if return_local_attention else None, c.view(B, M, -1))

    def standardized(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(config: ScannConfig | dict) -> SCANN:
    """A fresh SCANN model from a config (dataclass or dict, as stored in checkpoints)."""
    if isinstance(config, dict):
        known = {k: v for k, v in config.items() if k in ScannConfig.__dataclass_fields__}
        config = ScannConfig(**known)
    return SCANN(config)


def config_dict(config: ScannConfig) -> dict:
    return asdict(config)
