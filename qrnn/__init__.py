"""qrnn: recurrent neural networks with limited numerical precision.

The library and study after Ott, Lin, Zhang, Liu & Bengio 2016, *Recurrent Neural Networks
With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902. The library below
(quantizers, cells, layers, models, packing, the integer path, analysis, data) knows nothing of
runs; the experiment layer above it (:mod:`qrnn.config`, :mod:`qrnn.runs`, :mod:`qrnn.train`,
:mod:`qrnn.study`, :mod:`qrnn.cli`) configures, trains and records them.
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
