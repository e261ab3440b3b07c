"""Two MAC counters for one module call: fvcore (jit trace, primary) and torch's FlopCounterMode.

Counted: matmul-class ops only (linear / mm / addmm / bmm / baddbmm / matmul / einsum,
convolutions, scaled-dot-product and fused multi-head attention). Everything else that does
arithmetic (elementwise ops, normalisations, softmax, pooling, resampling) is not counted and
is listed with its call count in ``Count.uncounted``; pure shape / memory ops are not listed.

fvcore counts 0 for attention and a few conv / attention variants: handles are added here.
FlopCounterMode counts 0 for the CPU flash-attention kernel and the fused MHA op: formulas are
added. On the meta device CPU-side index tensors (e.g. Qwen2.5-VL window indices, position ids)
are moved to meta when they meet meta tensors, so data-dependent models count without weights.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from scopebench.errors import ScopebenchError
from scopebench.profiling import formulas as F

FVCORE, TORCH = "fvcore", "torch"
COUNTERS = (FVCORE, TORCH)

# shape, memory and allocation ops: no arithmetic, never listed as uncounted
FREE_OPS = frozenset("""
view _unsafe_view reshape _reshape_alias view_as reshape_as flatten unflatten transpose t permute expand
expand_as unsqueeze unsqueeze_ squeeze squeeze_ select slice narrow split split_with_sizes chunk unbind
cat stack contiguous clone copy_ _to_copy to type_as detach alias lift_fresh lift_fresh_copy empty
empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones ones_like new_ones
full full_like new_full scalar_tensor arange fill_ zero_ as_strided size Int ScalarImplicit dropout
_local_scalar_dense index_select index gather embedding constant_pad_nd pad repeat tile roll meshgrid
tensor numpy_T item _assert_tensor_metadata uniform_ normal_ randn rand bernoulli_ unfold
""".split())
# fvcore's default handles for non-matmul ops: dropped so that they are listed, not counted
_FVCORE_DROPPED = (
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
    "aten::grid_sampler",
)


@dataclass
class Count:
    """MACs of one call (FLOPs = 2 x MACs), the counter that produced them and the ops it did not count."""

    macs: int
    counter: str
    uncounted: Counter = field(default_factory=Counter)
    note: str = ""
    output: Any = None  # the call's output when the counter ran it (torch counter)

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def _op_name(name: str) -> str:
    """'aten::add' / 'aten.add.Tensor' -> 'aten::add'."""
    if "::" in name:
        return name
    parts = name.split(".")
    return f"{parts[0]}::{parts[1]}" if len(parts) > 1 else name


def _is_free(name: str) -> bool:
    return name.split("::")[-1] in FREE_OPS or name.startswith("prim::")


# ----- fvcore ------------------------------------------------------------------------------
def _import_fvcore() -> None:
    """Import fvcore.nn without the FutureWarning its focal-loss module triggers (torch.jit.script) on
    import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        import fvcore.nn  # noqa: F401


def _fvcore_handles() -> dict:
    from fvcore.nn.jit_handles import get_shape  # after _import_fvcore (count_fvcore)

    def shapes(values):
        return [get_shape(v) for v in values]

    def sdpa(inputs, outputs):
        q, k, v = shapes(inputs[:3])
        return F.attention_macs(q, k, v)

    def mha(inputs, outputs):
        q, k = shapes(inputs[:2])
        return F.mha_macs(q, k, q[-1])

    def conv(inputs, outputs):
        return F.conv_macs(get_shape(inputs[1]), get_shape(outputs[0]))

    def matmul(inputs, outputs):
        return F.matmul_macs(get_shape(inputs[0]), get_shape(outputs[0]))

    def baddbmm(inputs, outputs):
        return F.matmul_macs(get_shape(inputs[1]), get_shape(outputs[0]))

    return {
        "aten::scaled_dot_product_attention": sdpa, "aten::_native_multi_head_attention": mha,
        "aten::_convolution_mode": conv, "aten::conv1d": conv, "aten::conv2d": conv, "aten::conv3d": conv,
        "aten::matmul": matmul, "aten::baddbmm": baddbmm,
    }


