"""Device-only stand-in for wordfreq (its wheel is too big to carry): the top 60,000 English words with their
real Zipf values (en.json, written by `turnaround.sh fetch` from the installed wordfreq). Copied to
.whl-daemon/shim/wordfreq/__init__.py; only the two functions Penwright calls."""

import json
import os

_TABLE = json.load(open(os.path.join(os.path.dirname(__file__), "en.json"), encoding="utf-8"))


def zipf_frequency(word, lang="en", **kw):
    return _TABLE.get(word.lower(), 0.0)


def word_frequency(word, lang="en", **kw):
    z = zipf_frequency(word, lang)
    return 10 ** (z - 9) if z else 0.0
