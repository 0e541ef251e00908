"""Settings are declared once: extension/package.json's penwright.* keys and the server's schema agree."""

from __future__ import annotations

import json

from lsp_support import REPO

from penwright.server.lsp.settings import CLIENT_ONLY_KEYS, LspSettings


def test_package_json_declares_exactly_the_server_settings_with_the_same_defaults():
    props = json.loads((REPO / "extension" / "package.json").read_text())["contributes"]["configuration"]["properties"]
    declared = {k.removeprefix("penwright."): v for k, v in props.items()}
    schema = {f.alias or name: f for name, f in LspSettings.model_fields.items()}
    assert set(declared) - CLIENT_ONLY_KEYS == set(schema), "package.json and LspSettings list different keys"
    for key, field in schema.items():
        assert declared[key]["default"] == field.default, (
            f"penwright.{key}: package.json {declared[key]['default']!r} vs server {field.default!r}"
        )
        assert declared[key]["description"], key
    # the extension's own keys are known to the server (ignored there, never reported as typos)
    extension_only = {"pythonPath", "serverCommand", "languages"}
    assert extension_only <= set(declared) and extension_only <= CLIENT_ONLY_KEYS
