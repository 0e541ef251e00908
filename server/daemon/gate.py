"""The gate: a finished run is a candidate; it goes live only if it is not worse than what is live.

Measurements (held-out eval loss of the candidate and of the reference on the
same fixed validation split, plus a small style check of generated samples) are
taken in the training child (`child_main`), where the model already is. This
module decides and acts: publish the candidate to the registry, promote it
(hot-swap into the engine, publish upstream in proxy mode) or reject it with
the reason, which stays in the registry. The first adapter is compared with the
base model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class GateDecision:
    decision: str  # "promote" | "reject"
    reason: str
    candidate: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    reference_name: str = "base"

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "candidate": self.candidate,
            "reference": self.reference,
            "reference_name": self.reference_name,
        }


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def relative_limits(reference: dict, samples: int | None = None):
    """Guard limits, loosened to what the reference itself does: a candidate must not be WORSE than it.

    A random-init demo base already "loops" or emits special tokens; the guards judge the candidate against
    that, not against an absolute bar it could never pass. The share guards (copying, leaks) are counted over
    only `samples` generations, so one sample more than the reference is within noise.
    """
    from penwright.trainer.evaluate.guards import GuardLimits

    d = GuardLimits.default()
    ref = lambda k, default: _num(reference.get(k)) if _num(reference.get(k)) is not None else default  # noqa: E731
    one = 1.0 / samples if samples else 0.0
    return GuardLimits(
        copy_words=d.copy_words,
        max_copy_share=max(d.max_copy_share, ref("copy_share", 0.0) + one),
        max_repetition=max(d.max_repetition, ref("repetition", 0.0)),
        min_distinct_2=min(d.min_distinct_2, ref("distinct_2", 1.0)),
        max_leak_share=max(d.max_leak_share, ref("leak_share", 0.0) + one),
    )


def decide(candidate: dict, reference: dict, margin: float, reference_name: str = "base") -> GateDecision:
    """Promote when held-out perplexity and style are not worse than the reference's by more than `margin`
    (evaluation's compare_candidates) and no guard got worse. The first adapter's reference is the base."""
    from penwright.trainer.evaluate.gate import compare_candidates

    d = lambda ok, reason: GateDecision("promote" if ok else "reject", reason, candidate, reference, reference_name)  # noqa: E731
    if _num(candidate.get("perplexity")) is None and _num(candidate.get("loss")) is None:
        return d(False, "rejected: the candidate has no finite held-out loss (diverged, or no validation rows)")
    samples = int(candidate.get("gate_samples") or 0) or None
    ok, reason = compare_candidates(candidate, reference or None, margin, relative_limits(reference or {}, samples))
    return d(ok, f"{reason} (compared with {reference_name})")


class Gate:
    """Publishes a run's adapter, decides, promotes or rejects, and tells everyone."""

    def __init__(
        self,
        registry,
        publish: Callable[[str, dict], None],
        make_live: Callable[[object], None],
        margin: float,
    ):
        self.registry, self.publish, self.make_live, self.margin = registry, publish, make_live, margin

    def judge(self, result: dict, job_id: int | None = None):
        """`result` from the child: adapter_dir, run_id, base_model, dataset_hash, metrics, reference."""
        metrics = dict(result.get("metrics") or {})
        reference = dict(result.get("reference") or {})
        ref_name = result.get("reference_name") or "base"
        version = self.registry.publish(
            result["adapter_dir"],
            base_model=result.get("base_model", ""),
            run_id=result.get("run_id"),
            dataset_hash=result.get("dataset_hash"),
            metrics={**metrics, "reference": reference, "reference_name": ref_name},
        )
        decision = decide(metrics, reference, self.margin, ref_name)
        self.publish(
            "gate",
            job_id=job_id,
            version=version.version,
            decision=decision.decision,
            reason=decision.reason,
            candidate=metrics,
            reference=reference,
            reference_name=ref_name,
        )
        if decision.promote:
            self.promote(version.version, decision.reason)
        else:
            self.registry.reject(version.version, decision.reason)
            self.publish("adapter.rejected", version=version.version, reason=decision.reason, job_id=job_id)
        return version.version, decision

    def promote(self, version: int, reason: str | None = None, rolled_back: bool = False):
        """Make `version` live in the registry, then in what serves (the engine, or the upstream in proxy mode)."""
        adapter = (
            self.registry.rollback(version, reason=reason) if rolled_back else self.registry.promote(version, reason)
        )
        self.make_live(adapter)
        kind = "adapter.rolled_back" if rolled_back else "adapter.promoted"
        self.publish(kind, version=version, model=adapter.model_id, reason=reason, metrics=adapter.metrics)
        return adapter
