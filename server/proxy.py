"""Proxy mode: forward chat/completions to an existing OpenAI-compatible server, and publish adapters to it.

The upstream (vLLM, llama.cpp, Ollama, LM Studio...) runs the model at scale;
Penwright stays the author-facing layer: it still resolves `penwright`/`@vN`/`:base`,
translates FIM prompts, injects lore, and adds its response metadata. Streaming
is relayed chunk by chunk.

Publishing a promoted adapter, by upstream kind:
- vllm: `POST /v1/load_lora_adapter {lora_name, lora_path}` (the server needs
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`); requests then ask for `lora_name`.
- llamacpp: llama-server loads adapters at start (`--lora FILE.gguf`); publishing sets the global
  scales through `POST /lora-adapters`: 1.0 for the adapter whose path names this version, 0 for the rest.
- ollama: a Modelfile (`FROM <upstream.model>` + `ADAPTER <path>`) under `.penwright/exports/ollama/vN/`,
  then `ollama create <name>-vN -f Modelfile`; the command is logged (and returned) when ollama is not installed.
- openai: nothing to publish to; the upstream model is used as it is.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import httpx
from fastapi.responses import JSONResponse, StreamingResponse

from penwright.errors import ServeError
from penwright.server.engine import BASE, LIVE
from penwright.server.protocol import PenwrightMeta
from penwright.server.services.errors import ApiError
from penwright.trainer.prompt_format import completion_prompt

log = logging.getLogger(__name__)


def ollama_adapter(version, folder: Path) -> str:
    """What a Modelfile's ADAPTER names for this version: a GGUF LoRA written into `folder` (Ollama reads
    safetensors adapters only for Llama, Mistral and Gemma), or the PEFT folder when the base cannot be
    converted here (its config is not on this machine, or an architecture the GGUF export does not cover)."""
    from penwright.trainer.gguf_export import GgufExportError, base_config, write_adapter_gguf

    adapter_dir = Path(version.path).resolve()
    try:
        saved = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        base = saved.get("base_model_name_or_path") or version.base_model
        write_adapter_gguf(base_config(base), adapter_dir, folder / "adapter.gguf")
        return "./adapter.gguf"
    except (GgufExportError, OSError, ValueError, KeyError) as err:
        log.warning(
            "v%s: no GGUF adapter for Ollama (%s); the Modelfile names the safetensors folder, which Ollama "
            "loads only for Llama, Mistral and Gemma bases",
            version.version,
            err,
        )
        return str(adapter_dir)


class Upstream:
    def __init__(self, settings, export_dir: Path | str, context_length: int, ollama: str = "ollama"):
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.root = self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url
        self.export_dir = Path(export_dir)
        self.context_length = context_length
        self.ollama = ollama
        self.live_adapter: str | None = None  # the upstream model name serving the live version
        self.published: dict[int, str] = {}  # version -> upstream model name
        self.last_publish: dict | None = None
        # llamacpp: llama-server's adapter ids, and which one serves each published version
        self.lora_ids: list[int] = []
        self.lora_of: dict[int, int] = {}
        self.live_version: int | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- request bodies ------------------------------------------------------------------------
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}

    @staticmethod
    def _passthrough(req, drop: set[str]) -> dict:
        body = req.model_dump(exclude={"penwright", "model", *drop}, exclude_none=True, exclude_unset=True)
        body.update({k: v for k, v in (req.model_extra or {}).items() if k not in body})
        body.setdefault("stream", req.stream)
        return body

    def completion_body(self, req, prefix: str, suffix: str | None, sel) -> dict:
        body = self._passthrough(req, {"prompt", "suffix"})
        body["max_tokens"] = req.max_tokens or 16
        lore = sel.text if sel is not None else None
        if suffix is not None and self.settings.kind == "ollama":  # Ollama takes `suffix` and uses the model's FIM
            body["prompt"], body["suffix"] = completion_prompt(prefix, lore=lore), suffix
        else:  # vLLM has no `suffix`: Qwen sentinels, the common open FIM format
            body["prompt"] = completion_prompt(prefix, suffix, fim="qwen", lore=lore)
        return body

    def chat_body(self, req, messages: list[dict]) -> dict:
        body = self._passthrough(req, {"messages"})
        body["messages"] = messages
        return body

    def model_for(self, target) -> str:
        """The upstream model name for a resolved target."""
        base = self.settings.model or "default"
        if target.adapter == BASE:
            return base
        if target.adapter == LIVE:
            return self.live_adapter or base
        version = target.version.version
        if version not in self.published:
            raise ApiError(
                404,
                f"penwright@v{version} has not been published to the upstream server; only the live version is.",
                "model_not_found",
                "model",
            )
        return self.published[version]

    def lora_for(self, target) -> list[dict] | None:
        """llamacpp: the request's own adapter scales (llama-server's per-request `lora`), or None for other kinds.

        Sent with every request, not only set globally: llama-server keeps a slot's cached prompt across a change
        of the global scales (`POST /lora-adapters`), so a prompt cached under the old adapter would be reused
        under the new one; a request whose own `lora` differs from the slot's clears that cache."""
        if self.settings.kind != "llamacpp" or not self.lora_ids:
            return None
        version = {BASE: None, LIVE: self.live_version}.get(target.adapter, getattr(target.version, "version", None))
        on = self.lora_of.get(version) if version is not None else None
        return [{"id": i, "scale": 1.0 if i == on else 0.0} for i in self.lora_ids]

    # ---- forwarding ----------------------------------------------------------------------------
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout_seconds, headers=self._headers())
        return self._client

    async def respond(self, prepared, http, stream: bool, model_name: str):
        body = dict(prepared.upstream_body)
        body["model"] = self.model_for(prepared.target)
        body["stream"] = stream
        lora = self.lora_for(prepared.target)
        if lora is not None:
            body["lora"] = lora
        path = "/chat/completions" if prepared.kind == "chat" else "/completions"
        meta = PenwrightMeta(adapter=body["model"], lore=prepared.lore, lore_tokens=prepared.lore_tokens)
        headers = {"X-Penwright-Adapter": meta.adapter, "X-Penwright-Lore": ",".join(e.id for e in meta.lore)}
        request = self.client().build_request("POST", self.url + path, json=body)
        try:
            resp = await self.client().send(request, stream=stream)
        except httpx.HTTPError as err:
            raise ApiError(
                502,
                f"The upstream server at {self.url} did not answer: {err.__class__.__name__}: {err}",
                "upstream_unreachable",
            ) from None
        if resp.status_code >= 400:
            await resp.aread()
            await resp.aclose()
            raise self._upstream_error(resp)
        if not stream:
            data = resp.json()
            data["penwright"] = meta.model_dump()
            return JSONResponse(data, headers=headers)
        return StreamingResponse(self._relay(resp, meta), media_type="text/event-stream", headers=headers)

    def _upstream_error(self, resp: httpx.Response) -> ApiError:
        try:
            err = resp.json().get("error", {})
            err = err if isinstance(err, dict) else {"message": str(err)}
        except (ValueError, AttributeError):
            err = {"message": resp.text[:500]}
        status = resp.status_code if resp.status_code < 500 else 502
        return ApiError(
            status,
            f"upstream: {err.get('message') or resp.reason_phrase}",
            err.get("code") or "upstream_error",
            err.get("param"),
        )

    @staticmethod
    async def _relay(resp: httpx.Response, meta: PenwrightMeta):
        """Relay SSE lines; the chunk carrying finish_reason also carries Penwright's metadata."""
        try:
            async for line in resp.aiter_lines():
                if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                    try:
                        data = json.loads(line[5:])
                    except ValueError:
                        yield line + "\n\n"
                        continue
                    if any(c.get("finish_reason") for c in data.get("choices") or []):
                        data["penwright"] = meta.model_dump()
                    yield f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
                elif line.strip():
                    yield line + "\n\n"
        finally:
            await resp.aclose()  # client gone: closing the upstream stream makes the upstream stop too

    # ---- adapter publishing --------------------------------------------------------------------
    def publish(self, version) -> dict:
        """Make the upstream serve this registry version (see the module docstring). Returns what was done."""
        if not self.settings.publish_adapters:
            return {"kind": self.settings.kind, "skipped": "publish_adapters is false"}
        kind = self.settings.kind
        if version.version in self.published and kind != "llamacpp":
            self.live_adapter = self.published[version.version]
            return {"kind": kind, "model": self.live_adapter, "already": True}
        done = {"vllm": self._publish_vllm, "llamacpp": self._publish_llamacpp, "ollama": self._publish_ollama}.get(
            kind, self._publish_none
        )(version)
        self.last_publish = {"version": version.version, **done}
        log.info("published v%s upstream: %s", version.version, done)
        return done

    def _sync_post(self, url: str, payload) -> httpx.Response:
        try:
            return httpx.post(url, json=payload, headers=self._headers(), timeout=self.settings.timeout_seconds)
        except httpx.HTTPError as err:
            raise ServeError(
                f"could not reach the upstream server at {url}: {err}",
                "Check upstream.url in penwright.yaml and that the server is running.",
            ) from None

    def _publish_vllm(self, version) -> dict:
        name = version.model_id
        r = self._sync_post(self.root + "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(version.path)})
        if r.status_code >= 400 and "already" not in r.text.lower():
            raise ServeError(
                f"vLLM refused adapter {name}: {r.status_code} {r.text[:300]}",
                "Start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, with "
                "--max-lora-rank at least the adapter's rank.",
            )
        self.published[version.version] = self.live_adapter = name
        return {"kind": "vllm", "model": name, "request": "POST /v1/load_lora_adapter"}

    def _publish_llamacpp(self, version) -> dict:
        try:
            r = httpx.get(self.root + "/lora-adapters", headers=self._headers(), timeout=self.settings.timeout_seconds)
            loaded = r.json()
        except (httpx.HTTPError, ValueError) as err:
            raise ServeError(f"could not read {self.root}/lora-adapters: {err}", "Is llama-server running?") from None
        tag = f"v{version.version}"
        match = [a for a in loaded if tag in Path(str(a.get("path", ""))).parts or f"{tag}." in str(a.get("path", ""))]
        if not match:
            raise ServeError(
                f"llama-server has no adapter for {tag} loaded (it loads adapters only at start).",
                f"Convert {version.path} to GGUF (llama.cpp's convert_lora_to_gguf.py) into a folder or file named "
                f"{tag}, and restart llama-server with --lora that file.",
            )
        scales = [{"id": a["id"], "scale": 1.0 if a in match[:1] else 0.0} for a in loaded]
        r = self._sync_post(self.root + "/lora-adapters", scales)
        if r.status_code >= 400:
            raise ServeError(f"llama-server refused the adapter scales: {r.status_code} {r.text[:300]}")
        self.published[version.version] = self.settings.model or "default"
        self.live_adapter = self.settings.model
        self.lora_ids, self.live_version = [a["id"] for a in loaded], version.version
        self.lora_of[version.version] = match[0]["id"]
        return {"kind": "llamacpp", "scales": scales, "request": "POST /lora-adapters"}

    def ollama_command(self, version) -> tuple[list[str], Path]:
        """Write the Modelfile for this version; return the `ollama create` command that builds it."""
        if not self.settings.model:
            raise ServeError("upstream.model is not set", "Ollama needs the base model name: set upstream.model.")
        folder = self.export_dir / "ollama" / f"v{version.version}"
        folder.mkdir(parents=True, exist_ok=True)
        modelfile = folder / "Modelfile"
        adapter = ollama_adapter(version, folder)
        modelfile.write_text(f"FROM {self.settings.model}\nADAPTER {adapter}\n", encoding="utf-8")
        return [self.ollama, "create", f"{version.name}-v{version.version}", "-f", str(modelfile)], modelfile

    def _publish_ollama(self, version) -> dict:
        cmd, modelfile = self.ollama_command(version)
        exe = shutil.which(cmd[0])
        name = cmd[2]
        if exe is None:
            log.warning("ollama is not installed here; to publish run: %s", " ".join(cmd))
            return {"kind": "ollama", "command": cmd, "ran": False, "modelfile": str(modelfile)}
        run = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=self.settings.timeout_seconds)
        if run.returncode != 0:
            raise ServeError(
                f"`{' '.join(cmd)}` failed: {run.stderr.strip()[:300]}",
                "Ollama needs a GGUF or safetensors adapter for the same base model as upstream.model.",
            )
        self.published[version.version] = self.live_adapter = name
        return {"kind": "ollama", "command": cmd, "ran": True, "model": name, "modelfile": str(modelfile)}

    def _publish_none(self, version) -> dict:
        log.info("upstream kind %s cannot load adapters; serving its model as it is", self.settings.kind)
        return {"kind": self.settings.kind, "skipped": "this upstream cannot load adapters"}

    # ---- status ----------------------------------------------------------------------------------
    def status(self) -> dict:
        return {
            "url": self.url,
            "kind": self.settings.kind,
            "model": self.settings.model,
            "live_adapter": self.live_adapter,
            "last_publish": self.last_publish,
        }

    def close(self) -> None:
        self._client = None  # the AsyncClient belongs to the server's loop, which is closing too
