"""`penwright doctor`: what this machine can do for Penwright, and what to do about each problem."""

from __future__ import annotations

import argparse
import importlib.util
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from penwright.cli.common import add_project_argument
from penwright.errors import PenwrightError


@dataclass
class Check:
    name: str
    ok: bool | None  # None = informational
    detail: str
    fix: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)


def _torch_checks() -> list[Check]:
    if importlib.util.find_spec("torch") is None:
        return [Check("torch", False, "not installed", "Install Penwright with the README's command (it pins torch).")]
    import torch

    checks = [Check("torch", True, f"{torch.__version__}")]
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        name = torch.cuda.get_device_name(0)
        checks.append(Check("cuda", True, f"{name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"))
    else:
        checks.append(Check("cuda", None, "no CUDA GPU: training and serving use the CPU (or MLX on Apple Silicon)"))
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if torch.cuda.is_available():
        checks.append(
            Check(
                "bitsandbytes",
                has_bnb,
                "installed: 4-bit/8-bit (QLoRA) available" if has_bnb else "missing",
                "" if has_bnb else "pip install 'penwright[cuda]' for 4-bit/8-bit base models",
            )
        )
    else:
        checks.append(Check("quantization", None, "4-bit/8-bit needs CUDA; not available here"))
    return checks


def _mlx_check() -> Check:
    if importlib.util.find_spec("mlx") is None:
        on_mac = platform.system() == "Darwin" and platform.machine() == "arm64"
        return Check(
            "mlx",
            None if not on_mac else False,
            "not installed",
            "pip install 'penwright[mlx]' to train and serve with MLX" if on_mac else "",
        )
    return Check("mlx", True, "mlx-lm available")


def _host_checks(root: Path) -> list[Check]:
    import psutil

    mem = psutil.virtual_memory()
    disk = shutil.disk_usage(root)
    checks = [
        Check(
            "memory",
            mem.available > 4 * 2**30,
            f"{mem.available / 2**30:.1f} GiB free of {mem.total / 2**30:.1f}",
            "Close other programs; a 0.5B model needs about 4 GiB to train on CPU.",
        )
    ]
    checks.append(
        Check(
            "disk",
            disk.free > 5 * 2**30,
            f"{disk.free / 2**30:.1f} GiB free at {root}",
            "Free some space: each adapter version is 5-500 MB, checkpoints more.",
        )
    )
    return checks


def _model_check(project) -> Check:
    from penwright.trainer.models import BUILTIN_TINY, resolve_model

    spec = project.settings.model.base
    if spec == BUILTIN_TINY:
        return Check(
            "model",
            None,
            "builtin:tiny: a demo model built from your text, not for real writing",
            "Set model.base to a real model (see README: Real models and GPUs).",
        )
    try:
        where = resolve_model(spec, project.paths.models)
    except PenwrightError as err:
        return Check("model", False, err.message, err.hint)
    return Check("model", True, f"{spec} -> {where}")


def _preset_check(project) -> Check:
    from penwright.trainer.presets import load_training_settings

    choice = project.settings.training
    try:
        load_training_settings(choice, None, project.root)
    except PenwrightError as err:
        return Check("preset", False, err.message.replace("\n", " "), err.hint)
    return Check(
        "preset", True, f"{choice.preset}" + (f" with overrides {choice.overrides}" if choice.overrides else "")
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from penwright.project import load_project

    checks = _torch_checks() + [_mlx_check()]
    root = Path.cwd()
    try:
        project = load_project(args.project)
        root = project.root
        checks.append(Check("project", True, f"{project.root} ({project.settings.title})"))
        checks.append(_model_check(project))
        for folder in project.manuscript_dirs:
            checks.append(Check("manuscript", folder.is_dir(), str(folder), "Create it or fix manuscript.folders."))
        checks.append(Check("lore", project.lore_dir.is_dir(), str(project.lore_dir), "Create it or fix lore.folder."))
        checks.append(_preset_check(project))
    except PenwrightError as err:
        checks.append(Check("project", False, err.message, err.hint))
    checks += _host_checks(root)
    console = Console()
    mark = {True: "[green]ok[/]", False: "[red]!![/]", None: "[blue]--[/]"}
    for c in checks:
        console.print(f"{mark[c.ok]} {c.name:<13} {c.detail}", highlight=False)
        if c.fix and c.ok is not True:
            console.print(f"   {'':<13} -> {c.fix}", highlight=False)
    return 1 if any(c.ok is False for c in checks) else 0
