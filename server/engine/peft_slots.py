"""LoRA adapters side by side in one PeftModel, for the torch backend (engine thread only).

- Adapters live in PEFT "slots" (s0, s1...). An unloaded adapter's slot is kept as a spare, and
  a later adapter with the same LoRA shape (rank, alpha, targets) is loaded by copying its
  tensors into the spare: a hot-swap of a retrained version then costs tensor copies, not
  module injection (hundreds of ms of Python on a 7B model).
- With `spares` > 0, the first adapter of a LoRA shape is injected with that many spare slots beside it
  (a one-off cost at the first load), so promotions that follow while older versions still serve
  requests copy tensors instead of injecting modules. Copying into a spare needs no unmerge of the live
  adapter: the slots' LoRA tensors are reached through the LoRA layers, wrappers bypassed or not.
- The live adapter can be merged into the base weights while only it is in use; the LoRA
  wrappers are then bypassed (their base layers put back in their parents), so a decode step
  runs the plain model's modules. Anything else (another adapter, base, another scale)
  restores the wrappers and unmerges first. Plain LoRA on Linear layers merges with one in-place
  `addmm_` per layer (W += s * B @ A), not PEFT's merge (a delta tensor and its checks per layer).
"""

from __future__ import annotations

import json
from pathlib import Path

from penwright.errors import ServeError

MAX_SPARE = 6  # spare slots kept (per backend) when adapters are unloaded
_LORA_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
_NOT_SHAPE = {"base_model_name_or_path", "revision", "inference_mode", "task_type", "peft_version", "runtime_config"}


def signature(config) -> str:
    return json.dumps({k: v for k, v in config.to_dict().items() if k not in _NOT_SHAPE}, sort_keys=True, default=str)


class LoraSlots:
    def __init__(self, backend, spares: int = 0):
        self.backend = backend  # holds .model (plain model, or PeftModel once an adapter is added)
        self.spares_ahead = spares  # spare slots injected beside the first adapter of a shape
        self.scales: dict[str, float] = {}  # engine adapter name -> its own scale
        self.slot_of: dict[str, str] = {}
        self.sig: dict[str, str] = {}  # slot -> LoRA shape signature
        self.spare: dict[str, str] = {}  # unused slot -> signature
        self.layers: list = []  # every LoraLayer
        self.sites: list = []  # (parent module, attribute, LoraLayer) to bypass wrappers when merged
        self.by_name: dict = {}  # module path -> LoraLayer (reachable while wrappers are bypassed)
        self._fast: list = []  # layers merged by addmm_ (unmerged the same way)
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
        slot = next((s for s, g in self.spare.items() if g == sig), None)
        if slot is not None and self._copy_into(slot, weights):
            del self.spare[slot]
        else:
            first = sig not in self.sig.values()
            slot = self._inject(config, weights, path)
            if first:
                for _ in range(self.spares_ahead):
                    self.spare[self._inject(config, None, path)] = sig
        self.slot_of[name], self.sig[slot], self.scales[name] = slot, sig, scale
        self.state = None

    def _inject(self, config, weights: dict | None, path: Path) -> str:
        """A new slot holding `weights` (None: PEFT's initialisation, for a spare)."""
        from peft import PeftModel, set_peft_model_state_dict
        from peft.tuners.lora import LoraLayer

        self.unmerge()
        self.changes += 1
        slot = f"s{self._next}"
        self._next += 1
        lazy = weights is not None  # tensors on the meta device until the weights are loaded; a spare's are real
        if hasattr(self.model, "peft_config"):
            self.model.add_adapter(slot, config, low_cpu_mem_usage=lazy, autocast_adapter_dtype=False)
        else:
            self.backend.model = PeftModel(
                self.model, config, adapter_name=slot, low_cpu_mem_usage=lazy, autocast_adapter_dtype=False
            )
        if weights is None:  # a spare: its tensors are written when an adapter is copied in
            self.sig[slot] = signature(config)
        result = (
            set_peft_model_state_dict(self.model, weights, adapter_name=slot, low_cpu_mem_usage=True)
            if weights is not None
            else None
        )
        self.model.eval()
        self.by_name = {n: m for n, m in self.model.named_modules() if isinstance(m, LoraLayer)}
        self.layers = list(self.by_name.values())
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
        """Copy saved adapter tensors into an existing slot of the same shape; False if they do not line up.
        The slot's tensors are found through the LoRA layers, so the live adapter may stay merged."""
        import torch

        targets = []
        for key, value in weights.items():
            part = next((p for p in _LORA_PARTS if f".{p}." in key or key.endswith(f".{p}")), None)
            layer = self.by_name.get(key[: key.find(f".{part}")]) if part is not None else None
            store = getattr(layer, part, None) if layer is not None else None
            held = store[slot] if store is not None and slot in store else None
            param = held if isinstance(held, torch.Tensor) else getattr(held, "weight", None)
            if param is None or param.shape != value.shape:
                return False
            targets.append((param, value))
        held = sum(1 for layer in self.layers for p in _LORA_PARTS if slot in (getattr(layer, p, None) or {}))
        if len(targets) != held:
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
            self.layers, self.sites, self.by_name = [], [], {}
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
            if self._fold(layer, slot, 1.0):
                self._fast.append(layer)
            else:
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
        for layer in self._fast:
            self._fold(layer, self.merged, -1.0)
        self._fast = []
        for layer in self.layers:
            if layer.merged:
                layer.unmerge()
        self.merged = None
        self.state = None
        self.changes += 1

    @staticmethod
    def _fold(layer, slot: str, sign: float) -> bool:
        """W += sign * scaling * B @ A in place (one kernel) for plain LoRA on a Linear layer; False for anything
        else (DoRA and other variants, LoRA bias, fan-in-fan-out, embeddings, quantized bases), which PEFT merges."""
        from peft.tuners.lora import Linear

        if type(layer) is not Linear or slot not in layer.lora_A or layer.fan_in_fan_out:
            return False
        if slot in getattr(layer, "lora_variant", {}) or layer.lora_bias.get(slot):
            return False
        weight = layer.get_base_layer().weight
        a, b = layer.lora_A[slot].weight, layer.lora_B[slot].weight  # (r, in), (out, r)
        weight.data.addmm_(b.to(weight.dtype), a.to(weight.dtype), alpha=sign * layer.scaling[slot])
        return True
