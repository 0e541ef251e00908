"""Loading a base model (plus an optional PEFT adapter), held-out perplexity, and timed generation.

torch, transformers and peft are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Prompt:
    """One evaluation prompt: plain text to continue, or chat messages; `reference` is what the author wrote."""

    id: str
    kind: str  # "continuation" | "chat" | "persona"
    text: str | None = None
    messages: list[dict] | None = None
    reference: str = ""


@dataclass
class Generation:
    prompt: Prompt
    text: str
    new_tokens: int
    seconds: float
    extra: dict = field(default_factory=dict)


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_model(base: str | Path, adapter: str | Path | None = None, device: str | None = None):
    """(model, tokenizer) for `base` (a local folder or cached hub id) with the PEFT `adapter` folder applied.

    bf16 on CUDA, fp32 on CPU; eval mode. The adapter is loaded, not merged, so `model.disable_adapter()`
    still gives the base.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(device)
    model.eval()
    return model, tokenizer


def each_side(model, sides: list[tuple[str, str | None]]):
    """Yield (label, model to measure) for [(label, PEFT adapter folder or None for the bare base)]: adapters are
    loaded side by side onto the one base model and switched between; None gives the base with adapters off."""
    from contextlib import nullcontext

    peft_model = None
    for i, (label, path) in enumerate(sides):
        if path is None:
            with peft_model.disable_adapter() if peft_model is not None else nullcontext():
                yield label, peft_model if peft_model is not None else model
            continue
        name = f"side{i}"
        if peft_model is None:
            from peft import PeftModel

            peft_model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
        else:
            peft_model.load_adapter(str(path), adapter_name=name)
        peft_model.set_adapter(name)
        peft_model.eval()
        yield label, peft_model


def _device_of(model):
    return next(model.parameters()).device


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The exact text the model sees: plain text as is, messages through the tokenizer's chat template."""
    if prompt.messages is None:
        return prompt.text or ""
    from penwright.trainer.data import render

    return render(tokenizer, prompt.messages, add_generation_prompt=True)


def _nll(model, ids: list[int], labels: list[int]) -> tuple[float, int]:
    """Sum of negative log-likelihood of the shifted `labels` (labels[t] follows ids[t]; -100 = not scored)."""
    import torch

    count = sum(1 for x in labels if x != -100)
    if not count:
        return 0.0, 0
    device = _device_of(model)
    x = torch.tensor([ids], device=device)
    y = torch.tensor(labels, device=device)
    with torch.no_grad():
        logits = model(input_ids=x).logits[0].float()  # (T, V)
    return float(torch.nn.functional.cross_entropy(logits, y, ignore_index=-100, reduction="sum")), count


def _summary(total: float, count: int, seconds: float) -> dict:
    loss = total / count if count else float("nan")
    return {
        "loss": round(loss, 4),
        "perplexity": round(math.exp(loss), 3) if count else float("nan"),
        "tokens": count,
        "seconds": round(seconds, 2),
    }


def text_perplexity(model, tokenizer, texts: list[str], max_tokens: int = 512, max_windows: int | None = None) -> dict:
    """Perplexity of plain `texts`: how surprised the model is by the author. Lower is better.

    Each text is cut into consecutive windows of `max_tokens` tokens (a whole book is fine); at most
    `max_windows` windows, evenly spread, are scored. exp of the mean cross-entropy per token (the
    first token of each window has no context and is not scored).
    """
    start, total, count = time.perf_counter(), 0.0, 0
    for ids in perplexity_windows(tokenizer, texts, max_tokens, max_windows):
        s, n = _nll(model, ids, ids[1:] + [-100])
        total, count = total + s, count + n
    return _summary(total, count, time.perf_counter() - start)


def perplexity_windows(tokenizer, texts: list[str], max_tokens: int = 512, max_windows: int | None = None) -> list:
    """The token windows `text_perplexity` scores: consecutive `max_tokens` windows of each text, at most
    `max_windows` of them, evenly spread."""
    windows = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False, verbose=False).input_ids  # long on purpose: no warning
        windows += [ids[i : i + max_tokens] for i in range(0, len(ids), max_tokens) if len(ids[i : i + max_tokens]) > 1]
    if max_windows is not None and len(windows) > max_windows:
        windows = [windows[(i * len(windows)) // max_windows] for i in range(max_windows)]
    return windows


def rows_perplexity(model, tokenizer, rows: list[dict], max_tokens: int = 1024) -> dict:
    """Perplexity of the assistant target (last message) of dataset rows, given their prompt.

    Tokenized exactly as the trainer does (`penwright.trainer.data.encode_row`, completion-only), so
    this is the loss training optimises, measured on the held-out split.
    """
    from penwright.trainer.data import encode_row

    start, total, count = time.perf_counter(), 0.0, 0
    for row in rows:
        sample, _ = encode_row(tokenizer, row, max_tokens, completion_only=True)
        s, n = _nll(model, sample.input_ids, sample.labels)
        total, count = total + s, count + n
    return _summary(total, count, time.perf_counter() - start)


def stop_token_ids(tokenizer) -> list[int]:
    ids = [tokenizer.eos_token_id]
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.append(tid)
    return sorted({i for i in ids if i is not None})


def generate(
    model,
    tokenizer,
    prompts: list[Prompt],
    max_new_tokens: int = 96,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    max_prompt_tokens: int = 768,
) -> list[Generation]:
    """Sample a continuation for each prompt (seeded per prompt, so runs are repeatable).

    The text keeps any special token the model wrote except the stop token that ended it, so leaked
    chat tags stay visible to the leak guard.
    """
    import torch

    stops = stop_token_ids(tokenizer)
    device = _device_of(model)
    out = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False).input_ids[-max_prompt_tokens:]
        x = torch.tensor([ids], device=device)
        torch.manual_seed(seed + i)
        start = time.perf_counter()
        with torch.no_grad():
            y = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=max_new_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=top_p if temperature > 0 else None,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
            )
        seconds = time.perf_counter() - start
        new = y[0, len(ids) :].tolist()
        n_new = len(new)
        if new and new[-1] in stops:
            new = new[:-1]
        text = tokenizer.decode(new, skip_special_tokens=False)
        out.append(Generation(prompt=prompt, text=text, new_tokens=n_new, seconds=seconds))
    return out


def throughput(generations: list[Generation]) -> float:
    """Generated tokens per second over all generations (a reference figure, machine-dependent)."""
    seconds = sum(g.seconds for g in generations)
    return round(sum(g.new_tokens for g in generations) / seconds, 2) if seconds > 0 else 0.0
