"""The static decode step of Llama-family models (Qwen2, Llama, Mistral) written out with fewer, larger kernels.

The model's own modules issue ~47 kernels per layer for one decode token (RMSNorm as seven elementwise ops,
three projections, rotary as five ops each for q and k, repeat_kv copies of the whole cache span...): ~1,100 per
token for a 24-layer model, which even replayed as a CUDA graph costs ~2.5 us each, more than the weights take
to read. This step does the same arithmetic in ~16 kernels per layer:

    x (B, H) -> rms_norm -> [q|k|v] one GEMM -> rotary on [q|k] at once (roll, against per-position tables)
    -> k, v written at each row's column -> attention over the slot's first T columns, the g = n_q / n_kv query
    heads of a KV head taken as g query rows (no repeat_kv) -> o_proj -> residual -> rms_norm -> [gate|up] one
    GEMM -> silu * up -> down -> residual

Where an op could be fused further at a cost in rounding (the norm's weight inside the fused norm kernel, rotary
as one addcmul), it rounds where the modules round instead: in bf16 the few kernels saved moved a 28-layer
model's logits ~4% (relative) from the modules' path, against ~1.5% for the modules' own static replay.

The fused [q|k|v] and [gate|up] weights are single buffers, and the model's own q/k/v and gate/up Linear weights
are rebound to row slices of them (views): the dynamic path, LoRA merges (which add into the base weights in
place) and this step all read the same memory, so a hot-swap reaches the fused weights with no copy.
`check()` in static_decode.py compares this step's logits with the dynamic path's before it is used; a model it
does not know (or a layout it cannot fuse) keeps the modules' step.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED = ("qwen2", "llama", "mistral")
STATIC_ROPE = ("default", "linear", "llama3")  # cos/sin depend on the position only: one table serves every step


class Unsupported(Exception):
    pass


@dataclass
class Layer:
    ln1: object  # (H,) input RMSNorm weight
    wqkv: object  # ((n_q + 2 n_kv) D, H): q, k, v projections back to back
    bqkv: object  # ((n_q + 2 n_kv) D,) or None
    wo: object  # (H, n_q D)
    ln2: object
    wgu: object  # (2 I, H): gate then up
    wd: object  # (H, I)
    split: tuple  # the modules' own weights and biases (views into the buffers above): wq, wk, wv, bq, bk, bv, wg, wu


def fuse(linears: list, attr: str = "weight"):
    """One buffer holding the `attr` tensors of `linears` back to back (dim 0), each module's own tensor rebound to
    its slice; a layout already fused that way is reused as it is (so a second decoder moves no weights)."""
    import torch

    parts = [getattr(m, attr) for m in linears]
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts) or len({p.shape[1:] for p in parts}) != 1 or len({p.dtype for p in parts}) != 1:
        raise Unsupported(f"{attr}s of different shapes or kinds")
    first = parts[0]
    rows = sum(p.shape[0] for p in parts)
    offset, shared = first.storage_offset(), first.untyped_storage().data_ptr()
    whole = True
    for p in parts:
        whole &= p.is_contiguous() and p.untyped_storage().data_ptr() == shared and p.storage_offset() == offset
        offset += p.numel()
    if whole:
        return first.detach().as_strided((rows, *first.shape[1:]), first.stride(), first.storage_offset())
    buf = torch.cat([p.detach() for p in parts], dim=0)
    start = 0
    for m, p in zip(linears, parts):
        getattr(m, attr).data = buf[start : start + p.shape[0]]
        start += p.shape[0]
    return buf


def base_layer(module):
    """The plain Linear under a PEFT LoRA wrapper (the wrapper itself when it is plain)."""
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


class FusedStep:
    """Built over a StaticDecoder's buffers (ids, pos, keys/values pool, logits, picked); call (b, span)."""

    def __init__(self, decoder):
        import torch

        model = decoder.backend.model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
        if cfg.model_type not in SUPPORTED:
            raise Unsupported(f"model type {cfg.model_type}")
        if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
            raise Unsupported("an MLP other than SwiGLU without bias")
        if cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None):
            raise Unsupported("sliding-window attention")
        rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        if (rope.get("rope_type") or rope.get("type") or "default") not in STATIC_ROPE:
            raise Unsupported(f"rope type {rope.get('rope_type')}")
        inner = base.model
        self.d = decoder
        self.embed = inner.embed_tokens.weight
        self.norm, self.eps = inner.norm.weight, inner.norm.variance_epsilon
        self.head = base.lm_head.weight
        attn = inner.layers[0].self_attn
        self.scale = attn.scaling
        self.n_q, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.dim = attn.head_dim
        self.hidden, self.inter = cfg.hidden_size, cfg.intermediate_size
        self.layers = []
        # the projections as the modules run them (q, k, v; gate, up: five GEMMs, not two): a GEMM of another width
        # may take another cuBLAS algorithm and round differently (on the H200 the 7B shape's fused GEMMs put its
        # logits 4% from the modules'; the 0.5B shape's matched bit for bit). check() picks this when it must
        self.split = False
        with torch.no_grad():
            for layer in inner.layers:
                a, m = layer.self_attn, layer.mlp
                qkv = [base_layer(a.q_proj), base_layer(a.k_proj), base_layer(a.v_proj)]
                gu = [base_layer(m.gate_proj), base_layer(m.up_proj)]
                if base_layer(a.o_proj).bias is not None or base_layer(m.down_proj).bias is not None:
                    raise Unsupported("bias on o_proj or down_proj")
                wqkv, bqkv, wgu = fuse(qkv), fuse(qkv, "bias"), fuse(gu)
                split = (*(x.weight for x in qkv), *(x.bias for x in qkv), *(x.weight for x in gu))
                self.layers.append(
                    Layer(
                        layer.input_layernorm.weight,
                        wqkv,
                        bqkv,
                        base_layer(a.o_proj).weight,
                        layer.post_attention_layernorm.weight,
                        wgu,
                        base_layer(m.down_proj).weight,
                        split,
                    )
                )
            self._tables(inner, decoder.max_tokens)

    def _tables(self, inner, length: int) -> None:
        """cos and sign-folded sin of every position, from the model's own rotary embedding: (T_max, D) each.
        rotate_half(x) = roll(x, D/2) * [-1.., +1..], so x*cos + rotate_half(x)*sin = x*cos + roll(x)*sin_signed."""
        import torch

        dtype, device = self.embed.dtype, self.embed.device
        positions = torch.arange(length, device=device)[None]
        probe = torch.zeros((1, length, self.hidden), dtype=dtype, device=device)
        cos, sin = inner.rotary_emb(probe, positions)  # (1, T, D) each, in the model's dtype
        half = self.dim // 2
        sign = torch.cat([-torch.ones(half, device=device), torch.ones(self.dim - half, device=device)]).to(dtype)
        self.cos, self.sin = cos[0].contiguous(), (sin[0] * sign).contiguous()
        self.zero = torch.zeros((), dtype=dtype, device=device)
        self.masked = torch.full((), float("-inf"), dtype=dtype, device=device)

    def __call__(self, b: int, span: int) -> None:
        """One decode step for slots [0, b), the same contract as StaticDecoder.body."""
        import torch
        import torch.nn.functional as F

        d = self.d
        n_q, n_kv, dim, hidden = self.n_q, self.n_kv, self.dim, self.hidden
        pos = d.pos[:b]
        cos = self.cos.index_select(0, pos)[:, None]  # (B, 1, D), broadcast over heads
        sin = self.sin.index_select(0, pos)[:, None]
        # (B, 1, 1, T): 0 on the columns a row has written (<= its position), -inf after
        bias = torch.where(d.cols[:span][None, :] <= pos[:, None], self.zero, self.masked)[:, None, None, :]
        index = pos.view(b, 1, 1, 1).expand(b, n_kv, 1, dim)
        h = F.embedding(d.ids[:b], self.embed)  # (B, H)
        for i, w in enumerate(self.layers):
            x = F.rms_norm(h, (hidden,), None, self.eps) * w.ln1  # rounded before the weight, as the modules do
            if self.split:
                wq, wk, wv, bq, bk, bv, wg, wu = w.split
                qk = torch.cat([F.linear(x, wq, bq), F.linear(x, wk, bk)], dim=1).view(b, n_q + n_kv, dim)
                v = F.linear(x, wv, bv).view(b, n_kv, 1, dim)
            else:
                qkv = F.linear(x, w.wqkv, w.bqkv).view(b, n_q + 2 * n_kv, dim)
                qk, v = qkv[:, : n_q + n_kv], qkv[:, n_q + n_kv :, None]
            qk = qk * cos + qk.roll(dim // 2, -1) * sin  # rotary on q and k together
            keys, values = d.keys[i][:b], d.values[i][:b]  # (B, n_kv, T_max, D) views into the pool
            keys.scatter_(2, index, qk[:, n_q:, None])
            values.scatter_(2, index, v)
            q = qk[:, :n_q].reshape(b, n_kv, n_q // n_kv, dim)  # a KV head's query heads as rows: (B, n_kv, g, D)
            att = F.scaled_dot_product_attention(
                q, keys[:, :, :span], values[:, :, :span], attn_mask=bias, scale=self.scale
            )
            h = h + F.linear(att.reshape(b, n_q * dim), w.wo)
            x = F.rms_norm(h, (hidden,), None, self.eps) * w.ln2
            if self.split:
                gate, up = F.linear(x, w.split[6]), F.linear(x, w.split[7])
            else:
                gu = F.linear(x, w.wgu)  # (B, 2 I)
                gate, up = gu[:, : self.inter], gu[:, self.inter :]
            h = h + F.linear(F.silu(gate) * up, w.wd)
        h = F.rms_norm(h, (hidden,), None, self.eps) * self.norm
        d.logits[:b].copy_(F.linear(h, self.head))
        d.picked[:b].copy_(d.logits[:b].argmax(dim=-1))
        d.ids[:b].copy_(d.picked[:b])
        d.pos[:b].add_(1).clamp_(max=d.max_tokens - 1)
