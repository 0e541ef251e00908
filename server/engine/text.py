"""Token ids -> text deltas, with stop sequences: nothing after a stop string ever reaches the client."""

from __future__ import annotations

from collections.abc import Callable


class HFTokenizerText:
    """encode/decode/vocab over a Hugging Face tokenizer in `self.tokenizer` (shared by the backends)."""

    tokenizer = None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def vocab(self) -> list[str]:
        return list(self.tokenizer.get_vocab())


class TextStream:
    """Incremental detokenizer for one request.

    Text that might be the start of a stop string, or that ends in half a UTF-8
    character, is held back until the next token decides it.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: tuple[str, ...] = (), stop_check=None):
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._stop_check = stop_check
        self._tokens: list[int] = []
        self._text = ""
        self.emitted = 0  # characters of self._text already sent

    @property
    def text(self) -> str:
        return self._text[: self.emitted]

    @property
    def token_ids(self) -> tuple[int, ...]:
        return tuple(self._tokens)

    def push(self, token: int) -> tuple[str, bool]:
        """Add one token; returns (text to send now, whether a stop was hit)."""
        self._tokens.append(token)
        self._text = self._decode(self._tokens)
        cut = self._find_stop()
        if cut is not None:
            out = self._text[self.emitted : cut]
            self.emitted = max(self.emitted, cut)
            return out, True
        end = len(self._text) - self._holdback()
        out = self._text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return out, False

    def flush(self) -> str:
        """Whatever was held back (generation ended without a stop)."""
        text = self._text.rstrip("\ufffd")
        out = text[self.emitted :]
        self.emitted = len(text)
        return out

    def _find_stop(self) -> int | None:
        cuts = []
        if self._stop:
            longest = max(len(s) for s in self._stop)
            start = max(0, self.emitted - longest)
            for s in self._stop:
                i = self._text.find(s, start)
                if i >= 0:
                    cuts.append(i)
        if self._stop_check is not None:
            c = self._stop_check(self._text.rstrip("\ufffd"))
            if c is not None:
                cuts.append(c)
        return min(cuts) if cuts else None

    def _holdback(self) -> int:
        text = self._text
        if text.endswith("\ufffd"):
            return len(text) - len(text.rstrip("\ufffd"))
        hold = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:k]):
                    hold = k
                    break
        return hold
