"""Adapter registry: versions, statuses, promote/rollback/reject/delete, names, atomic publish under kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from penwright.errors import RegistryError
from penwright.trainer.registry import Registry


def make_adapter(folder: Path, tag: str = "a", files: int = 3, size: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(f'{{"peft_type": "LORA", "tag": "{tag}"}}')
    for i in range(files):
        (folder / f"part{i}.bin").write_bytes((tag * size)[:size].encode() + bytes([i]))
    return folder


def digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "state" / "penwright.db", tmp_path / "state" / "adapters")


def test_publish_numbers_versions_and_stores_metadata(reg, tmp_path):
    src = make_adapter(tmp_path / "src1", "x")
    v1 = reg.publish(src, base_model="base-a", run_id="r1", dataset_hash="h1", metrics={"eval_loss": 2.5})
    v2 = reg.publish(make_adapter(tmp_path / "src2", "y"), run_id="r2")
    assert (v1.version, v2.version) == (1, 2)
    assert v1.status == "candidate" and v1.name == "penwright" and v1.model_id == "penwright@v1"
    assert v1.path == reg.adapters_dir / "penwright" / "v1"
    assert digest(v1.path) == digest(src)
    assert v1.metrics == {"eval_loss": 2.5} and v1.base_model == "base-a" and v1.dataset_hash == "h1"
    assert v1.format == "peft"
    # a second Registry on the same files sees the same thing (another process, e.g. the CLI)
    again = Registry(reg.database, reg.adapters_dir)
    assert [v.version for v in again.list()] == [1, 2]
    assert again.get(2).run_id == "r2"


def test_promote_rollback_reject_delete(reg, tmp_path):
    vs = [reg.publish(make_adapter(tmp_path / f"s{i}", str(i))) for i in range(4)]
    assert reg.live() is None
    reg.promote(1)
    reg.promote(2)
    assert reg.live().version == 2 and reg.get(1).status == "retired"
    back = reg.rollback()  # to the previously live one
    assert back.version == 1 and reg.live().version == 1 and reg.get(2).status == "retired"
    reg.rollback(3, reason="author asked")  # to any version
    assert reg.live().version == 3 and reg.get(3).reason == "author asked"
    rejected = reg.reject(4, "held-out loss 3.1 worse than live 2.9")
    assert rejected.status == "rejected" and "worse" in rejected.reason
    with pytest.raises(RegistryError, match="live"):
        reg.delete(3)
    with pytest.raises(RegistryError, match="already live"):
        reg.rollback(3)
    reg.delete(2)
    assert not vs[1].path.exists() and [v.version for v in reg.list()] == [1, 3, 4]
    with pytest.raises(RegistryError, match="no adapter version v2"):
        reg.get(2)
    # numbers are never reused after a delete
    assert reg.publish(make_adapter(tmp_path / "s9", "9")).version == 5
    actions = [e["action"] for e in reg.history()]
    assert actions.count("promote") == 4 and "reject" in actions and "delete" in actions and "rollback" in actions


def test_rollback_to_checkpoint_publishes_and_promotes(reg, tmp_path):
    reg.promote(reg.publish(make_adapter(tmp_path / "a", "a")).version)
    ckpt = make_adapter(tmp_path / "run" / "checkpoints" / "step-20" / "adapter", "c")
    v = reg.rollback_to_checkpoint(ckpt, run_id="run1")
    assert v.status == "live" and v.run_id == "run1" and digest(v.path) == digest(ckpt)
    assert reg.get(1).status == "retired"


@pytest.mark.parametrize("bad", ["", "my adapter", "../evil", "a/b", "naïve", "x-y"])
def test_names_are_word_characters_only(reg, tmp_path, bad):
    with pytest.raises(RegistryError, match="not allowed"):
        reg.publish(make_adapter(tmp_path / "s", "s"), bad)
    assert reg.list() == []


def test_publish_refuses_missing_or_empty_folder(reg, tmp_path):
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(RegistryError, match="not an adapter folder"):
            reg.publish(src)


def test_names_are_separate_lines(reg, tmp_path):
    a = reg.publish(make_adapter(tmp_path / "a", "a"), "penwright")
    b = reg.publish(make_adapter(tmp_path / "b", "b"), "other_book")
    reg.promote(a.version)
    reg.promote(b.version)
    assert reg.live("penwright").version == a.version and reg.live("other_book").version == b.version
    assert [v.version for v in reg.list("other_book")] == [b.version]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import penwright.trainer.registry as R

    point, db, adapters, src = sys.argv[1:5]
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace, real_fsync_dir = os.replace, R.fsync_dir
    if point == "copy":
        import shutil
        real_copy = shutil.copy2
        calls = []
        def copy2(s, d, **k):
            calls.append(s)
            if len(calls) == 3:
                die()
            return real_copy(s, d, **k)
        orig_copytree = shutil.copytree
        R.shutil.copytree = lambda s, d: orig_copytree(s, d, copy_function=copy2)
    elif point == "fsync":
        R.fsync_tree = die
    elif point == "after_rename":
        def fsync_dir(path):
            if Path(path).name == "penwright":
                die()
            return real_fsync_dir(path)
        R.fsync_dir = fsync_dir
    elif point == "none":
        pass
    reg = R.Registry(db, adapters)
    reg.publish(src, metrics={"point": point})
    print("published")
    """
)


@pytest.mark.parametrize("point", ["copy", "fsync", "after_rename"])
def test_kill_during_publish_leaves_registry_consistent(reg, tmp_path, point):
    reg.publish(make_adapter(tmp_path / "good", "g"))
    src = make_adapter(tmp_path / "new", "n", files=6)
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(reg.database), str(reg.adapters_dir), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    reopened = Registry(reg.database, reg.adapters_dir)  # sweeps what the crash left
    assert [v.version for v in reopened.list()] == [1]
    leftovers = sorted(p.name for p in (reg.adapters_dir / "penwright").iterdir())
    assert leftovers == ["v1"]
    # and publishing still works, with the next number after the crashed one's
    nxt = reopened.publish(src)
    assert digest(nxt.path) == digest(src) and nxt.version >= 2


def test_random_kills_never_expose_a_partial_adapter(reg, tmp_path):
    """kill -9 at arbitrary moments of a publish of a larger adapter: every visible version is complete."""
    src = make_adapter(tmp_path / "big", "b", files=40, size=200_000)
    want = digest(src)
    for delay in (0.05, 0.15, 0.3, 0.5, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLER, "none", str(reg.database), str(reg.adapters_dir), str(src)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        reopened = Registry(reg.database, reg.adapters_dir)
        for v in reopened.list():
            assert digest(v.path) == want, f"v{v.version} incomplete after kill at {delay}s"
        names = (
            {p.name for p in (reg.adapters_dir / "penwright").iterdir()}
            if (reg.adapters_dir / "penwright").exists()
            else set()
        )
        assert names == {f"v{v.version}" for v in reopened.list()}
