"""LoRA adapters side by side in one PeftModel, for the torch backend (engine thread only).

- Adapters live in PEFT "slots" (s0, s1...). An unloaded adapter's slot is kept as a spare, and
  a later adapter with the same LoRA shape (rank, alpha, targets) is loaded by copying its
  tensors into the spare: a hot-swap of a retrained version then costs tensor copies, not
  module injection (hundreds of ms of Python on a 7B model).
- The live adapter can be merged into the base weights while only it is in use; the LoRA
  wrappers are then bypassed (their base layers put back in their parents), so a decode step
  runs the plain model's modules. Anything else (another adapter, base, another scale)
  restores the wrappers and unmerges first.
"""

from __future__ import annotations

import json
from pathlib import Path

from penwright.errors import ServeError

MAX_SPARE = 2
_LORA_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
_NOT_SHAPE = {"base_model_name_or_path", "revision", "inference_mode", "task_type", "peft_version", "runtime_config"}


def signature(config) -> str:
    return json.dumps({k: v for k, v in config.to_dict().items() if k not in _NOT_SHAPE}, sort_keys=True, default=str)


class LoraSlots:
    def __init__(self, backend):
        self.backend = backend  # holds .model (plain model, or PeftModel once an adapter is added)
        self.scales: dict[str, float] = {}  # engine adapter name -> its own scale
        self.slot_of: dict[str, str] = {}
        self.sig: dict[str, str] = {}  # slot -> LoRA shape signature
        self.spare: dict[str, str] = {}  # unused slot -> signature
        self.layers: list = []  # every LoraLayer
        self.sites: list = []  # (parent module, attribute, LoraLayer) to bypass wrappers when merged
        self.state: tuple | None = None
        self.merged: str | None = None  # slot merged into the base weights
        self.changes = 0  # bumped whenever weights or modules change (graphs check their weights then)
        self._next = 0

    @property
    def model(self):
        return self.backend.model

    @property
    def merged_adapter(self) -> str | None:
        return next((n for n, s in self.slot_of.items() if s == self.merged), None) if self.merged else None

    # ---- loading -------------------------------------------------------------------------------
    def add(self, name: str, path: Path, scale: float, config, weights: dict) -> None:
        sig = signature(config)
        self.unmerge()  # bypassed wrappers' parameters are not reachable for copying
        slot = next((s for s, g in self.spare.items() if g == sig), None)
        if slot is not None and self._copy_into(slot, weights):
            del self.spare[slot]
        else:
            slot = self._inject(config, weights, path)
        self.slot_of[name], self.sig[slot], self.scales[name] = slot, sig, scale
        self.state = None

    def _inject(self, config, weights: dict, path: Path) -> str:
        from peft import PeftModel, set_peft_model_state_dict
        from peft.tuners.lora import LoraLayer

        self.unmerge()
        self.changes += 1
        slot = f"s{self._next}"
        self._next += 1
        if hasattr(self.model, "peft_config"):
            self.model.add_adapter(slot, config, low_cpu_mem_usage=True, autocast_adapter_dtype=False)
        else:
            self.backend.model = PeftModel(
                self.model, config, adapter_name=slot, low_cpu_mem_usage=True, autocast_adapter_dtype=False
            )
        result = set_peft_model_state_dict(self.model, weights, adapter_name=slot, low_cpu_mem_usage=True)
        self.model.eval()
        self.layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        self.sites = [
            (parent, attr, child)
            for parent in self.model.modules()
            for attr, child in parent.named_children()
            if isinstance(child, LoraLayer)
        ]
        missing = [k for k in getattr(result, "missing_keys", []) if f".{slot}." in k or k.endswith(f".{slot}")]
        if missing:
            self.sig[slot] = ""
            self._delete(slot)
            raise ServeError(
                f"{path} does not fit this base model ({len(missing)} adapter weights missing, e.g. {missing[0]}).",
                "Was it trained on another base model? Check model.base.",
            )
        return slot

    def _copy_into(self, slot: str, weights: dict) -> bool:
        """Copy saved adapter tensors into an existing slot of the same shape; False if they do not line up."""
        import torch

        params = dict(self.model.named_parameters())
        targets = []
        for key, value in weights.items():
            part = next((p for p in _LORA_PARTS if f".{p}." in key or key.endswith(f".{p}")), None)
            if part is None:
                return False
            name = key.replace(f".{part}.", f".{part}.{slot}.") if f".{part}." in key else f"{key}.{slot}"
            param = params.get(name, params.get(f"{name}.weight"))
            if param is None or param.shape != value.shape:
                return False
            targets.append((param, value))
        if len(targets) != sum(1 for n in params if f".{slot}." in n or n.endswith(f".{slot}")):
            return False
        with torch.no_grad():
            for param, value in targets:
                param.copy_(value)
        return True

    def remove(self, name: str) -> None:
        slot = self.slot_of.pop(name, None)
        if slot is None:
            return
        del self.scales[name]
        if self.merged == slot:
            self.unmerge()
        if len(self.spare) < MAX_SPARE and self.sig.get(slot):
            self.spare[slot] = self.sig[slot]  # keep its modules for the next adapter of this shape
        else:
            self._delete(slot)
        self.state = None

    def _delete(self, slot: str) -> None:
        self.unmerge()
        self.changes += 1
        self.sig.pop(slot, None)
        if not self.slot_of and not self.spare:
            self.backend.model = self.model.unload()  # back to the plain base model
            self.layers, self.sites = [], []
        else:
            self.model.delete_adapter(slot)
        self.state = None

    # ---- activation ----------------------------------------------------------------------------
    def activate(self, adapter: str | None, scale: float | None, merge_target: str | None, merge_live: bool) -> None:
        """Make the next forward pass use `adapter` (None: base) at its scale times `scale`."""
        effective = None if adapter is None else self.scales[adapter] * (1.0 if scale is None else scale)
        if self.state == (adapter, effective) or (adapter is None and not self.layers):
            return
        slot = self.slot_of.get(adapter) if adapter is not None else None
        merge = merge_live and adapter is not None and adapter == merge_target and effective == 1.0
        switch = self.state is None or self.state[0] != adapter
        if self.merged and (switch or not merge):
            self.unmerge()
            switch = True
        if slot is None:
            for layer in self.layers:
                layer.enable_adapters(False)
        elif not self.merged:
            if switch:
                self.model.base_model.set_adapter(slot)
            for layer in self.layers:
                layer.enable_adapters(True)
                layer.set_scale(slot, effective)
            if merge:
                self._merge(slot)
        self.state = (adapter, effective)

    def _merge(self, slot: str) -> None:
        for layer in self.layers:
            layer.merge(adapter_names=[slot])
        for parent, attr, layer in self.sites:  # the merged weights are in the base layers: skip the wrappers
            setattr(parent, attr, layer.get_base_layer())
        self.merged = slot
        self.changes += 1

    def unmerge(self) -> None:
        """Put the wrappers back and take the merged adapter out of the base weights (bf16: ~1 ulp of noise)."""
        if not self.merged:
            return
        for parent, attr, layer in self.sites:
            setattr(parent, attr, layer)
        for layer in self.layers:
            if layer.merged:
                layer.unmerge()
        self.merged = None
        self.state = None
        self.changes += 1
