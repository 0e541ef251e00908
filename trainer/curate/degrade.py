"""Degraded inputs for the many-to-one persona pairs: several plain versions of a passage, one original.

`RuleDegrader` works offline with no model: word lists and regular expressions.
`ChatDegrader` asks a chat model (the configured base model, or an upstream
OpenAI-compatible endpoint) and falls back to the rules when the model refuses
or returns nothing useful. Every degrader has the same surface:
`degrade(kind, text) -> str` with kind one of DEGRADE_KINDS; it returns "" when
it has nothing different to offer (the pair is then skipped).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

from penwright.trainer.curate import lexicon as lx

log = logging.getLogger(__name__)

DEGRADE_KINDS = ("neutral", "info_dropout", "abstract")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_ENDS_SENTENCE = re.compile(r"[.!?\"“”]\s*$")
_INTENSIFIERS = frozenset(
    "very quite rather somewhat extremely exceedingly indeed truly really perfectly utterly".split()
)
_REFUSAL = re.compile("|".join(lx.REFUSAL_PATTERNS), re.I)


_REFUSAL_HINTS = (
    "as an ai",
    "i am an ai",
    "i'm an ai",
    "language model",
    "i cannot",
    "i can't",
    "i am unable",
    "i won't",
    "i'm sorry",
    "against my",
    "openai",
)


def is_refusal(text: str) -> bool:
    """An assistant refusal ("As an AI...", "I'm sorry, but I can't help with that")."""
    low = text.lower().replace("’", "'")
    return any(h in low for h in _REFUSAL_HINTS) and bool(_REFUSAL.search(low))


class Degrader(Protocol):
    name: str

    def degrade(self, kind: str, text: str) -> str: ...


def _tidy(text: str) -> str:
    """Repair the punctuation and articles that word removal leaves behind."""
    text = re.sub(r"\b(and|or|but)\s*,", r"\1", text)
    text = re.sub(r"\b(the|a|an|his|her|their|my|your|its|our)\s+(?:and|or)\s+", r"\1 ", text, flags=re.I)
    text = re.sub(r",\s*(?:,\s*)+", ", ", text)
    text = re.sub(r"([.!?])\s*,\s*", r"\1 ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])\s*([.!?])", r"\2", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"(?<![\w'’])([Aa])n?\s+(?=([A-Za-z]))", _article, text)
    return "\n\n".join(p.strip() for p in text.split("\n\n"))


def _article(m: re.Match) -> str:
    following = m.string[m.end() : m.end() + 5].lower()
    vowel = following[:1] in "aeio" or (following[:1] == "u" and not following.startswith(("uni", "use", "usu")))
    vowel = vowel or following.startswith(("hour", "hone", "heir"))
    word = ("an" if vowel else "a") if m.group(1) == "a" else ("An" if vowel else "A")
    return word + " "


def _is_modifier(word: str) -> bool:
    low = word.lower().replace("’", "'")
    if word[:1].isupper() or low in lx.NOT_MODIFIERS or low in lx.FUNCTION_WORDS:
        return False
    if low in lx.ADJECTIVES or low in lx.ADVERBS:
        return True
    if low.endswith("ly") and len(low) > 4:
        return True
    return len(low) > 5 and low.endswith(lx.ADJECTIVE_SUFFIXES)


class RuleDegrader:
    """Offline degrading by rules. Deterministic: the same text always gives the same inputs."""

    name = "rules"

    def degrade(self, kind: str, text: str) -> str:
        out = getattr(self, kind)(text)
        return out if _differs(out, text) else ""

    def info_dropout(self, text: str) -> str:
        """Adjectives and adverbs removed: the model must invent them back."""
        return _tidy(_WORD.sub(lambda m: "" if _is_modifier(m.group()) else m.group(), text))

    def neutral(self, text: str) -> str:
        """A flat version: plain words, said/asked, no contractions, short sentences, no dashes or exclamations."""

        def word(m: re.Match) -> str:
            w = m.group()
            low = w.lower().replace("’", "'")
            if low in _INTENSIFIERS:
                return ""
            repl = lx.SPEECH_VERBS.get(low) or lx.PLAIN_WORDS.get(low) or lx.CONTRACTIONS.get(low)
            if repl is None:
                return w
            return repl[0].upper() + repl[1:] if w[:1].isupper() else repl

        out = _WORD.sub(word, text)
        out = re.sub(r"\s*(?:--|—|–)\s*", ", ", out)
        out = re.sub(r"\(([^()]*)\)", r", \1,", out)
        out = out.replace("!", ".")
        out = re.sub(r";\s*(\w)", lambda m: ". " + m.group(1).upper(), out)
        return _tidy(out)

    def abstract(self, text: str) -> str:
        """Nouns (the word heading each noun phrase) and names replaced by numbered placeholders."""
        tokens = re.split(r"([A-Za-z][A-Za-z'’-]*)", text)
        proper = _proper_nouns(tokens)
        names: dict[str, int] = {}
        things: dict[str, int] = {}
        after_det = 0  # words since a determiner, while still inside its noun phrase
        for i in range(1, len(tokens), 2):
            gap, word = tokens[i - 1], tokens[i]
            low = word.lower().replace("’", "'")
            prev = tokens[i - 2].lower() if i > 1 else ""
            if (_ENDS_SENTENCE.search(gap) and prev not in lx.TITLES) or (i == 1 and not gap.strip()):
                after_det = 0
            base, poss = (word[:-2], word[-2:]) if low.endswith(("'s", "’s")) else (word, "")
            if base.lower() in proper:
                tokens[i] = f"[NAME{names.setdefault(base.lower(), len(names) + 1)}]{poss}"
                after_det = 1 if poss else 0
            elif after_det and low not in lx.FUNCTION_WORDS and low not in lx.DETERMINERS:
                if _is_modifier(word) or low.endswith(("ed", "ing")) and after_det < 3:
                    after_det += 1
                else:
                    stem = low[:-1] if low.endswith("s") and len(low) > 3 else low
                    tokens[i] = f"[THING{things.setdefault(stem, len(things) + 1)}]"
                    after_det = 0
            else:
                after_det = 1 if low in lx.DETERMINERS or low.endswith(("'s", "’s")) else 0
        out = "".join(tokens)
        return out if len(names) + len(things) >= 3 else ""


@lru_cache(maxsize=65536)
def _rare(word: str) -> bool:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") < 3.0


def _proper_nouns(tokens: list[str]) -> set[str]:
    """Names: words capitalised mid-sentence, and rare capitalised words anywhere (a sentence may open with a name)."""
    found: set[str] = set()
    start = True
    for i in range(1, len(tokens), 2):
        gap, word = tokens[i - 1], tokens[i]
        prev = tokens[i - 2].lower() if i > 1 else ""
        if (_ENDS_SENTENCE.search(gap) and prev not in lx.TITLES) or (i == 1 and not gap.strip()):
            start = True
        base = re.sub(r"['’]s$", "", word).lower()
        if word[:1].isupper() and base not in lx.FUNCTION_WORDS and base not in lx.DETERMINERS and base != "i":
            if not start or _rare(base):
                found.add(base)
        start = False
    return found


def _differs(new: str, old: str) -> bool:
    if not new.strip():
        return False
    a, b = new.split(), old.split()
    changed = sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))
    return changed >= max(2, len(b) // 50)


_CHAT_PROMPTS = {
    "neutral": "Rewrite the following passage in plain, neutral modern prose. Keep every event and fact; "
    "drop the style. Return only the rewritten passage.",
    "info_dropout": "Rewrite the following passage with every adjective and adverb removed. Change nothing else. "
    "Return only the passage.",
    "abstract": "Rewrite the following passage replacing the nouns and names with placeholders such as [THING1] "
    "and [NAME1], numbered consistently. Return only the passage.",
}


class ChatDegrader:
    """Degrading by a chat model: `complete(messages) -> str` (the base model, or an upstream endpoint)."""

    def __init__(self, complete: Callable[[list[dict]], str], name: str = "model", fallback: Degrader | None = None):
        self.complete = complete
        self.name = name
        self.fallback = fallback or RuleDegrader()

    def degrade(self, kind: str, text: str) -> str:
        messages = [{"role": "system", "content": _CHAT_PROMPTS[kind]}, {"role": "user", "content": text}]
        try:
            out = (self.complete(messages) or "").strip()
        except Exception as err:  # network errors, model errors: the rules still work
            log.warning("degrader %s failed (%s); using rules for this passage", self.name, err)
            out = ""
        if not out or is_refusal(out) or not _differs(out, text):
            return self.fallback.degrade(kind, text)
        return out


def upstream_complete(
    base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0
) -> Callable[[list[dict]], str]:
    """A `complete` function posting to an OpenAI-compatible `/chat/completions`."""
    import httpx

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def complete(messages: list[dict]) -> str:
        body = {"model": model, "messages": messages, "temperature": 0.2, "max_tokens": 2048}
        resp = httpx.post(url, json=body, headers=headers, timeout=timeout)
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"]

    return complete


def model_complete(model_path: str | Callable[[], str], max_new_tokens: int = 1024) -> Callable[[list[dict]], str]:
    """A `complete` function running a local chat model with transformers (loaded once, lazily).

    `model_path` may be a callable: the path is then asked for on first use (after builtin models are built).
    """
    state: dict = {}

    def complete(messages: list[dict]) -> str:
        if not state:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = model_path() if callable(model_path) else model_path
            state["tok"] = AutoTokenizer.from_pretrained(path)
            state["model"] = AutoModelForCausalLM.from_pretrained(path)
        tok, model = state["tok"], state["model"]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    return complete
