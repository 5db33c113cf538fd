"""auditlens: white-box alignment auditing of fine-tuned language models."""

from auditlens.errors import AuditlensError

__all__ = ["AuditlensError", "__version__"]
__version__ = "0.1.0"
