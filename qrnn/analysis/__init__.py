"""Why binarization fails, measured: the analyses of trained (or initial) recurrent layers.

One module per measurement, each in float64 on the pure reference cells (:mod:`qrnn.cells`):

* :mod:`qrnn.analysis.dynamics`: a layer's trajectory, its step Jacobians ``J_t = ds_t/ds_{t-1}``
  and their products (gradient survival), gate pre-activations and saturation;
* :mod:`qrnn.analysis.rounding`: the per-weight moments of (stochastic) rounding and the noise
  ``e = (W_q - W) v`` they add to each pre-activation;
* :mod:`qrnn.analysis.noisetime`: how one stochastic weight draw's error travels through time
  (the same draw reused at every step, a fresh draw per step, or no recurrence);
* :mod:`qrnn.analysis.report`: all of it for one model (:func:`analyze`) and the tables the
  Jacobian notebook shows.

Their public names are importable from here. The question is Ott et al. 2016, *Recurrent
Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902, Sec. 4.
"""

from .dynamics import (
    GATES,
    CellWeights,
    cell_weights,
    gate_preactivations,
    layer_trajectories,
    product_log_norms,
    saturated,
    step_jacobians,
    trajectory,
)
from .noisetime import (
    MODES,
    Dynamics,
    NoiseResult,
    deviation_summary,
    draw_quantiles,
    layer_dynamics,
    noise_through_time,
)
from .report import (
    METHODS,
    Analysis,
    InputSequence,
    Method,
    analyze,
    get_method,
    layer_input,
    load_sequence,
    noise_frame,
    product_frame,
    recurrent_layer,
    saturation_frame,
    spectra_frame,
    summary_table,
    weight_frame,
    weights_frame,
)
from .rounding import preactivation_noise, rounding_moments

__all__ = [
    "GATES",
    "METHODS",
    "MODES",
    "Analysis",
    "CellWeights",
    "Dynamics",
    "InputSequence",
    "Method",
    "NoiseResult",
    "analyze",
    "cell_weights",
    "deviation_summary",
    "draw_quantiles",
    "gate_preactivations",
    "get_method",
    "layer_dynamics",
    "layer_input",
    "layer_trajectories",
    "load_sequence",
    "noise_frame",
    "noise_through_time",
    "preactivation_noise",
    "product_frame",
    "product_log_norms",
    "recurrent_layer",
    "rounding_moments",
    "saturated",
    "saturation_frame",
    "spectra_frame",
    "step_jacobians",
    "summary_table",
    "trajectory",
    "weight_frame",
    "weights_frame",
]
