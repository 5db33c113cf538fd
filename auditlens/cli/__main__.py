"""``python -m auditlens.cli``: the same as the ``auditlens`` command."""

from auditlens.cli import main

main()
