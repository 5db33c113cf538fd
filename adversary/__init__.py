"""auditlens.adversary."""

__all__: list[str] = []
