"""auditlens.probes."""

__all__: list[str] = []
