"""`builtin:tiny`: a small random-init Qwen2 model built in seconds from the project's own text.

It is a DEMO model: it has never been pretrained, so it writes word salad until
trained, and even then only echoes what it has seen. It exists so that tests and
the offline quick start run the real code paths (tokenizer, ChatML, FIM tokens,
LoRA, serving) without a model hub. Building is deterministic: the same text and
spec give byte-identical weights and tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
]
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
FALLBACK_TEXT = (
    "It was a quiet evening in the village, and the lamps were lit one by one along the lane. "
    '"Will you walk with me?" she asked, and he said that he would, though the rain had begun.'
)


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 1024
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_positions: int = 2048
    seed: int = 0


def _fingerprint(texts: list[str], spec: TinySpec) -> str:
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:16]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (as Qwen uses) trained on `texts`, wrapped for transformers with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(texts: list[str], out_dir: Path, spec: TinySpec = TinySpec()) -> Path:
    """Build (or reuse) the tiny model for these texts under `out_dir/tiny-<fingerprint>`."""
    texts = [t for t in texts if t.strip()] or [FALLBACK_TEXT]
    target = Path(out_dir) / f"tiny-{_fingerprint(texts, spec)}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(
            "Penwright builtin:tiny demo model: random-init Qwen2, never pretrained. Not for real writing.\n"
        )
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    log.warning("Using builtin:tiny, a random-init DEMO model built from your text; set model.base for real writing.")
    return target
