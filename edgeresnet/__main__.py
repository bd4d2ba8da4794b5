"""``python -m edgeresnet`` is the same as the ``edgeresnet`` command."""

from edgeresnet.cli import run

run()
