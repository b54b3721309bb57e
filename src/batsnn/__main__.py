"""``python -m batsnn``: the ``batsnn`` command (:mod:`batsnn.cli`)."""

import sys

from batsnn.cli import main

sys.exit(main())
