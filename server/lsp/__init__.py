"""The Penwright language server (pygls 2.x): a thin client of the project's daemon.

Nothing on this package's import path may import torch, transformers, peft or
chromadb: `initialize` must be answered in well under a second.
"""
