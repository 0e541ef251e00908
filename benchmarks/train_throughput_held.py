"""Tools of `train_throughput.py` that train nothing: the activation bytes a layer keeps for backward in each
checkpointing mode (`--held`), and the manuscript-shaped lengths file (`--make-lengths`)."""

from __future__ import annotations

from train_throughput_loops import SHAPES, SHARED, lora_config


def make_lengths(target: int = 600, cap: int = 1000) -> list[int]:
    """Paragraph chunker over ../shared/corpora: whole paragraphs until `target` tokens, never over `cap`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHARED / "models" / "gutenberg-qwen2-31m")
    lengths = []
    for book in sorted((SHARED / "corpora").glob("*/*.txt")):
        paras = [" ".join(p.split()) for p in book.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        size = 0
        for n in (len(ids) for ids in tok(paras, add_special_tokens=False)["input_ids"]):
            if size and size + n > cap:
                lengths.append(size)
                size = 0
            size = min(size + n, cap)
            if size >= target:
                lengths.append(size)
                size = 0
    return lengths


def held_per_layer(shape: str, ckpts: list[tuple[float, bool]], tokens: int = 256, layers: int = 4) -> list[str]:
    """Bytes a forward leaves held for backward, per token per decoder layer, in each checkpointing mode: a few
    layers of the shape in bf16 on the CPU, LoRA r16 with dropout, train mode. A tensor an op produced that is
    still alive after the forward (kept by autograd or cached by selective checkpointing) is counted once."""
    import gc
    import weakref

    import torch
    from peft import get_peft_model
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from transformers import AutoModelForCausalLM, Qwen2Config

    from penwright.trainer.backends.checkpointing import set_checkpointing

    dims = {k: v for k, v in SHAPES[shape].items() if k not in ("batch", "checkpointing", "rows")}
    dims.update(num_hidden_layers=layers, vocab_size=1024)
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_config(Qwen2Config(**dims, use_cache=False), dtype=torch.bfloat16), lora_config()
    )
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(0, 1024, (1, tokens))
    out = []
    for fraction, elementwise in ckpts:
        set_checkpointing(model.get_base_model(), fraction, elementwise, 16)
        refs = []

        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                refs.extend(weakref.ref(x) for x in tree_leaves(result) if isinstance(x, torch.Tensor))
                return result

        with Record():
            hidden = model.get_base_model().model(input_ids=ids).last_hidden_state
        gc.collect()
        live = {
            x.untyped_storage().data_ptr(): x.untyped_storage().nbytes() for x in (r() for r in refs) if x is not None
        }
        per_token = sum(n for ptr, n in live.items() if ptr not in weights) / tokens / layers
        tag = "no ckpt" if fraction == 0 else "ckpt" if fraction == 1 else f"ckpt {fraction:g} of the layers"
        if elementwise:
            tag = "ckpt elementwise only" if fraction == 0 else f"{tag}, the rest elementwise only"
        out.append(
            f"| {shape} | {tag} | {per_token / 1024:,.0f} KiB | {per_token / dims['hidden_size']:.1f} x hidden "
            f"| {per_token * 3700 * SHAPES[shape]['num_hidden_layers'] / 2**30:.2f} GiB |"
        )
        print(out[-1], flush=True)
        hidden.float().sum().backward()
        model.zero_grad(set_to_none=True)
    return out