class _KeepAll(torch.nn.Module):
    """Also returns every submodule's tensor outputs: tracing drops work whose result is unused (a
    pooling head the caller ignores, the last layer when reading the penultimate), which still runs."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *inputs):
        kept: list = []

        def keep(_module, _inputs, out):
            kept.extend(t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))

        handles = [m.register_forward_hook(keep) for m in self.module.modules()]
        try:
            out = self.module(*inputs)
        finally:
            for h in handles:
                h.remove()
        return (*(t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)), *kept)


def count_fvcore(module, inputs: tuple) -> Count:
    """fvcore FlopCountAnalysis (one multiply-add = one 'flop' there, i.e. MACs) with the added handles."""
    _import_fvcore()
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        fca = FlopCountAnalysis(_KeepAll(module), inputs)
        for op in _FVCORE_DROPPED:
            fca._op_handles.pop(op, None)
        fca.set_op_handle(**_fvcore_handles())
        fca._ignored_ops = {op for op in fca._ignored_ops if _is_free(op)}
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        macs = int(fca.total())
        unsupported = Counter({op: n for op, n in fca.unsupported_ops().items() if not _is_free(op)})
    return Count(macs=macs, counter=FVCORE, uncounted=unsupported)


# ----- torch FlopCounterMode -----------------------------------------------------------------
def _torch_formulas() -> dict:
    aten = torch.ops.aten

    def sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return 2 * F.attention_macs(q, k, v)

    def mha(query, key, value, embed_dim, *args, out_shape=None, **kwargs) -> int:
        return 2 * F.mha_macs(query, key, embed_dim)

    table = {aten._native_multi_head_attention: mha}
    for name in ("_scaled_dot_product_flash_attention_for_cpu",
                 "_scaled_dot_product_fused_attention_overrideable",
                 "_scaled_dot_product_attention_math_for_mps"):
        if hasattr(aten, name):
            table[getattr(aten, name)] = sdpa
    return table


class _OpLog(TorchDispatchMode):
    """Lists the ops that have no formula (call counts), leaving shape and memory ops out."""

    def __init__(self, counted: set):
        super().__init__()
        self.counted = counted
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func._overloadpacket
        if packet not in self.counted and not func.is_view:
            name = _op_name(str(packet))
            if not _is_free(name):
                self.calls[name] += 1
        return func(*args, **(kwargs or {}))


class _MetaCoerce(TorchDispatchMode):
    """Moves CPU tensors to meta when an op mixes them with meta tensors (index tensors computed on CPU)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in flat):
            args, kwargs = tree_map(
                lambda t: t.to("meta") if isinstance(t, torch.Tensor) and t.device.type != "meta" else t,
                (args, kwargs),
            )
        return func(*args, **kwargs)


def on_meta(module, inputs: tuple):
    """Context for calling ``module(*inputs)``: meta coercion when the module or an input is on meta."""
    meta = any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in inputs)
    meta |= any(p.device.type == "meta" for p in module.parameters())
    return _MetaCoerce() if meta else contextlib.nullcontext()


def count_torch(module, inputs: tuple) -> Count:
    """torch.utils.flop_counter.FlopCounterMode (counts 2 x MACs) with the added attention formulas."""
    counter = FlopCounterMode(display=False, custom_mapping=_torch_formulas())
    log = _OpLog(set(counter.flop_registry))
    with warnings.catch_warnings(), torch.no_grad(), counter, log, on_meta(module, inputs):
        warnings.simplefilter("ignore")
        out = module(*inputs)
    return Count(macs=int(counter.get_total_flops()) // 2, counter=TORCH, uncounted=log.calls, output=out)


def count(module, inputs: tuple, counter: str, what: str) -> Count:
    """Count one call with ``counter``; fvcore falls back to the torch counter when it cannot trace.

    Raises a one-line ScopebenchError naming ``what`` when no counter can count it.
    """
    if counter not in COUNTERS:
        raise ScopebenchError(f"--counter must be one of {', '.join(COUNTERS)}, got '{counter}'")
    note = ""
    if counter == FVCORE:
        try:
            return count_fvcore(module, inputs)
        except Exception as err:  # any trace failure falls back to dispatch counting
            note = f"fvcore could not trace {what} ({_short(err)}); counted with the torch counter"
    try:
        result = count_torch(module, inputs)
    except ScopebenchError:
        raise
    except Exception as err:  # reported as one user-facing line
        raise ScopebenchError(f"cannot count {what}: {_short(err)}") from None
    result.note = note
    return result
