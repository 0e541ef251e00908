"""`penwright export --format gguf|ollama|vllm|mlx`: an adapter for llama.cpp (GGUF), Ollama (Modelfile + GGUF),
vLLM (the `vllm serve` command for the adapter folder) or MLX (a fused model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from penwright.cli.common import add_project_argument, project_from
from penwright.errors import InputFileError, ProtectedPathError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument(
        "adapter",
        nargs="?",
        default=None,
        help="registry version (7, v7) or adapter folder (default: the live adapter)",
    )
    parser.add_argument("--format", required=True, choices=["gguf", "ollama", "vllm", "mlx"])
    parser.add_argument("--out", default=None, help="output folder (gguf, ollama, mlx)")
    parser.add_argument(
        "--merged", action="store_true", help="gguf/ollama: one merged model.gguf instead of the base + adapter.gguf"
    )
    parser.add_argument(
        "--ollama-base",
        default=None,
        metavar="NAME",
        help="ollama: Ollama's name for the base model (e.g. qwen2.5:1.5b) when it is not a local folder",
    )


def check_output(project, out: str, *inner: str) -> Path:
    """`out` (and the folders written inside it) resolved, refused when inside a manuscript or lore folder."""
    target = Path(out).expanduser().resolve()
    for folder in project.protected_dirs():
        for written in (target, *(target / name for name in inner)):
            if written == folder or written.is_relative_to(folder):
                raise ProtectedPathError(target, folder)
    return target


def check_adapter(folder: Path) -> Path:
    """A folder export can read: a PEFT adapter (adapter_config.json) or an MLX one (adapters.safetensors)."""
    if not ((folder / "adapter_config.json").is_file() or (folder / "adapters.safetensors").is_file()):
        raise InputFileError(
            folder,
            "is not an adapter folder (it has no adapter_config.json or adapters.safetensors)",
            "Name a registry version (`penwright adapters list`), or a folder a training run saved.",
        )
    return folder


def run(args: argparse.Namespace) -> int:
    from penwright.cli.merge import resolve_adapter
    from penwright.trainer.export import export_mlx

    project = project_from(args)
    if args.format != "vllm" and not args.out:
        raise InputFileError(Path("--out"), "is required for this format", "Name the folder to write into.")
    if args.out:
        args.out = str(check_output(project, args.out, *WRITTEN))
    names_version = args.adapter is None or (
        args.adapter.split("@")[-1].lstrip("v").isdigit() and not Path(args.adapter).exists()
    )
    if not names_version:  # checked before the base model is loaded: a wrong folder fails at once
        check_adapter(Path(args.adapter).expanduser())
    adapter, base = resolve_adapter(project, args.adapter)
    check_adapter(Path(adapter))
    if args.format == "mlx":
        path = export_mlx(base, adapter, args.out)
        print(f"wrote {path}; then: mlx_lm.generate --model {path}")
        return 0
    return FORMATS[args.format](project, base, Path(adapter), args)


def _gguf(project, base: str, adapter: Path, args) -> int:
    from penwright.trainer.export import export_gguf

    files = export_gguf(base, adapter, args.out, merged=args.merged)
    for path in files.values():
        print(f"wrote {path}")
    if "model" in files:
        print(f"then: llama-server -m {files['model']}")
    else:
        print(f"then: llama-server -m {files.get('base', '<the base model as GGUF>')} --lora {files['adapter']}")
    return 0


def _ollama(project, base: str, adapter: Path, args) -> int:
    from penwright.trainer.export import export_ollama

    path = export_ollama(
        base,
        adapter,
        args.out,
        merged=args.merged,
        system=project.settings.curation.system_prompt,
        fim=_fim_sentinels(base),
        ollama_base=args.ollama_base,
    )
    print(f"wrote {path}; then: ollama create {project.settings.server.model_name} -f {path}")
    return 0


def _vllm(project, base: str, adapter: Path, args) -> int:
    import json

    from penwright.trainer.export import vllm_command

    name = project.settings.server.model_name
    rank = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("r")
    print(vllm_command(base, adapter, name, rank))
    print("# runtime loading (proxy mode publishes each promoted version this way):")
    print("#   VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve ... --enable-lora")
    print(f'#   POST /v1/load_lora_adapter {{"lora_name": "{name}@vN", "lora_path": "<adapter folder>"}}')
    return 0


def _fim_sentinels(base: str) -> tuple[str, str, str] | None:
    """The base tokenizer's FIM sentinels (prefix, suffix, middle), as the daemon uses them; None without."""
    from transformers import AutoTokenizer

    from penwright.trainer.prompt_format import FIM_STYLES, fim_style

    style = fim_style(AutoTokenizer.from_pretrained(base).get_vocab())
    return tuple(s.strip() for s in FIM_STYLES[style]) if style else None


FORMATS = {"gguf": _gguf, "ollama": _ollama, "vllm": _vllm}
WRITTEN = ("model", "adapter.gguf", "base.gguf", "model.gguf", "merged-hf", "Modelfile")
