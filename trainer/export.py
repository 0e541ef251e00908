"""Export an adapter for other runtimes: an Ollama Modelfile, or a fused MLX model.

Ollama: `FROM <base>` + `ADAPTER <adapter folder>` (Ollama reads safetensors LoRA adapters
for the architectures it supports), or with `merged=True` a merged full checkpoint and
`FROM <that folder>`. The Modelfile carries the ChatML template and stop token our
adapters are trained with. MLX: the adapter fused into the base as an MLX model folder.
"""

from __future__ import annotations

from pathlib import Path

from penwright.trainer.merge import adapter_format, fuse_mlx, merge_adapter

CHATML_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def modelfile_text(from_: str, adapter: str | None, system: str | None = None) -> str:
    lines = [f"FROM {from_}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"']
    return "\n".join(lines) + "\n"


def export_ollama(base_model: str, adapter_dir: Path | str, out_dir: Path | str, merged: bool = False,
                  system: str | None = None) -> Path:
    """Write `out_dir/Modelfile` (and `out_dir/model/` when merged). Returns the Modelfile's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if merged:
        merge_adapter(base_model, adapter_dir, out_dir / "model")
        text = modelfile_text("./model", None, system)
    else:
        text = modelfile_text(str(Path(base_model).resolve()) if Path(base_model).exists() else base_model,
                              str(Path(adapter_dir).resolve()), system)
    path = out_dir / "Modelfile"
    path.write_text(text, encoding="utf-8")
    return path


def export_mlx(base_model: str, adapter_dir: Path | str, out_dir: Path | str) -> Path:
    """A fused MLX model folder (`mlx_lm.generate --model out_dir`). A PEFT adapter is merged first
    (mlx-lm reads the merged Hugging Face folder as is)."""
    if adapter_format(Path(adapter_dir)) == "mlx":
        return fuse_mlx(base_model, Path(adapter_dir), Path(out_dir))
    return merge_adapter(base_model, adapter_dir, out_dir)
