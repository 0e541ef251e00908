"""How selected lore reaches the model: the formats the adapter is trained with.

Two shapes, one lore block (`Selection.text`, made by `penwright.rag.select.render`):

- chat: a system-context block (`system_block`), merged into the request's
  system message or added as the first message (`inject_chat`);
- completion / fill-in-the-middle: a compact preamble (`preamble`) put in front
  of the text, after a leading FIM sentinel when there is one (`inject_completion`).

The lore block looks like:

    <lore>
    [Maren Vell (character)]
    Keeper of the Carrow Point light for eleven winters. ...
    History: Her brother Edwin drowned on the Widow's Teeth ...
    </lore>

Training pairs that teach an adapter to use lore must use these same strings
(the trainer cannot import this package: copy the literal format, it is part
of the contract in docs/architecture.md).
"""

from __future__ import annotations

from penwright.rag.select import Selection

OPEN, CLOSE = "<lore>", "</lore>"
SYSTEM_HEADER = "Story notes for the passage below: keep these facts consistent, and do not copy them into the text."
FIM_PREFIXES = ("<|fim_prefix|>", "<fim_prefix>", "<PRE>", "<|fim▁begin|>")


def _block(text: str) -> str:
    return f"{OPEN}\n{text}\n{CLOSE}"


def system_block(selection: Selection | str) -> str:
    """The system-context block for chat requests ('' when nothing was selected)."""
    text = selection.text if isinstance(selection, Selection) else selection
    return f"{SYSTEM_HEADER}\n{_block(text)}" if text else ""


def preamble(selection: Selection | str) -> str:
    """The compact preamble for completion and FIM prompts ('' when nothing was selected)."""
    text = selection.text if isinstance(selection, Selection) else selection
    return f"{_block(text)}\n\n" if text else ""


def inject_chat(messages: list[dict], selection: Selection | str) -> list[dict]:
    """A new message list with the lore block in the system message; the input is not modified."""
    block = system_block(selection)
    out = [dict(m) for m in messages]
    if not block:
        return out
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content'].rstrip()}\n\n{block}" if out[0]["content"].strip() else block
    else:
        out.insert(0, {"role": "system", "content": block})
    return out


def inject_completion(prompt: str, selection: Selection | str) -> str:
    """The prompt with the lore preamble in front of the story text (inside a leading FIM prefix sentinel)."""
    pre = preamble(selection)
    if not pre:
        return prompt
    for sentinel in FIM_PREFIXES:
        if prompt.startswith(sentinel):
            return sentinel + pre + prompt[len(sentinel) :]
    return pre + prompt
