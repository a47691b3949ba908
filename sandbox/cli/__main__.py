"""``python -m sandbox.cli``: the same as the ``coderun`` command."""

from sandbox.cli import main

main()
