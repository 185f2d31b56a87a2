"""The version of the ``qrnn`` package (one place, read by the package root, the run records and
the packed files).

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

__version__ = "0.1.0"
