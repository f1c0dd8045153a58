"""``python -m sparsa.cli``: the same as the ``sparsa`` command."""

import sys

from sparsa.cli import main

sys.exit(main())
