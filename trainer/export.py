"""Export an adapter for other runtimes: GGUF (llama.cpp), an Ollama Modelfile, a vLLM command, or a fused MLX model.

GGUF: the adapter as llama.cpp's LoRA GGUF (`adapter.gguf`, for `llama-server --lora`), plus the base as a
GGUF model when it is a local folder (`base.gguf`: builtin:tiny, a downloaded Qwen2.5); or with
`merged=True` the adapter merged into the base as one `model.gguf`.
Ollama: Ollama reads safetensors adapters only for Llama, Mistral and Gemma, so the Modelfile points at the
GGUF adapter: `FROM <base>` + `ADAPTER ./adapter.gguf` (or `FROM ./model.gguf` merged). Its TEMPLATE renders
`.Suffix` in the model's own FIM sentinels (Ollama's `/api/generate` and `/v1/completions` take `suffix`)
and chat in ChatML, with the SYSTEM prompt the chat rows were trained with.
vLLM: the adapter folder as it is (vLLM loads PEFT adapters), and the `vllm serve` command that serves it.
MLX: the adapter fused into the base as an MLX model folder.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from penwright.trainer.merge import adapter_format, fuse_mlx, merge_adapter

CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def ollama_template(fim: tuple[str, str, str] | None) -> str:
    """Ollama's TEMPLATE: with a suffix, the model's FIM prompt (prefix, suffix, middle sentinels); else ChatML."""
    if fim is None:
        return CHATML
    pre, suf, mid = fim
    return f"{{{{ if .Suffix }}}}{pre}{{{{ .Prompt }}}}{suf}{{{{ .Suffix }}}}{mid}{{{{ else }}}}{CHATML}{{{{ end }}}}"


def modelfile_text(
    from_: str, adapter: str | None, system: str | None = None, fim: tuple[str, str, str] | None = None
) -> str:
    lines = [f"FROM {from_}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    lines.append(f'TEMPLATE """{ollama_template(fim)}"""')
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"']
    return "\n".join(lines) + "\n"


def export_gguf(base_model: str, adapter_dir: Path | str, out_dir: Path | str, merged: bool = False) -> dict:
    """GGUF files under `out_dir`: {"adapter": adapter.gguf, "base": base.gguf (local bases)} or {"model": ...}."""
    from penwright.trainer.gguf_export import base_config, write_adapter_gguf, write_model_gguf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if merged:  # merged in float32 where the GGUF stays float32 (up to 1B parameters), else in the base's dtype
        from penwright.trainer.gguf_export import F32_UP_TO_PARAMS, params_in

        small = params_in(sorted(Path(base_model).glob("*.safetensors"))) <= F32_UP_TO_PARAMS
        folder = merge_adapter(base_model, adapter_dir, out_dir / "merged-hf", dtype="float32" if small else "auto")
        return {"model": write_model_gguf(folder, out_dir / "model.gguf")}
    files = {"adapter": write_adapter_gguf(base_config(base_model), adapter_dir, out_dir / "adapter.gguf")}
    if (Path(base_model) / "config.json").is_file():
        files["base"] = write_model_gguf(base_model, out_dir / "base.gguf")
    return files


def export_ollama(
    base_model: str,
    adapter_dir: Path | str,
    out_dir: Path | str,
    merged: bool = False,
    system: str | None = None,
    fim: tuple[str, str, str] | None = None,
    ollama_base: str | None = None,
) -> Path:
    """Write `out_dir/Modelfile` beside the GGUF files it names. Returns the Modelfile's path.

    `ollama_base`: the Ollama model to put the adapter on (e.g. `qwen2.5:1.5b`) when the base is not a local
    folder we can convert; it must be the same model the adapter was trained on."""
    from penwright.errors import PenwrightError

    out_dir = Path(out_dir)
    if not merged and ollama_base is None and not (Path(base_model) / "config.json").is_file():
        raise PenwrightError(
            f"the base {base_model} is not a local folder, so it cannot be converted to GGUF here",
            "Pass --ollama-base with Ollama's name for the same model (e.g. qwen2.5:1.5b), "
            "or --merged to ship one merged model.gguf.",
        )
    export_gguf(base_model, adapter_dir, out_dir, merged)
    if merged:
        text = modelfile_text("./model.gguf", None, system, fim)
    else:
        text = modelfile_text(ollama_base or "./base.gguf", "./adapter.gguf", system, fim)
    path = out_dir / "Modelfile"
    path.write_text(text, encoding="utf-8")
    return path


def vllm_command(base_model: str, adapter_dir: Path | str, name: str, rank: int | None = None) -> str:
    """The `vllm serve` line that serves `adapter_dir` as model `name` beside its base."""
    parts = ["vllm", "serve", base_model, "--enable-lora", "--lora-modules", f"{name}={Path(adapter_dir).resolve()}"]
    if rank:
        parts += ["--max-lora-rank", str(max(8, 1 << (rank - 1).bit_length()))]  # vLLM takes 8, 16, 32, 64...
    return " ".join(shlex.quote(p) for p in parts)


def export_mlx(base_model: str, adapter_dir: Path | str, out_dir: Path | str) -> Path:
    """A fused MLX model folder (`mlx_lm.generate --model out_dir`). A PEFT adapter is merged first
    (mlx-lm reads the merged Hugging Face folder as is)."""
    if adapter_format(Path(adapter_dir)) == "mlx":
        return fuse_mlx(base_model, Path(adapter_dir), Path(out_dir))
    return merge_adapter(base_model, adapter_dir, out_dir)
