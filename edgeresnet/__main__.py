"""``python -m edgeresnet`` is the same as the ``edgeresnet`` command."""

import sys

from edgeresnet.cli import main

sys.exit(main())
