"""Models and layers keep their config and are rebuilt from it (``from_config``): the one
description of a model that packing, ``to_torch`` and the training set-up share."""

import json
from pathlib import Path

import pytest
import torch

import qrnn
from qrnn import export
from qrnn.layers import QuantGRU, QuantLSTM, QuantRNN
from qrnn.models import FAMILIES, DigitClassifier, LanguageModel
from qrnn.study.config import RunConfig
from qrnn.study.train import build_model

ROOT = Path(__file__).resolve().parent.parent

MODELS = {
    "lm-lstm": lambda: LanguageModel(50, "lstm", 16, embed=8, dropout=0.1, scheme="ternary",
                                     stochastic=True),
    "lm-gru-io": lambda: LanguageModel(50, "gru", 16, layers=2, scheme="binary", quantize_io=True),
    "lm-rnn-ln": lambda: LanguageModel(50, "rnn", 16, scheme="pow2-ternary", layer_norm=True),
    "lm-noise": lambda: LanguageModel(50, "lstm", 16, weight_noise="binary"),
    "lm-exp-wn": lambda: LanguageModel(50, "lstm", 16, scheme="exponential", weight_norm=True,
                                       quantizer_options={"min_exp": -6}),
    "digits": lambda: DigitClassifier(13, cell="gru", hidden=8, bidirectional=True, dropout=0.3,
                                      input_norm="batch", pool="mean", scheme="ternary"),
    "rnn-relu": lambda: QuantRNN(5, 7, nonlinearity="relu", scheme="binary", num_layers=2,
                                 batch_first=True),
    "gru": lambda: QuantGRU(5, 7, scheme="ternary", bidirectional=True, quantize_bias=False),
    "lstm": lambda: QuantLSTM(5, 7),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_from_config_rebuilds_the_model(name):
    m = MODELS[name]()
    back = type(m).from_config(m.config)
    assert back.config == m.config and repr(back) == repr(m)
    assert {k: v.shape for k, v in back.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()
    }
    json.dumps(m.config)  # plain data


def test_config_follows_post_training_quantization():
    m = MODELS["digits"]()
    q = qrnn.post_training_quantize(m, "exponential", quantize_io=True)
    assert q.config["scheme"] == "exponential" and q.config["quantize_io"]
    assert m.config["scheme"] == "ternary" and not m.config["quantize_io"]


def test_packed_architecture_is_the_config_without_weight_noise():
    m = MODELS["lm-noise"]()
    arch = export.architecture(m)
    assert arch["family"] == "LanguageModel" and "weight_noise" not in arch["kwargs"]
    assert {**arch["kwargs"], "weight_noise": "binary"} == m.config
    assert list(export.architecture(MODELS["rnn-relu"]())["kwargs"])[-1] == "nonlinearity"


def test_build_model_uses_the_model_config():
    cfg = RunConfig(task="fsdd", cell="gru", hidden=8, scheme="ternary", bidirectional=True)
    torch.manual_seed(0)
    m = build_model(cfg, 13)
    torch.manual_seed(0)
    ref = DigitClassifier(13, cell="gru", hidden=8, layers=1, dropout=0.0, bidirectional=True,
                          scheme="ternary", stochastic=False, quantizer_options={},
                          weight_noise="none")  # fmt: skip
    for (k, a), (_, b) in zip(m.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_committed_packed_files_rebuild_from_their_architecture():
    files = sorted(ROOT.glob("results/cpu/runs/*/model.npz"))[:12]
    if not files:
        pytest.skip("no committed packed models")
    for f in files:
        meta = export.read_packed(f)["meta"]
        model = export.load_packed(f)
        assert export.architecture(model) == meta["architecture"]
        assert type(model) is FAMILIES[meta["architecture"]["family"]]
