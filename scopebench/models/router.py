"""SCOPE's router and its training losses.

The router lets the text prompt's token embeddings (queries) attend over the shared
encoder's visual tokens (keys / values), pools the result over the prompt, and emits one
logit per routed encoder. At inference the top-1 (or top-k) encoder is chosen per
image-text pair; during training the choice is made differentiable (soft mixture or
straight-through top-1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scopebench.config import RouterConfig


class CrossAttentionRouter(nn.Module):
    """Text-queries-over-visual-tokens cross-attention, pooled to one logit per routed encoder."""

    def __init__(self, cfg: RouterConfig, text_dim: int, visual_dim: int, num_encoders: int):
        super().__init__()
        self.cfg = cfg
        self.q = nn.Linear(text_dim, cfg.dim)
        self.kv_norm = nn.LayerNorm(visual_dim)
        self.attn = nn.MultiheadAttention(
            cfg.dim, cfg.heads, dropout=cfg.dropout, kdim=visual_dim, vdim=visual_dim, batch_first=True
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, num_encoders)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """text (B, T, D_text), text_mask (B, T) with 1 for real tokens, visual (B, N, C) -> logits (B, E)."""
        kv = self.kv_norm(visual)
        out, _ = self.attn(self.q(text), kv, kv, need_weights=False)
        mask = text_mask.to(out.dtype).unsqueeze(-1)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(self.norm(pooled)) / self.cfg.temperature


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats (0 log 0 = 0)."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


def dual_entropy_loss(probs: torch.Tensor, batch_weight: float, sample_weight: float) -> torch.Tensor:
    """-w_b * H(mean_b p_b) + w_s * mean_b H(p_b): balanced across the batch, confident per sample."""
    return -batch_weight * entropy(probs.mean(0)) + sample_weight * entropy(probs).mean()


def load_balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer auxiliary loss E * sum_e f_e * P_e (1 when balanced, E when collapsed)."""
    num = probs.shape[-1]
    dispatch = F.one_hot(probs.argmax(-1), num).to(probs.dtype).mean(0)
    return num * (dispatch * probs.mean(0)).sum()


def router_losses(probs: torch.Tensor, cfg: RouterConfig) -> dict[str, torch.Tensor]:
    """All router regularisers, weighted, plus their unweighted parts for logging."""
    dual = dual_entropy_loss(probs, cfg.batch_entropy_weight, cfg.sample_entropy_weight)
    lb = load_balance_loss(probs)
    return {
        "router_loss": dual + cfg.load_balance_weight * lb,
        "batch_entropy": entropy(probs.mean(0)).detach() / math.log(probs.shape[-1]),
        "sample_entropy": entropy(probs).mean().detach(),
        "load_balance": lb.detach(),
    }
