"""auditlens.diffing."""

__all__: list[str] = []
