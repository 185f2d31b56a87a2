"""qrnn: recurrent neural networks with limited numerical precision (Ott et al., 1608.06902)."""

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
