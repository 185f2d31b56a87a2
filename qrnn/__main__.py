"""``python -m qrnn``: the ``qrnn`` command (:mod:`qrnn.cli`)."""

import sys

from .cli import main

sys.exit(main())
