"""The gate: a finished run is a candidate; it goes live only if it is not worse than what is live.

Measurements (held-out eval loss of the candidate and of the reference on the
same fixed validation split, plus a small style check of generated samples) are
taken in the training child (`runner_child`), where the model already is. This
module decides and acts: publish the candidate to the registry, promote it
(hot-swap into the engine, publish upstream in proxy mode) or reject it with
the reason, which stays in the registry. The first adapter is compared with the
base model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

# Style scores (0-100, higher is closer to the author) of tiny samples are noisy: only a large drop blocks.
STYLE_TOLERANCE_POINTS = 10.0


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
            "decision": self.decision, "reason": self.reason, "candidate": self.candidate,
            "reference": self.reference, "reference_name": self.reference_name,
        }


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def decide(candidate: dict, reference: dict, margin: float, reference_name: str = "base") -> GateDecision:
    """Promote when eval loss is at most `margin` (relative) worse and the style score did not collapse."""
    cand_loss, ref_loss = _num(candidate.get("eval_loss")), _num(reference.get("eval_loss"))
    d = lambda decision, reason: GateDecision(decision, reason, candidate, reference, reference_name)  # noqa: E731
    if cand_loss is None:
        return d("reject", "the candidate has no finite held-out eval loss (diverged, or no validation rows)")
    if ref_loss is not None:
        limit = ref_loss * (1.0 + margin)
        if cand_loss > limit:
            return d("reject", f"held-out eval loss {cand_loss:.4f} is worse than {reference_name}'s {ref_loss:.4f} "
                               f"by more than the {margin:.0%} margin")
    cand_style, ref_style = _num(candidate.get("style_score")), _num(reference.get("style_score"))
    if cand_style is not None and ref_style is not None and cand_style < ref_style - STYLE_TOLERANCE_POINTS:
        return d("reject", f"style score {cand_style:.1f} fell more than {STYLE_TOLERANCE_POINTS:.0f} points "
                           f"below {reference_name}'s {ref_style:.1f}")
    if ref_loss is None:
        return d("promote", f"eval loss {cand_loss:.4f}; nothing to compare with")
    return d("promote", f"held-out eval loss {cand_loss:.4f} vs {reference_name}'s {ref_loss:.4f} "
                        f"(margin {margin:.0%})")


class Gate:
    """Publishes a run's adapter, decides, promotes or rejects, and tells everyone."""

    def __init__(self, registry, publish: Callable[[str, dict], None], swap: Callable[[object], None],
                 margin: float, upstream: Callable[[object], None] | None = None):
        self.registry, self.publish, self.swap = registry, publish, swap
        self.margin, self.upstream = margin, upstream

    def judge(self, result: dict, job_id: int | None = None):
        """`result` from the child: adapter_dir, run_id, base_model, dataset_hash, metrics, reference."""
        metrics = dict(result.get("metrics") or {})
        reference = dict(result.get("reference") or {})
        ref_name = result.get("reference_name") or "base"
        version = self.registry.publish(
            result["adapter_dir"], base_model=result.get("base_model", ""), run_id=result.get("run_id"),
            dataset_hash=result.get("dataset_hash"), metrics={**metrics, "reference": reference, "reference_name": ref_name},
        )
        decision = decide(metrics, reference, self.margin, ref_name)
        self.publish("gate", job_id=job_id, version=version.version, decision=decision.decision,
                     reason=decision.reason, candidate=metrics, reference=reference, reference_name=ref_name)
        if decision.promote:
            self.promote(version.version, decision.reason)
        else:
            self.registry.reject(version.version, decision.reason)
            self.publish("adapter.rejected", version=version.version, reason=decision.reason, job_id=job_id)
        return version.version, decision

    def promote(self, version: int, reason: str | None = None, rolled_back: bool = False):
        """Make `version` live in the registry and in the engine (and upstream)."""
        adapter = (self.registry.rollback(version, reason=reason) if rolled_back
                   else self.registry.promote(version, reason))
        self.swap(adapter)
        if self.upstream is not None:
            try:
                self.upstream(adapter)
            except Exception as err:  # the local engine serves it either way
                self.publish("error", message=f"publishing v{version} upstream failed: {err}")
        kind = "adapter.rolled_back" if rolled_back else "adapter.promoted"
        self.publish(kind, version=version, model=adapter.model_id, reason=reason, metrics=adapter.metrics)
        return adapter
