"""The .tflite importer/exporter and the LiteRT oracle.

Models are built by hand with random parameters, exported, re-imported and run through
LiteRT; bad files are made by editing exported ones with LiteRT's own object-API schema
classes, by truncation and by random byte corruption.
"""

import dataclasses
import os
import struct

import flatbuffers
import numpy as np
import pytest
import tflite
from ai_edge_litert import schema_py_generated as fb

from golden.generate import random_inputs
from golden.litert import run_litert
from golden.model import ACTIVATIONS, Model, ModelError, QParams, dtype_of
from golden.ops import (Add, Concatenation, Conv2D, DepthwiseConv2D, FullyConnected, Lookup, Mean, Pad, Pool2D,
                        Quantize, Reshape, Softmax, run_model)
from golden.quant import activation_range
from golden.tflite_io import load_tflite, parse_tflite, save_tflite, to_tflite_bytes


# ---------------------------------------------------------------- model builders


def _q(rng):
    return QParams(rng.uniform(0.005, 0.2), int(rng.integers(-20, 20)))


def _conv(rng, name, shape, out_channels, kernel, q, *, per_channel, bias=True, **options):
    return Conv2D(name, shape, weights=rng.integers(-127, 128, (out_channels, *kernel, shape[2]), dtype=np.int8),
                  bias=rng.integers(-2000, 2000, out_channels).astype(np.int32) if bias else None,
                  weight_scales=rng.uniform(0.001, 0.02, out_channels if per_channel else 1),
                  input_q=q, output_q=_q(rng), **options)


def _fc(rng, name, shape, units, q, *, per_channel, bias=True, **options):
    return FullyConnected(name, shape, weights=rng.integers(-127, 128, (units, int(np.prod(shape))), dtype=np.int8),
                          bias=rng.integers(-2000, 2000, units).astype(np.int32) if bias else None,
                          weight_scales=rng.uniform(0.001, 0.02, units if per_channel else 1),
                          input_q=q, output_q=_q(rng), **options)


def _chain(name, input_shape, input_q, *makers):
    """A Model from makers(shape, q) -> layer, each fed the previous layer's output."""
    layers, shape, q = [], input_shape, input_q
    for make in makers:
        layers.append(make(shape, q))
        shape, q = layers[-1].output_shape, layers[-1].output_q
    return Model(name, input_shape, input_q, layers)


def convnet(rng, variant):
    """Conv/pool/flatten/FC/softmax; ``variant`` 0..3 walks through activations, paddings and strides."""
    act, other = ACTIVATIONS[variant], ACTIVATIONS[3 - variant]
    pad, other_pad = ("VALID", "SAME") if variant % 2 else ("SAME", "VALID")
    per_channel = variant % 2 == 0
    return _chain(
        f"convnet{variant}", (11, 9, 3), _q(rng),
        lambda s, q: _conv(rng, "conv1", s, 6, (3, 3), q, per_channel=per_channel, activation=act, padding=pad,
                           stride=((2, 1), (1, 2), (2, 2), (1, 1))[variant]),
        lambda s, q: Pool2D("pool1", s, kind="MAX", filter=(3, 2), stride=(2, 1), padding=other_pad,
                            activation=other, q=q),
        lambda s, q: _conv(rng, "conv2", s, 5, (1, 2), q, per_channel=not per_channel, bias=variant != 1,
                           activation=other, padding=other_pad),
        lambda s, q: Pool2D("pool2", s, kind="AVERAGE", filter=(2, 2), stride=(1, 1), padding=pad, activation=act,
                            q=q),
        lambda s, q: Reshape("flatten", s, new_shape=(int(np.prod(s)),), q=q),
        lambda s, q: _fc(rng, "fc1", s, 12, q, per_channel=per_channel, activation=act),
        lambda s, q: _fc(rng, "fc2", s, 7, q, per_channel=not per_channel, bias=variant != 2, activation=other),
        lambda s, q: Softmax("softmax", s, beta=(1.0, 0.5, 2.0, 0.25)[variant], input_q=q))


