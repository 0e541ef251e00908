"""`penwright train`, `penwright adapters ...`, `penwright merge` and `penwright export` on a real project."""

from __future__ import annotations

import json

from train_fixtures import paragraphs, write_dataset

from penwright.cli import main
from penwright.trainer.registry import Registry

FAST = ["--max-seq-length", "160", "--batch-size", "2", "--no-progress", "--rank", "4"]


def test_train_then_manage_adapters(example_project, capsys, tmp_path):
    p = str(example_project)
    write_dataset(example_project / ".penwright" / "datasets" / "current", paragraphs(example_project / "manuscript"))
    assert main(["train", "-p", p, "--max-steps", "2", "--eval-every", "2", "--promote", *FAST]) == 0
    out = capsys.readouterr().out
    assert "step 2/2 loss" in out and "published v1 (live)" in out
    reg = Registry(example_project / ".penwright" / "penwright.db", example_project / ".penwright" / "adapters")
    v1 = reg.live()
    assert v1.version == 1 and v1.metrics["steps"] == 2 and (v1.path / "adapter_config.json").is_file()
    assert v1.dataset_hash and "tiny-" in v1.base_model
    run_dir = example_project / ".penwright" / "runs" / v1.run_id
    assert json.loads((run_dir / "adapter" / "adapter_config.json").read_text())["r"] == 4  # --rank reached peft
    # a warm-started second adapter, from the registry version
    assert main(["train", "-p", p, "--max-steps", "1", "--eval-every", "1", "--init-adapter", "v1", *FAST]) == 0
    assert "published v2 (candidate)" in capsys.readouterr().out
    assert main(["adapters", "-p", p, "promote", "2"]) == 0
    assert main(["adapters", "-p", p, "rollback"]) == 0
    assert "v1 is live" in capsys.readouterr().out and reg.live().version == 1
    assert main(["adapters", "-p", p, "delete", "penwright@v1"]) == 2  # the live one cannot go
    assert "live and cannot be deleted" in capsys.readouterr().err
    assert main(["adapters", "-p", p, "delete", "v2"]) == 0
    assert "deleted v2" in capsys.readouterr().out
    assert main(["adapters", "-p", p, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["status"]) for v in listed] == [(1, "live")]
    # merge and export the live adapter
    assert main(["merge", "-p", p, "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert main(["export", "-p", p, "--format", "ollama", "--out", str(tmp_path / "ollama")]) == 0
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./base.gguf\nADAPTER ./adapter.gguf\n") and "{{ .Suffix }}" in modelfile
    assert 'SYSTEM """' in modelfile and (tmp_path / "ollama" / "adapter.gguf").is_file()
    capsys.readouterr()
    assert main(["export", "-p", p, "--format", "gguf", "--out", str(tmp_path / "gguf")]) == 0
    assert "--lora" in capsys.readouterr().out and (tmp_path / "gguf" / "base.gguf").is_file()
    assert main(["export", "-p", p, "--format", "vllm"]) == 0
    out = capsys.readouterr().out
    assert f"--enable-lora --lora-modules penwright={v1.path.resolve()}" in out and "--max-lora-rank 8" in out
    assert "/v1/load_lora_adapter" in out


def test_train_refuses_bad_flags_and_missing_data(example_project, capsys):
    p = str(example_project)
    assert main(["train", "-p", p, "--max-steps", "2", "--no-progress"]) == 2
    assert "penwright curate" in capsys.readouterr().err
    write_dataset(example_project / ".penwright" / "datasets" / "current", paragraphs(example_project / "manuscript"))
    assert main(["train", "-p", p, "--learning-rate", "-1", "--no-progress"]) == 2
    assert "learning_rate" in capsys.readouterr().err
