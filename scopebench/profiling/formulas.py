"""Multiply-accumulate (MAC) counts of the matmul-class ops, from tensor shapes.

Both counters use these: fvcore (jit-trace op handles) and torch's FlopCounterMode
(dispatch-level formulas, which count FLOPs = 2 x MACs). Convention: an attention op costs
its two matmuls, Q K^T and A V, over the full Lq x Lk score matrix (causal masks included,
as the kernels compute it), with grouped-query K/V broadcast to the query heads:
MACs = B * H_q * Lq * Lk * (D_qk + D_v).
"""

from __future__ import annotations

from collections.abc import Sequence


def prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def attention_macs(q: Sequence[int], k: Sequence[int], v: Sequence[int]) -> int:
    """Q (..., H_q, Lq, D) x K (..., H_kv, Lk, D) and A x V (..., H_kv, Lk, Dv)."""
    return prod(q[:-1]) * int(k[-2]) * (int(q[-1]) + int(v[-1]))


def matmul_macs(a: Sequence[int], out: Sequence[int]) -> int:
    """Any (broadcast) matmul: every output element is a dot product over a's last dim."""
    return prod(out) * int(a[-1])


def conv_macs(weight: Sequence[int], out: Sequence[int]) -> int:
    """Convolution: each output element sums C_in/groups x kernel products."""
    return prod(out) * prod(weight[1:])


def mha_macs(query: Sequence[int], key: Sequence[int], embed_dim: int) -> int:
    """torch's fused nn.MultiheadAttention (batch first): q/k/v/out projections plus attention."""
    e = int(embed_dim)
    q_rows, k_rows = prod(query[:-1]), prod(key[:-1])
    return 2 * q_rows * e * e + 2 * k_rows * e * e + q_rows * int(key[-2]) * 2 * e