def lookups(rng):
    """LOGISTIC and TANH, a fully connected layer reading an HWC tensor directly, a 2-D reshape."""
    return _chain(
        "lookups", (6, 5, 2), _q(rng),
        lambda s, q: _conv(rng, "conv", s, 4, (2, 2), q, per_channel=True),
        lambda s, q: Lookup("sigmoid", s, kind="LOGISTIC", input_q=q),
        lambda s, q: _fc(rng, "dense", s, 10, q, per_channel=False, activation="RELU"),
        lambda s, q: Lookup("tanh", s, kind="TANH", input_q=q),
        lambda s, q: Reshape("to2d", s, new_shape=(2, 5), q=q),
        lambda s, q: Softmax("softmax2d", s, input_q=q))


def reshape_first(rng):
    """A model that starts with a Reshape (its quantisation is the model input's)."""
    return _chain(
        "reshape_first", (4, 4, 2), _q(rng),
        lambda s, q: Reshape("flat", s, new_shape=(32,), q=q),
        lambda s, q: _fc(rng, "fc", s, 3, q, per_channel=True, activation="RELU6"))


def graph(rng):
    """uint8 in, float32 out around an int8 body with a residual ADD of a depthwise branch, PAD,
    MEAN, a requantised CONCATENATION, EXPAND_DIMS and SQUEEZE; op 2 is the depthwise
    convolution, op 3 the ADD, op 7 the CONCATENATION."""
    edge, q = QParams(0.02, 128, "uint8"), QParams(0.02, 0)
    conv = _conv(rng, "conv", (6, 6, 3), 4, (3, 3), q, per_channel=True, padding="SAME", activation="RELU")
    dw = DepthwiseConv2D("dw", (6, 6, 4), weights=rng.integers(-127, 128, (1, 3, 3, 4), dtype=np.int8),
                         bias=rng.integers(-500, 500, 4).astype(np.int32), weight_scales=rng.uniform(0.01, 0.02, 4),
                         input_q=conv.output_q, output_q=_q(rng), padding="SAME", activation="RELU6")
    add_q = _q(rng)
    m_q = _q(rng)
    layers = [
        Quantize("quant", (6, 6, 3), input_q=edge, output_q=q), conv, dw,
        Add("add", (6, 6, 4), inputs=("conv", "dw"), other_shape=(6, 6, 4), input_q=conv.output_q,
            other_q=dw.output_q, output_q=add_q),
        Pad("pad", (6, 6, 4), paddings=((1, 1), (0, 2), (0, 0)), q=add_q),
        Mean("mean", (8, 8, 4), axes=(0, 1), keep_dims=True, input_q=add_q, output_q=m_q),
        Quantize("requant", (1, 1, 4), inputs=("mean",), input_q=m_q, output_q=add_q),
        Concatenation("concat", (1, 1, 4), inputs=("requant", "requant"), others=((1, 1, 4),), q=add_q),
        Reshape("squeeze", (1, 1, 8), new_shape=(1, 8), q=add_q, op="SQUEEZE"),
        Reshape("expand", (1, 8), new_shape=(1, 1, 8), q=add_q, op="EXPAND_DIMS"),
        _fc(rng, "fc", (1, 1, 8), 5, add_q, per_channel=True),
    ]
    layers.append(Quantize("dequant", (5,), input_q=layers[-1].output_q, output_q=None))
    return Model("graph", (6, 6, 3), edge, layers)


MODELS = {f"convnet{v}": (lambda rng, v=v: convnet(rng, v)) for v in range(4)}
MODELS.update(lookups=lookups, reshape_first=reshape_first, graph=graph)


def make(name, seed=0):
    return MODELS[name](np.random.default_rng(seed))


def assert_same_model(a, b):
    assert (a.name, a.input_shape, a.input_q) == (b.name, b.input_shape, b.input_q)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb), la.name
        assert a.inputs_of(la) == b.inputs_of(lb), la.name
        for f in dataclasses.fields(la):
            if f.name == "inputs":      # written out by the importer, implied in a chain: compared above
                continue
            va, vb = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and np.array_equal(va, vb), (la.name, f.name)
            else:
                assert va == vb, (la.name, f.name, va, vb)


