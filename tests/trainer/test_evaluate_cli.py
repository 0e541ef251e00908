"""`penwright eval` and `penwright compare` end to end: a real project, registry, PEFT adapter and train log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pwtest import example_texts

from penwright import cli

ROLE_SYS = {"role": "system", "content": "Write in the author's voice."}


def _split(texts: list[str]) -> tuple[list[dict], list[dict]]:
    rows = []
    for i, t in enumerate(texts):
        paras = [p for p in t.split("\n\n") if len(p.split()) > 20]
        for j in range(1, len(paras)):
            rows.append(
                {
                    "messages": [
                        ROLE_SYS,
                        {"role": "user", "content": "Continue:\n\n" + paras[j - 1]},
                        {"role": "assistant", "content": paras[j]},
                    ],
                    "kind": "continuation",
                    "source": f"{i}.md",
                    "chunk": f"{i}-{j}",
                }
            )
    return rows[3:], rows[:3]


def main(argv: list[str]) -> int:
    """The real entry point, as the shell calls it (the parser reads the verb from sys.argv)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["penwright", *argv])
        return cli.main(argv)


def _adapter(base: Path, out: Path) -> Path:
    """A real PEFT LoRA adapter on the tiny model, with non-zero weights so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(out)
    return out


@pytest.fixture()
def project(example_project: Path, tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    from penwright.trainer.registry import Registry

    texts = example_texts(example_project / "manuscript")
    train, valid = _split(texts)
    ds = example_project / ".penwright" / "datasets" / "current"
    ds.mkdir(parents=True)
    for name, rows in (("train", train), ("valid", valid)):
        (ds / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = example_project / ".penwright" / "runs" / "run-1"
    run.mkdir(parents=True)
    (run / "train_log.json").write_text(
        json.dumps(
            [{"step": s, "loss": 5 - s / 10, "eval_loss": None if s % 2 else 5.2 - s / 11} for s in range(1, 11)]
        )
    )
    adapter = _adapter(tiny_model_dir, tmp_path / "adapter")
    state = example_project / ".penwright"
    reg = Registry(state / "penwright.db", state / "adapters")
    v = reg.publish(adapter, base_model=str(tiny_model_dir), run_id="run-1", dataset_hash="h")
    reg.promote(v.version)
    return example_project, adapter


def test_eval_writes_report_for_the_live_adapter_against_base(project, capsys):
    root, _ = project
    out = root / ".penwright" / "reports" / "t"
    code = main(
        ["eval", "-p", str(root), "--n-samples", "3", "--max-new-tokens", "10", "--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Style score" in printed and "Held-out perplexity" in printed and "report.html" in printed
    rep = json.loads((out / "report.json").read_text())
    base, tuned = rep["sides"]
    assert (base["label"], tuned["label"]) == ("base", "v1")
    assert base["perplexity"] != tuned["perplexity"]  # the adapter really was applied (and switched off for base)
    assert len(tuned["samples"]) == 3 and tuned["samples"][0]["reference"]
    assert tuned["copy_longest"] >= 0  # the copy guard ran against train.jsonl
    assert list(rep["loss"]) == ["run-1 (v1)"] and len(rep["loss"]["run-1 (v1)"]["valid"]) == 5
    assert (out / "report.html").read_text().count("<svg") == 3


def test_eval_names_a_missing_version(project, capsys):
    root, _ = project
    assert main(["eval", "-p", str(root), "--adapter", "v9"]) == 2
    assert "There is no adapter version v9" in capsys.readouterr().err


def test_compare_any_base_and_adapter_without_a_project(project, tiny_model_dir, tmp_path, capsys):
    root, adapter = project
    refs = [str(p) for p in sorted((root / "manuscript").glob("*.md"))]
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--base",
            str(tiny_model_dir),
            "--adapters",
            str(adapter),
            "--reference",
            *refs,
            "--train",
            refs[0],
            "--n-samples",
            "2",
            "--max-new-tokens",
            "8",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert [s["label"] for s in rep["sides"]] == ["base", "adapter"]
    assert rep["sides"][0]["perplexity_detail"]["text"]["tokens"] > 100  # plain-text held-out perplexity
    capsys.readouterr()
    assert main(["compare", "--base", str(tiny_model_dir), "--adapters", str(tmp_path)]) == 2
    assert "Nothing to evaluate against" in capsys.readouterr().err
    assert main(["compare", "--base", str(tiny_model_dir), "--adapters", str(tmp_path), "--reference", refs[0]]) == 2
    assert "not a PEFT adapter folder" in capsys.readouterr().err
