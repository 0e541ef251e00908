"""Curation, datasets, training backends, the adapter registry and evaluation.

Never imports `penwright.server` or `penwright.rag`.
"""
