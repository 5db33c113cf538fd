"""auditlens.reports."""

__all__: list[str] = []
