"""Penwright: a local writing assistant that writes in the author's voice.

The installable distribution maps the top-level folders onto this namespace:
`penwright.server` (daemon), `penwright.trainer` (curation, training, registry,
evaluation) and `penwright.rag` (lore). This package holds only what all three
share: user-facing errors, the settings loader and the project's state paths.
"""

__version__ = "0.1.0"
