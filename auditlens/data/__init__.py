"""Built-in prompt sets shipped as package data (generic chat, code tasks)."""

__all__: list[str] = []
