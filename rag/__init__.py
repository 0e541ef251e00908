"""Lore: parsing the author's story bible, indexing it, and choosing what to inject.

Never imports `penwright.server` or `penwright.trainer`.
"""
