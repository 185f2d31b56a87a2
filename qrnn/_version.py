"""The version of the ``qrnn`` package (one place, read by the package root, the run records and
the packed files)."""

__version__ = "0.1.0"
