"""`training.report_to`: TensorBoard event files for a run (read back with TensorBoard's own reader), none
when asked for none, and the same figures reach the progress callback (the dashboard's source) unchanged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, write_dataset

from penwright.trainer.settings import TrainingSettings
from penwright.trainer.train import run_training

RUN = dict(
    rank=4,
    alpha=8,
    dropout=0.0,
    learning_rate=3e-3,
    max_seq_length=160,
    batch_size=2,
    warmup_steps=2,
    eval_every=3,
    save_every=6,
    max_steps=6,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), paragraphs(EXAMPLE_MANUSCRIPT))


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_hold_the_runs_curves(dataset, tiny_model_dir, tmp_path):
    seen = []
    run = tmp_path / "run"
    settings = TrainingSettings(**RUN, report_to="tensorboard")
    run_training(dataset, settings, tiny_model_dir, run, on_progress=seen.append)
    assert [p["step"] for p in seen] == list(range(1, 7))  # the callback still gets every step
    curves = scalars(run / "tensorboard")
    with open(run / "train_log.csv") as fh:
        logged = {int(r["step"]): r for r in csv.DictReader(fh)}
    assert [s for s, _ in curves["train/loss"]] == list(range(1, 7))
    for step, value in curves["train/loss"]:
        assert value == pytest.approx(float(logged[step]["loss"]), abs=1e-5)
    assert [s for s, _ in curves["eval/loss"]] == [3, 6]
    assert [v for _, v in curves["eval/loss"]] == pytest.approx(
        [float(logged[3]["eval_loss"]), float(logged[6]["eval_loss"])], abs=1e-5
    )
    lrs = dict(curves["train/learning_rate"])
    assert lrs[1] < lrs[2] and lrs[2] == pytest.approx(float(logged[2]["lr"]))  # warm-up, as the run logged it
    assert all(v > 0 for _, v in curves["train/tokens_per_second"])


def test_report_to_none_writes_no_event_files(dataset, tiny_model_dir, tmp_path):
    run_training(dataset, TrainingSettings(**{**RUN, "max_steps": 1}, report_to="none"), tiny_model_dir, tmp_path / "r")
    assert not (tmp_path / "r" / "tensorboard").exists()


def test_train_cli_has_the_flag():
    import argparse

    from penwright.cli.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--report-to", "tensorboard"]).report_to == "tensorboard"
    with pytest.raises(SystemExit):
        parser.parse_args(["--report-to", "wandb"])
