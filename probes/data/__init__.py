"""Shipped probe data: labelled pair sets, control answers and trained scorer probes."""

__all__: list[str] = []