def inputs(model, n=6, seed=1):
    return random_inputs(np.random.default_rng(seed), model, n)


# ---------------------------------------------------------------- editing exported files


def _edit(model, change):
    """Export ``model``, let ``change`` edit the unpacked schema objects, repack."""
    m = fb.ModelT.InitFromPackedBuf(to_tflite_bytes(model), 0)
    change(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tensor(m, name):
    return next(t for t in m.subgraphs[0].tensors if t.name.decode() == name)


def _tensor_index(m, name):
    return next(i for i, t in enumerate(m.subgraphs[0].tensors) if t.name.decode() == name)


def _set_opcode(m, op, code, custom=None):
    m.operatorCodes.append(fb.OperatorCodeT())
    m.operatorCodes[-1].builtinCode = code
    m.operatorCodes[-1].deprecatedBuiltinCode = min(code, fb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    m.operatorCodes[-1].customCode = custom
    m.subgraphs[0].operators[op].opcodeIndex = len(m.operatorCodes) - 1


def _retype(m, ttype):
    for t in m.subgraphs[0].tensors:
        if t.type == fb.TensorType.INT8:
            t.type = ttype
            if ttype == fb.TensorType.FLOAT32:
                t.quantization = None


def _add_subgraph(m):
    m.subgraphs.append(m.subgraphs[0])


def _set(obj, **fields):
    for k, v in fields.items():
        setattr(obj, k, v)


def _ops(m):
    return m.subgraphs[0].operators


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", MODELS)
def test_round_trip_is_exact_and_runs_the_same(name, tmp_path):
    model = make(name)
    path = tmp_path / f"{model.name}.tflite"
    save_tflite(model, path)
    back = load_tflite(path)
    assert_same_model(model, back)
    # The exporter is canonical: re-exporting the import gives the same bytes.
    assert to_tflite_bytes(back) == path.read_bytes()

    x = inputs(model)
    y, layers = run_litert(path, x, intermediates=True)
    y2, layers2 = run_litert(to_tflite_bytes(back), x, intermediates=True)
    assert y.dtype == dtype_of(model.output_q) and y.shape == (len(x), *model.output_shape)
    assert np.array_equal(y, y2)
    np.testing.assert_array_equal(run_model(back, x), y)
    assert list(layers) == [layer.name for layer in model.layers]
    for layer in model.layers:
        assert layers[layer.name].shape == (len(x), *layer.output_shape)
        assert np.array_equal(layers[layer.name], layers2[layer.name])
    assert np.array_equal(layers[model.layers[-1].name], y)
    assert np.array_equal(run_litert(path, x), y)


def test_litert_honours_fused_activations():
    """Each layer's output lies in its activation range (so the options reached LiteRT)."""
    for variant in range(4):
        model = convnet(np.random.default_rng(variant), variant)
        _, layers = run_litert(to_tflite_bytes(model), inputs(model, 20), intermediates=True)
        for layer in model.layers:
            if getattr(layer, "activation", "NONE") != "NONE":
                lo, hi = activation_range(layer.activation, layer.output_q.scale, layer.output_q.zero_point)
                assert lo <= layers[layer.name].min() and layers[layer.name].max() <= hi, layer.name


def _op_kinds(data):
    m = tflite.Model.GetRootAs(data, 0)
    sg = m.Subgraphs(0)
    codes = [m.OperatorCodes(i).BuiltinCode() for i in range(m.OperatorCodesLength())]
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    return [names[codes[sg.Operators(i).OpcodeIndex()]] for i in range(sg.OperatorsLength())]


@pytest.mark.parametrize("name", ["convnet0", "lookups"])
def test_flatten_chain_folds_into_one_reshape(name):
    model = make(name)
    chain = to_tflite_bytes(model, flatten_chain=True)
    kinds = _op_kinds(chain)
    assert kinds[kinds.index("SHAPE"):kinds.index("RESHAPE") + 1] == ["SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"]
    back, indices = parse_tflite(chain, f"{model.name}.tflite")
    assert_same_model(model, back)
    assert to_tflite_bytes(back) == to_tflite_bytes(model)
    x = inputs(model)
    y, layers = run_litert(chain, x, intermediates=True)
    y2, layers2 = run_litert(to_tflite_bytes(model), x, intermediates=True)
    assert np.array_equal(y, y2)
    assert all(np.array_equal(layers[k], layers2[k]) for k in layers2)


def test_old_files_with_only_the_deprecated_opcode_load():
    model = make("convnet1")
    data = _edit(model, lambda m: [setattr(c, "builtinCode", 0) for c in m.operatorCodes])
    assert_same_model(model, parse_tflite(data, "convnet1.tflite")[0])


@pytest.mark.parametrize("no_bias", [[], [-1]], ids=["two inputs", "index -1"])
def test_fully_connected_without_bias_loads_and_runs(no_bias):
    """The exporter always writes a bias; files without one (allowed for FULLY_CONNECTED) mean zeros."""
    model = make("reshape_first")
    data = _edit(model, lambda m: _set(_ops(m)[1], inputs=[*_ops(m)[1].inputs[:2], *no_bias]))
    back = parse_tflite(data, "x.tflite")[0]
    assert np.array_equal(back.layers[1].bias, np.zeros(3, np.int32))
    zero_bias = dataclasses.replace(model.layers[1], bias=None)
    assert_same_model(Model(back.name, model.input_shape, model.input_q, [model.layers[0], zero_bias]), back)
    x = inputs(model)
    assert np.array_equal(run_litert(data, x), run_litert(to_tflite_bytes(back), x))


def test_run_litert_checks_its_input():
    model = make("reshape_first")
    with pytest.raises(ValueError, match="int8"):
        run_litert(to_tflite_bytes(model), inputs(model).astype(np.int16))
    with pytest.raises(ValueError, match=r"\(N, 4, 4, 2\)"):
        run_litert(to_tflite_bytes(model), inputs(model)[:, :2])


# ---------------------------------------------------------------- atomic writes


def test_save_is_atomic(tmp_path, monkeypatch):
    model = make("reshape_first")
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous contents")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_tflite(model, path)
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["m.tflite"]
    monkeypatch.undo()
    save_tflite(model, path)
    assert os.listdir(tmp_path) == ["m.tflite"]
    assert path.read_bytes() == to_tflite_bytes(model)


# ---------------------------------------------------------------- rejected files


def assert_rejected(fn, *needles):
    with pytest.raises(ModelError) as e:
        fn()
    message = str(e.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


# (model, edit, substrings the one-line message must contain); op 0 is conv1 in convnet*,
# op 1 the sigmoid and op 2 the dense layer in "lookups".
BAD = {
    "float32": ("convnet0", lambda m: _retype(m, fb.TensorType.FLOAT32), ["'input'", "FLOAT32", "int8"]),
    "int16": ("convnet0", lambda m: _retype(m, fb.TensorType.INT16), ["'input'", "INT16"]),
    "lstm": ("convnet0", lambda m: _set_opcode(m, 0, fb.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM),
             ["op 0", "UNIDIRECTIONAL_SEQUENCE_LSTM", "recurrent ops are unsupported"]),
    "svdf": ("lookups", lambda m: _set_opcode(m, 1, fb.BuiltinOperator.SVDF), ["op 1", "SVDF", "unsupported"]),
    "extended opcode": ("lookups", lambda m: _set_opcode(m, 1, fb.BuiltinOperator.GELU), ["op 1", "GELU"]),
    "custom op": ("lookups", lambda m: _set_opcode(m, 1, fb.BuiltinOperator.CUSTOM, "MySigmoid"),
                  ["op 1", "CUSTOM 'MySigmoid'"]),
    "quantize": ("convnet0", lambda m: _set_opcode(m, 0, fb.BuiltinOperator.QUANTIZE),
                 ["op 0", "QUANTIZE", "3 inputs", "takes 1"]),
    "dequantize": ("lookups", lambda m: _set_opcode(m, 5, fb.BuiltinOperator.DEQUANTIZE), ["op 5", "DEQUANTIZE"]),
    "dilation": ("convnet0", lambda m: _set(_ops(m)[0].builtinOptions, dilationHFactor=2),
                 ["op 0 (CONV_2D)", "dilation 2x1"]),
    "batch": ("convnet0", lambda m: _set(_tensor(m, "input"), shape=[2, 11, 9, 3]),
              ["'input'", "batch 1", "[2, 11, 9, 3]"]),
    "subgraphs": ("convnet0", _add_subgraph, ["2 subgraphs"]),
    "reads a later tensor": ("lookups", lambda m: _set(_ops(m)[3], inputs=[_tensor_index(m, "softmax2d")]),
                             ["op 3 (TANH)", "'softmax2d'", "no earlier op writes"]),
    "float body": ("lookups", lambda m: _set(_tensor(m, "sigmoid"), type=fb.TensorType.FLOAT32, quantization=None),
                   ["op 1 (LOGISTIC)", "'sigmoid'", "FLOAT32", "int8 bodies"]),
    "two inputs": ("lookups", lambda m: _set(m.subgraphs[0], inputs=[0, 0]), ["2 inputs"]),
    "no activation quantisation": ("lookups", lambda m: _set(_tensor(m, "sigmoid"), quantization=None),
                                   ["op 1 (LOGISTIC)", "'sigmoid'", "no quantisation"]),
    "no weight quantisation": ("lookups", lambda m: _set(_tensor(m, "dense/weights"), quantization=None),
                               ["op 2", "'dense/weights'", "no quantisation"]),
    "weight zero point": ("convnet0", lambda m: _set(_tensor(m, "conv1/weights").quantization,
                                                     zeroPoint=[0, 0, 3, 0, 0, 0]),
                          ["op 0", "'conv1/weights'", "zero point"]),
    "weight quantised dimension": ("convnet0", lambda m: _set(_tensor(m, "conv1/weights").quantization,
                                                              quantizedDimension=3),
                                   ["'conv1/weights'", "dimension 3"]),
    "float weights": ("lookups", lambda m: _set(_tensor(m, "dense/weights"), type=fb.TensorType.FLOAT32),
                      ["'dense/weights'", "FLOAT32", "INT8"]),
    "int64 bias": ("lookups", lambda m: _set(_tensor(m, "conv/bias"), type=fb.TensorType.INT64),
                   ["op 0", "'conv/bias'", "INT64"]),
    "variable weights": ("lookups", lambda m: _set(_tensor(m, "dense/weights"), buffer=0),
                         ["'dense/weights'", "not a constant"]),
    "pool requantises": ("convnet0", lambda m: _set(_tensor(m, "pool1").quantization, zeroPoint=[5]),
                         ["op 1 (MAX_POOL_2D)", "differs"]),
    "fused tanh": ("convnet0", lambda m: _set(_ops(m)[0].builtinOptions, fusedActivationFunction=4),
                   ["op 0", "fused activation TANH"]),
    "keep_num_dims": ("lookups", lambda m: _set(_ops(m)[2].builtinOptions, keepNumDims=True),
                      ["op 2", "keep_num_dims"]),
    "missing options": ("convnet0", lambda m: _set(_ops(m)[0], builtinOptionsType=0, builtinOptions=None),
                        ["op 0", "missing Conv2DOptions"]),
    "wrong output shape": ("convnet0", lambda m: _set(_tensor(m, "conv1"), shape=[1, 6, 9, 7]),
                           ["op 0", "'conv1'", "[1, 6, 9, 7]", "expected"]),
    "depthwise dilation": ("graph", lambda m: _set(_ops(m)[2].builtinOptions, dilationWFactor=2),
                           ["op 2 (DEPTHWISE_CONV_2D)", "dilation 1x2"]),
    "depthwise channel axis": ("graph", lambda m: _set(_tensor(m, "dw/weights").quantization, quantizedDimension=0),
                               ["op 2", "'dw/weights'", "dimension 0", "along dimension 3"]),
    "add constant": ("graph", lambda m: _set(_ops(m)[3], inputs=[_ops(m)[3].inputs[0], _tensor_index(m, "dw/weights")]),
                     ["op 3 (ADD)", "constant", "'dw/weights'"]),
    "add output scale": ("graph", lambda m: _set(_tensor(m, "add").quantization, scale=[1e-9]),
                         ["op 3 (ADD)", "too small"]),
    "concat requantises": ("graph", lambda m: _set(_tensor(m, "concat").quantization, zeroPoint=[7]),
                           ["op 7 (CONCATENATION)", "quantised unlike the output", "QUANTIZE"]),
    "int16 body": ("graph", lambda m: _set(_tensor(m, "add"), type=fb.TensorType.INT16),
                   ["op 3 (ADD)", "'add'", "int16 activations are unsupported"]),
    "bad sigmoid scale": ("lookups", lambda m: _set(_tensor(m, "sigmoid").quantization, scale=[0.01]),
                          ["op 1", "sigmoid", "LOGISTIC"]),
    "bias scale": ("lookups", lambda m: _set(_tensor(m, "dense/bias").quantization, scale=[0.5]),
                   ["op 2", "'dense/bias'", "further apart than TFLite's prepare allows"]),
    "shape product past int64": ("convnet0", lambda m: _set(_tensor(m, "conv1/weights"),
                                                            shape=[(1 << 31) - 1] * 3 + [6]),
                                 ["'conv1/weights'", "elements, more than 2,147,483,647"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_model_is_rejected_in_one_line(case, tmp_path):
    name, change, needles = BAD[case]
    path = tmp_path / "bad.tflite"
    path.write_bytes(_edit(make(name), change))
    assert_rejected(lambda: load_tflite(path), "bad.tflite", *needles)


@pytest.mark.parametrize("scale", [1e-41, 1e-30, 1e-20])
def test_output_scale_past_the_kernels_left_shift_is_refused(scale):
    """A subnormal or tiny output scale makes a multiplier whose left shift TFLite's int32
    kernels cannot compute: refused at import, naming the layer (it was a traceback, or a
    result that differs from LiteRT)."""
    fc = FullyConnected(name="fc", input_shape=(4,), weights=np.ones((3, 4), np.int8), bias=np.zeros(3, np.int32),
                        weight_scales=np.array([0.01], np.float32), input_q=QParams(0.1, 0), output_q=QParams(0.37, 1))
    data = to_tflite_bytes(Model(name="m", input_shape=(4,), input_q=QParams(0.1, 0), layers=(fc,)))
    pattern = struct.pack("<f", 0.37)
    assert data.count(pattern) == 1
    with pytest.raises(ModelError) as e:
        parse_tflite(data.replace(pattern, struct.pack("<f", scale)), "tiny.tflite")
    message = str(e.value)
    # The exporter always writes a bias, whose scale LiteRT's prepare then checks against the
    # output scale: that refusal comes first, as in LiteRT.
    assert "\n" not in message and message.startswith("tiny.tflite: op 0 (FULLY_CONNECTED): ")
    assert "left shift" in message or "further apart than TFLite's prepare allows" in message


def aliased_tensors(tables=4000, entries=8000):
    """A 100-odd KB file whose ``tables`` tensors all point at one shape vector of ``entries``
    ints: decoding every tensor's shape would read tables x entries values."""
    b = flatbuffers.Builder(0)
    fb.TensorStartShapeVector(b, entries)
    for _ in range(entries):
        b.PrependInt32(1)
    shape = b.EndVector()
    tensors = []
    for _ in range(tables):
        fb.TensorStart(b)
        fb.TensorAddShape(b, shape)
        tensors.append(fb.TensorEnd(b))
    fb.SubGraphStartTensorsVector(b, tables)
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    vec = b.EndVector()
    fb.SubGraphStart(b)
    fb.SubGraphAddTensors(b, vec)
    sg = fb.SubGraphEnd(b)
    fb.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    subgraphs = b.EndVector()
    fb.BufferStart(b)
    empty = fb.BufferEnd(b)
    fb.ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(empty)
    buffers = b.EndVector()
    fb.ModelStart(b)
    fb.ModelAddVersion(b, 3)
    fb.ModelAddSubgraphs(b, subgraphs)
    fb.ModelAddBuffers(b, buffers)
    b.Finish(fb.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_aliased_tables_are_refused_quickly():
    import time
    data = aliased_tensors()
    assert len(data) < 200_000
    t = time.perf_counter()
    with pytest.raises(ModelError, match="aliased vectors"):
        parse_tflite(data, "crafted.tflite")
    assert time.perf_counter() - t < 5


def test_missing_file(tmp_path):
    assert_rejected(lambda: load_tflite(tmp_path / "nope.tflite"), "nope.tflite", "cannot read")


@pytest.mark.parametrize("data", [b"", b"hello, I am not a model", b"\0" * 64, b"\x10\0\0\0TFL3" + b"\xff" * 40,
                                  b"\x04\0\0\0TFL3"])
def test_not_a_tflite_flatbuffer(data, tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(data)
    assert_rejected(lambda: load_tflite(path), "junk.tflite", "not a valid TFLite flatbuffer")


def _parse_or_reject(data, model):
    """Bad bytes give a one-line ModelError; the rare harmless edit still loads as a valid Model."""
    try:
        back = parse_tflite(data, "x.tflite")[0]
    except ModelError as e:
        assert "\n" not in str(e) and str(e).startswith("x.tflite: ")
        return False
    assert isinstance(back, Model) and len(back.layers) == len(model.layers)
    return True


def test_every_truncation_is_rejected():
    model = make("reshape_first")
    data = to_tflite_bytes(model)
    assert not any(_parse_or_reject(data[:n], model) for n in range(len(data)))


@pytest.mark.parametrize("flatten_chain", [False, True])
def test_random_corruption_never_escapes_as_another_exception(flatten_chain):
    rng = np.random.default_rng(2)
    model = make("lookups")
    data = to_tflite_bytes(model, flatten_chain=flatten_chain)
    rejected = 0
    for _ in range(1500):
        bad = bytearray(data)
        for i in rng.integers(0, len(bad), rng.integers(1, 5)):
            bad[i] = rng.integers(0, 256)
        rejected += not _parse_or_reject(bytes(bad), model)
    assert rejected > 500  # hits in weight bytes still load; everything else must be caught


def test_softmax_that_tflite_cannot_prepare_is_rejected():
    with pytest.raises(ModelError, match="too small"):
        Softmax(name="sm", input_shape=(10,), input_q=QParams(1e-9, 0))
    with pytest.raises(ModelError, match="at most 511"):
        Softmax(name="sm", input_shape=(600,), input_q=QParams(0.1, 0))


# Edits that used to be refused as "not a linear chain" and are valid graphs now.
BRANCHED = {
    "read twice": lambda m: _set(_ops(m)[2], inputs=[_tensor_index(m, "conv"), *_ops(m)[2].inputs[1:]]),
    "output not last": lambda m: _set(m.subgraphs[0], outputs=[_tensor_index(m, "tanh")]),
}


@pytest.mark.parametrize("case", BRANCHED)
def test_branched_graphs_import_and_match_litert(case):
    blob = _edit(make("lookups"), BRANCHED[case])
    model, _ = parse_tflite(blob, "branched.tflite")
    assert not model.is_chain
    x = np.random.default_rng(0).integers(-128, 128, size=(16, *model.input_shape)).astype(np.int8)
    want, want_layers = run_litert(blob, x, intermediates=True)
    got, got_layers = run_model(model, x, intermediates=True)
    np.testing.assert_array_equal(got, want)
    for name in want_layers:
        np.testing.assert_array_equal(got_layers[name], want_layers[name], err_msg=name)
