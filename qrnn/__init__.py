"""qrnn: recurrent neural networks with limited numerical precision.

The library and study after Ott, Lin, Zhang, Liu & Bengio 2016, *Recurrent Neural Networks
With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902. The library below
(quantizers, cells, layers, models, packing, the integer path, analysis, data) knows nothing of
runs. Its folders show the layers: the library at the top level, :mod:`qrnn.data` and
:mod:`qrnn.analysis`; the experiment layer, :mod:`qrnn.study` (configuration, training,
records, the grid, tables and verdicts), and :mod:`qrnn.cli` above it, which configure, train
and record runs. Nothing in the library imports the experiment layer.
"""

from ._version import __version__ as __version__
from .export import load_packed, pack_model, post_training_quantize
from .layers import QuantGRU, QuantLSTM, QuantRNN, QuantRNNBase, clip_shadow_, quantized_layers
from .quantizers import SCHEMES, Quantizer, quantizer, straight_through

__all__ = [
    "SCHEMES",
    "QuantGRU",
    "QuantLSTM",
    "QuantRNN",
    "QuantRNNBase",
    "Quantizer",
    "clip_shadow_",
    "load_packed",
    "pack_model",
    "post_training_quantize",
    "quantized_layers",
    "quantizer",
    "straight_through",
]
