"""``python -m qrnn``: the ``qrnn`` command (:mod:`qrnn.cli`) of ``qrnn``, the library and
study after Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

import sys

from .cli import main

sys.exit(main())
