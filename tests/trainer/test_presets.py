"""Every preset in configs/ validates; presets say what the issue promises; bad values are named with their line."""

from __future__ import annotations

import pytest

from penwright.errors import SettingsError
from penwright.trainer.presets import PRESET_NAMES, list_presets, load_training_settings
from penwright.trainer.settings import TrainingChoice


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_each_preset_validates(name):
    s = load_training_settings(name)
    assert s.rank >= 1 and s.learning_rate > 0
    assert isinstance(s.learning_rate, float)  # "5.0e-4" / "1e-5" read as numbers, not strings


def test_presets_folder_holds_exactly_the_documented_presets():
    assert set(list_presets()) == set(PRESET_NAMES)


def test_preset_contents():
    assert load_training_settings("dora").method == "dora"
    kl = load_training_settings("kl")
    assert kl.kl_lambda > 0 and kl.method == "lora"
    dk = load_training_settings("dora_kl")
    assert dk.method == "dora" and dk.kl_lambda > 0
    p = load_training_settings("persona_14b_4bit")
    assert (p.rank, p.scale, p.dropout, p.targets) == (64, 2.0, 0.1, "auto")
    assert (p.batch_size, p.grad_accumulation, p.learning_rate, p.gradient_checkpointing) == (1, 4, 1e-5, True)
    assert p.quantization == "4bit"
    fast = load_training_settings("fast")
    assert fast.max_steps is None and fast.epochs == 1.0 and fast.max_minutes <= 4  # one pass, fit to minutes
    assert (fast.targets, fast.rank, fast.max_seq_length) == ("attn_mlp", 16, 1024)


def test_overrides_apply_and_bad_values_are_reported(tmp_path):
    s = load_training_settings(TrainingChoice(preset="fast", overrides={"max_steps": 7, "rank": 4}))
    assert (s.max_steps, s.rank) == (7, 4)
    with pytest.raises(SettingsError) as err:
        load_training_settings(TrainingChoice(preset="fast", overrides={"rank": 0, "learning_rate": -1}))
    msg = str(err.value)
    assert "rank" in msg and "learning_rate" in msg and "fast.yaml" in msg
    bad = tmp_path / "mine.yaml"
    bad.write_text("rank: 8\nlernig_rate: 0.1\nlearning_rate: 1e-5\n")
    with pytest.raises(SettingsError, match=r"line 2: unknown key 'lernig_rate'"):
        load_training_settings(str(bad))
    good = tmp_path / "ok.yaml"
    good.write_text("rank: 8\nlearning_rate: 1e-5\n")
    assert load_training_settings(str(good)).learning_rate == 1e-5
    with pytest.raises(SettingsError, match="unknown training preset 'fastest'"):
        load_training_settings("fastest")
