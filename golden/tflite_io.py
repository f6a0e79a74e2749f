"""The only code that reads or writes .tflite flatbuffers.

The importer accepts exactly the subset the generator supports (one subgraph, batch 1, a
linear chain of int8 layers) and turns anything else into a one-line :class:`ModelError`
naming the file and the op or tensor at fault, so users never see a flatbuffer traceback.
The exporter writes a :class:`Model` back as a file LiteRT runs, so tests can build models
by hand and still compare against the real interpreter.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

from .model import Conv2D, FullyConnected, Lookup, Model, ModelError, Pool2D, QParams, Reshape, Softmax


def _names(enum_class):
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


_OP_NAMES = _names(tflite.BuiltinOperator)
_OP_CODES = {v: k for k, v in _OP_NAMES.items()}
_TYPE_NAMES = _names(tflite.TensorType)
_ACTIVATION_NAMES = _names(tflite.ActivationFunctionType)
_PADDING_NAMES = _names(tflite.Padding)
_INT8, _INT32 = tflite.TensorType.INT8, tflite.TensorType.INT32

#: Ops that become layers, and the side ops TF emits to compute a Flatten's shape tensor.
_LAYER_OPS = ("CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "RESHAPE", "LOGISTIC",
              "TANH", "SOFTMAX")
_SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")

_POOL_FIELDS = ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight", "FusedActivationFunction")
#: Op -> (options table, fields read); read while decoding so that _build sees plain dicts.
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", ("Padding", "StrideW", "StrideH", "FusedActivationFunction",
                                  "DilationWFactor", "DilationHFactor")),
    "MAX_POOL_2D": ("Pool2DOptions", _POOL_FIELDS),
    "AVERAGE_POOL_2D": ("Pool2DOptions", _POOL_FIELDS),
    "FULLY_CONNECTED": ("FullyConnectedOptions", ("FusedActivationFunction", "WeightsFormat", "KeepNumDims")),
    "SOFTMAX": ("SoftmaxOptions", ("Beta",)),
}

#: Operator versions the TF converter assigns for int8 data (informational for old runtimes).
_OP_VERSIONS = {"CONV_2D": 3, "MAX_POOL_2D": 2, "AVERAGE_POOL_2D": 2, "FULLY_CONNECTED": 4, "RESHAPE": 1,
                "LOGISTIC": 2, "TANH": 2, "SOFTMAX": 2, "SHAPE": 1, "STRIDED_SLICE": 1, "PACK": 1}


# ---------------------------------------------------------------- decoding


@dataclass
class _Tensor:
    name: str
    type: int
    shape: tuple
    data: bytes | None
    scales: np.ndarray
    zero_points: np.ndarray
    qdim: int

    @property
    def type_name(self):
        return _TYPE_NAMES.get(self.type, f"type {self.type}")


@dataclass
class _Op:
    index: int
    kind: str
    inputs: tuple
    outputs: tuple
    options: dict | None

    def __str__(self):
        return f"op {self.index} ({self.kind})"


@dataclass
class _Graph:
    subgraphs: int
    tensors: list
    ops: list
    inputs: tuple
    outputs: tuple


def _count(n, buf):
    """A vector length, refused when it cannot fit the file (corrupt bytes would loop for ages)."""
    if n * 4 > len(buf):
        raise ValueError(f"vector of {n} entries runs past the end of the file")
    return range(n)


def _ints(obj, field, buf):
    return tuple(int(getattr(obj, field)(j)) for j in _count(getattr(obj, field + "Length")(), buf))


def _text(raw):
    """A name for messages; control characters only come from corrupt string offsets."""
    text = (raw or b"").decode("utf-8", "replace")
    if not text.isprintable():
        raise ValueError("a name contains control characters")
    return text


def _op_kind(code):
    n = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
    if n == tflite.BuiltinOperator.CUSTOM:
        return f"CUSTOM '{_text(code.CustomCode())}'"
    return _OP_NAMES.get(n, f"builtin op {n}")


def _options(op, kind):
    if kind not in _OPTIONS:
        return None
    table_name, fields = _OPTIONS[kind]
    if op.BuiltinOptionsType() != getattr(tflite.BuiltinOptions, table_name):
        return None
    table = op.BuiltinOptions()
    options = getattr(tflite, table_name)()
    options.Init(table.Bytes, table.Pos)
    return {f: getattr(options, f)() for f in fields}


def _tensor(t, buffers, buf):
    q = t.Quantization()
    data = buffers[t.Buffer()]
    return _Tensor(
        name=_text(t.Name()),
        type=t.Type(),
        shape=_ints(t, "Shape", buf),
        data=data or None,
        scales=np.array([q.Scale(j) for j in _count(q.ScaleLength(), buf)] if q else [], np.float32),
        zero_points=np.array(_ints(q, "ZeroPoint", buf) if q else (), np.int64),
        qdim=q.QuantizedDimension() if q else 0)


def _decode(data):
    """Flatbuffer -> plain Python, touching every field used later; any exception means bad bytes."""
    buf = bytes(data)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    m = tflite.Model.GetRootAs(buf, 0)
    kinds = [_op_kind(m.OperatorCodes(j)) for j in _count(m.OperatorCodesLength(), buf)]
    buffers = [bytes(m.Buffers(j).DataAsNumpy()) if m.Buffers(j).DataLength() else b""
               for j in _count(m.BuffersLength(), buf)]
    subgraphs = m.SubgraphsLength()
    if subgraphs == 0:
        return _Graph(0, [], [], (), ())
    sg = m.Subgraphs(0)
    tensors = [_tensor(sg.Tensors(j), buffers, buf) for j in _count(sg.TensorsLength(), buf)]
    ops = []
    for j in _count(sg.OperatorsLength(), buf):
        op = sg.Operators(j)
        kind = kinds[op.OpcodeIndex()]
        ops.append(_Op(j, kind, _ints(op, "Inputs", buf), _ints(op, "Outputs", buf), _options(op, kind)))
    graph = _Graph(subgraphs, tensors, ops, _ints(sg, "Inputs", buf), _ints(sg, "Outputs", buf))
    refs = [i for op in ops for i in op.inputs if i != -1] + [i for op in ops for i in op.outputs]
    if not all(0 <= i < len(tensors) for i in refs + list(graph.inputs + graph.outputs)):
        raise ValueError("tensor index out of range")
    if any(d < 0 for t in tensors for d in t.shape):
        raise ValueError("negative tensor dimension")
    return graph


# ---------------------------------------------------------------- building the Model


def _act_q(t):
    """QParams of an int8 activation tensor."""
    if t.type != _INT8:
        raise ModelError(f"tensor '{t.name}' is {t.type_name}; only full-integer int8 models are supported")
    if t.scales.size == 0:
        raise ModelError(f"tensor '{t.name}' has no quantisation parameters")
    if t.scales.size != 1 or t.zero_points.size != 1:
        raise ModelError(f"tensor '{t.name}' has {t.scales.size} scales and {t.zero_points.size} zero points; "
                         "activations need exactly one of each")
    try:
        return QParams(float(t.scales[0]), int(t.zero_points[0]))
    except ModelError as e:
        raise ModelError(f"tensor '{t.name}': {e}") from None


def _const(t, ttype, what):
    """A constant tensor's data as an array of its declared shape."""
    if t.type != ttype:
        raise ModelError(f"{what} tensor '{t.name}' is {t.type_name}, expected {_TYPE_NAMES[ttype]}")
    if t.data is None:
        raise ModelError(f"{what} tensor '{t.name}' is not a constant")
    dtype = np.dtype("<i1" if ttype == _INT8 else "<i4")
    need = int(np.prod(t.shape)) * dtype.itemsize
    if len(t.data) != need:
        raise ModelError(f"{what} tensor '{t.name}' holds {len(t.data)} bytes, its shape {list(t.shape)} needs {need}")
    return np.frombuffer(t.data, dtype).reshape(t.shape).astype(dtype.newbyteorder("="))


def _activation(code):
    name = _ACTIVATION_NAMES.get(code, str(code))
    if name not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise ModelError(f"fused activation {name} is unsupported")
    return name


def _padding(code):
    if code not in _PADDING_NAMES:
        raise ModelError(f"unknown padding {code}")
    return _PADDING_NAMES[code]


def _weights(g, op):
    """Weights, bias (None when absent) and weight scales of a CONV_2D or FULLY_CONNECTED."""
    if len(op.inputs) < 2 or op.inputs[1] == -1:
        raise ModelError("has no weights tensor")
    t = g.tensors[op.inputs[1]]
    weights = _const(t, _INT8, "weights")
    if t.scales.size == 0:
        raise ModelError(f"weights tensor '{t.name}' has no quantisation parameters")
    if np.any(t.zero_points != 0):
        raise ModelError(f"weights tensor '{t.name}' has a non-zero zero point; only symmetric int8 weights "
                         "are supported")
    if t.scales.size > 1 and t.qdim != 0:
        raise ModelError(f"weights tensor '{t.name}' is quantised along dimension {t.qdim}; only per-output-"
                         "channel (dimension 0) is supported")
    bias = None
    if len(op.inputs) > 2 and op.inputs[2] != -1:
        bias = _const(g.tensors[op.inputs[2]], _INT32, "bias")
    return weights, bias, t.scales


def _same_q(op, q, out_q):
    if out_q != q:
        raise ModelError(f"output quantisation (scale {out_q.scale:.9g}, zero point {out_q.zero_point}) differs "
                         f"from the input's (scale {q.scale:.9g}, zero point {q.zero_point}); {op.kind} needs them equal")


def _layer(g, op, name, shape, q, out_q):
    """One supported op as a Layer; ``shape``/``q`` describe its input, ``out_q`` its output tensor."""
    o = op.options
    if op.kind in _OPTIONS and o is None:
        raise ModelError(f"missing {_OPTIONS[op.kind][0]}")
    if op.kind == "CONV_2D":
        if (o["DilationHFactor"], o["DilationWFactor"]) != (1, 1):
            raise ModelError(f"dilation {o['DilationHFactor']}x{o['DilationWFactor']} is unsupported (only 1x1)")
        weights, bias, scales = _weights(g, op)
        return Conv2D(name, shape, weights=weights, bias=bias, weight_scales=scales, input_q=q, output_q=out_q,
                      activation=_activation(o["FusedActivationFunction"]), stride=(o["StrideH"], o["StrideW"]),
                      padding=_padding(o["Padding"]))
    if op.kind == "FULLY_CONNECTED":
        if o["KeepNumDims"]:
            raise ModelError("keep_num_dims is unsupported")
        if o["WeightsFormat"] != tflite.FullyConnectedOptionsWeightsFormat.DEFAULT:
            raise ModelError("shuffled weights format is unsupported")
        weights, bias, scales = _weights(g, op)
        return FullyConnected(name, shape, weights=weights, bias=bias, weight_scales=scales, input_q=q,
                              output_q=out_q, activation=_activation(o["FusedActivationFunction"]))
    if op.kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        _same_q(op, q, out_q)
        return Pool2D(name, shape, kind=op.kind.split("_")[0], filter=(o["FilterHeight"], o["FilterWidth"]),
                      stride=(o["StrideH"], o["StrideW"]), padding=_padding(o["Padding"]),
                      activation=_activation(o["FusedActivationFunction"]), q=q)
    if op.kind == "RESHAPE":
        _same_q(op, q, out_q)
        return Reshape(name, shape, new_shape=g.tensors[op.outputs[0]].shape[1:], q=q)
    if op.kind in ("LOGISTIC", "TANH"):
        return Lookup(name, shape, kind=op.kind, input_q=q, output_q=out_q)
    return Softmax(name, shape, beta=o["Beta"], input_q=q, output_q=out_q)


def _check_batch(t, what):
    if len(t.shape) < 2 or t.shape[0] != 1:
        raise ModelError(f"{what} tensor '{t.name}' has shape {list(t.shape)}; only batch 1 (leading dimension 1) "
                         "is supported")


def _build(g, name):
    """Validate the decoded graph and build the Model; returns it and each layer's output tensor index."""
    if g.subgraphs != 1:
        raise ModelError(f"has {g.subgraphs} subgraphs; only single-subgraph models are supported")
    for op in g.ops:
        if op.kind in ("QUANTIZE", "DEQUANTIZE"):
            raise ModelError(f"{op}: float input/output and requantisation are unsupported; convert with "
                             "inference_input_type and inference_output_type int8")
        if op.kind not in _LAYER_OPS + _SHAPE_OPS:
            raise ModelError(f"{op}: unsupported operator (supported: {', '.join(_LAYER_OPS)})")
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ModelError(f"has {len(g.inputs)} inputs and {len(g.outputs)} outputs; exactly one of each is supported")
    x = g.tensors[g.inputs[0]]
    input_q = _act_q(x)
    _check_batch(x, "input")

    # Every reader of a data tensor except SHAPE (which only reads its dimensions) must be the next layer.
    readers = {}
    for op in g.ops:
        if op.kind != "SHAPE":
            for i in set(op.inputs) - {-1}:
                readers.setdefault(i, []).append(op)

    def check_readers(i, expected):
        found = readers.get(i, [])
        if found != expected:
            ops = ", ".join(map(str, found))
            raise ModelError(f"tensor '{g.tensors[i].name}' is read by {len(found)} ops ({ops}); only linear "
                             "chains are supported")

    layers, indices = [], []
    cur, shape, q = g.inputs[0], x.shape[1:], input_q
    for op in (op for op in g.ops if op.kind in _LAYER_OPS):
        try:
            if not op.inputs or op.inputs[0] != cur:
                read = f"tensor '{g.tensors[op.inputs[0]].name}'" if op.inputs and op.inputs[0] != -1 else "no tensor"
                raise ModelError(f"reads {read} instead of the previous output '{g.tensors[cur].name}'; "
                                 "only linear chains are supported")
            check_readers(cur, [op])
            if len(op.outputs) != 1:
                raise ModelError(f"has {len(op.outputs)} outputs, expected 1")
            out = g.tensors[op.outputs[0]]
            out_q = _act_q(out)
            _check_batch(out, "output")
            layer = _layer(g, op, out.name or f"{op.kind.lower()}_{op.index}", shape, q, out_q)
            if out.shape != (1, *layer.output_shape):
                raise ModelError(f"output tensor '{out.name}' has shape {list(out.shape)}, expected "
                                 f"{[1, *layer.output_shape]}")
        except ModelError as e:
            raise ModelError(f"{op}: {e}") from None
        layers.append(layer)
        indices.append(op.outputs[0])
        cur, shape, q = op.outputs[0], layer.output_shape, layer.output_q
    if cur != g.outputs[0]:
        raise ModelError(f"the model output '{g.tensors[g.outputs[0]].name}' is not the end of the op chain "
                         f"('{g.tensors[cur].name}')")
    check_readers(cur, [])
    return Model(name, x.shape[1:], input_q, layers), tuple(indices)


def parse_tflite(data, source="<bytes>"):
    """Import .tflite bytes; returns the Model and, per layer, the index of its output tensor in the file.

    The indices let an interpreter read intermediate outputs without trusting names to be unique.
    ``source`` names the file in error messages and its stem becomes the model name.
    """
    try:
        graph = _decode(data)
    except Exception as e:  # the flatbuffer reader raises anything at all on bad bytes
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ModelError(f"{source}: not a valid TFLite flatbuffer ({reason})") from None
    try:
        return _build(graph, Path(source).stem)
    except ModelError as e:
        raise ModelError(f"{source}: {e}") from None


def load_tflite(path):
    """Import a full-integer int8 .tflite file as a Model."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return parse_tflite(data, str(path))[0]


# ---------------------------------------------------------------- exporting


class _Writer:
    """Collects tensors, buffers and ops as plain lists, then serialises them in one pass."""

    def __init__(self):
        self.tensors = []      # (name, type, shape, buffer index, (scales, zero points) or None)
        self.buffers = [b""]   # buffer 0 is the empty sentinel TFLite expects
        self.kinds = []
        self.ops = []          # (opcode index, inputs, outputs, (options type, builder fn) or None)

    def tensor(self, name, ttype, shape, data=None, scales=None, zero_points=None):
        buffer = 0
        if data is not None:
            self.buffers.append(bytes(data))
            buffer = len(self.buffers) - 1
        q = None if scales is None else (np.asarray(scales, np.float32).reshape(-1),
                                         np.asarray(zero_points, np.int64).reshape(-1))
        self.tensors.append((name, ttype, tuple(shape), buffer, q))
        return len(self.tensors) - 1

    def const(self, name, values, ttype=_INT32, scales=None):
        values = np.asarray(values)
        dtype = "<i1" if ttype == _INT8 else "<i4"
        zero_points = None if scales is None else np.zeros(np.size(scales), np.int64)
        return self.tensor(name, ttype, values.shape, values.astype(dtype).tobytes(), scales, zero_points)

    def op(self, kind, inputs, outputs, options=None):
        if kind not in self.kinds:
            self.kinds.append(kind)
        self.ops.append((self.kinds.index(kind), inputs, outputs, options))

    def serialise(self, graph_inputs, graph_outputs):
        b = flatbuffers.Builder(1024)

        def vector(start, items):
            start(b, len(items))
            for item in reversed(items):
                b.PrependUOffsetTRelative(item)
            return b.EndVector()

        def ints(values, dtype=np.int32):
            return b.CreateNumpyVector(np.asarray(values, dtype))

        buffers = []
        for data in self.buffers:
            vec = b.CreateByteVector(data) if data else None
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            buffers.append(tflite.BufferEnd(b))

        tensors = []
        for name, ttype, shape, buffer, q in self.tensors:
            name_off, shape_off = b.CreateString(name), ints(shape)
            q_off = None
            if q is not None:
                scales, zero_points = b.CreateNumpyVector(q[0]), ints(q[1], np.int64)
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, scales)
                tflite.QuantizationParametersAddZeroPoint(b, zero_points)
                tflite.QuantizationParametersAddQuantizedDimension(b, 0)
                q_off = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape_off)
            tflite.TensorAddType(b, ttype)
            tflite.TensorAddBuffer(b, buffer)
            tflite.TensorAddName(b, name_off)
            if q_off is not None:
                tflite.TensorAddQuantization(b, q_off)
            tensors.append(tflite.TensorEnd(b))

        ops = []
        for opcode, inputs, outputs, options in self.ops:
            in_off, out_off = ints(inputs), ints(outputs)
            opt_off = options[1](b) if options else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, opcode)
            tflite.OperatorAddInputs(b, in_off)
            tflite.OperatorAddOutputs(b, out_off)
            if options:
                tflite.OperatorAddBuiltinOptionsType(b, options[0])
                tflite.OperatorAddBuiltinOptions(b, opt_off)
            ops.append(tflite.OperatorEnd(b))

        codes = []
        for kind in self.kinds:
            code = _OP_CODES[kind]
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, tflite.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, _OP_VERSIONS[kind])
            codes.append(tflite.OperatorCodeEnd(b))

        tensors_off = vector(tflite.SubGraphStartTensorsVector, tensors)
        ops_off = vector(tflite.SubGraphStartOperatorsVector, ops)
        in_off, out_off, sg_name = ints(graph_inputs), ints(graph_outputs), b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_off)
        tflite.SubGraphAddInputs(b, in_off)
        tflite.SubGraphAddOutputs(b, out_off)
        tflite.SubGraphAddOperators(b, ops_off)
        tflite.SubGraphAddName(b, sg_name)
        subgraphs_off = vector(tflite.ModelStartSubgraphsVector, [tflite.SubGraphEnd(b)])
        codes_off = vector(tflite.ModelStartOperatorCodesVector, codes)
        buffers_off = vector(tflite.ModelStartBuffersVector, buffers)
        description = b.CreateString("cnn2fpga golden.tflite_io")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_off)
        tflite.ModelAddSubgraphs(b, subgraphs_off)
        tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffers_off)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _options_builder(table_name, **fields):
    """(BuiltinOptions type, fn building the table) for ``fields`` named like the schema's Add* calls."""
    def build(b):
        getattr(tflite, f"{table_name}Start")(b)
        for field, value in fields.items():
            getattr(tflite, f"{table_name}Add{field}")(b, value)
        return getattr(tflite, f"{table_name}End")(b)
    return getattr(tflite.BuiltinOptions, table_name), build


_ACTIVATION_CODES = {v: k for k, v in _ACTIVATION_NAMES.items()}
_PADDING_CODES = {v: k for k, v in _PADDING_NAMES.items()}


def _export_weighted(w, layer, x, out, kind, options):
    scales = layer.weight_scales
    weights = w.const(f"{layer.name}/weights", layer.weights, _INT8, scales=scales)
    # Always written: LiteRT's int8 CONV_2D refuses to run without one.
    bias = w.const(f"{layer.name}/bias", layer.bias, scales=np.float32(layer.input_q.scale) * scales)
    w.op(kind, [x, weights, bias], [out], options)


def _export_reshape(w, layer, x, out, flatten_chain):
    dims = (1, *layer.new_shape)
    if not flatten_chain:
        w.op("RESHAPE", [x, w.const(f"{layer.name}/shape", dims)], [out])
        return
    # What TF emits for reshape(x, [shape(x)[0], ...]): the batch size is read back at run time.
    shape = w.tensor(f"{layer.name}/Shape", _INT32, (1 + len(layer.input_shape),))
    w.op("SHAPE", [x], [shape], _options_builder("ShapeOptions", OutType=_INT32))
    batch = w.tensor(f"{layer.name}/strided_slice", _INT32, ())
    w.op("STRIDED_SLICE", [shape, w.const(f"{layer.name}/strided_slice/begin", [0]),
                           w.const(f"{layer.name}/strided_slice/end", [1]),
                           w.const(f"{layer.name}/strided_slice/strides", [1])],
         [batch], _options_builder("StridedSliceOptions", ShrinkAxisMask=1))
    rest = [w.const(f"{layer.name}/Reshape/shape/{i}", d) for i, d in enumerate(dims[1:], 1)]
    packed = w.tensor(f"{layer.name}/Reshape/shape", _INT32, (len(dims),))
    w.op("PACK", [batch, *rest], [packed], _options_builder("PackOptions", ValuesCount=len(dims), Axis=0))
    w.op("RESHAPE", [x, packed], [out])


def to_tflite_bytes(model, *, flatten_chain=False):
    """Serialise a Model as a schema-3 .tflite that LiteRT runs.

    With ``flatten_chain`` each Reshape is written as TF's SHAPE -> STRIDED_SLICE -> PACK ->
    RESHAPE chain, to prove the importer folds it.
    """
    w = _Writer()

    def activation_tensor(name, shape, q):
        return w.tensor(name, _INT8, (1, *shape), scales=[q.scale], zero_points=[q.zero_point])

    first = x = activation_tensor("input", model.input_shape, model.input_q)
    for layer in model.layers:
        out = activation_tensor(layer.name, layer.output_shape, layer.output_q)
        if isinstance(layer, Conv2D):
            _export_weighted(w, layer, x, out, "CONV_2D", _options_builder(
                "Conv2DOptions", Padding=_PADDING_CODES[layer.padding], StrideW=layer.stride[1],
                StrideH=layer.stride[0], FusedActivationFunction=_ACTIVATION_CODES[layer.activation]))
        elif isinstance(layer, FullyConnected):
            _export_weighted(w, layer, x, out, "FULLY_CONNECTED", _options_builder(
                "FullyConnectedOptions", FusedActivationFunction=_ACTIVATION_CODES[layer.activation]))
        elif isinstance(layer, Pool2D):
            w.op(f"{layer.kind}_POOL_2D", [x], [out], _options_builder(
                "Pool2DOptions", Padding=_PADDING_CODES[layer.padding], StrideW=layer.stride[1],
                StrideH=layer.stride[0], FilterWidth=layer.filter[1], FilterHeight=layer.filter[0],
                FusedActivationFunction=_ACTIVATION_CODES[layer.activation]))
        elif isinstance(layer, Reshape):
            _export_reshape(w, layer, x, out, flatten_chain)
        elif isinstance(layer, Lookup):
            w.op(layer.kind, [x], [out])
        elif isinstance(layer, Softmax):
            w.op("SOFTMAX", [x], [out], _options_builder("SoftmaxOptions", Beta=layer.beta))
        else:
            raise ModelError(f"{layer.name}: cannot export a {type(layer).__name__} layer")
        x = out
    return w.serialise([first], [x])


def save_tflite(model, path, *, flatten_chain=False):
    """Write ``model`` to ``path`` atomically: a temp file beside it, renamed only once complete."""
    data = to_tflite_bytes(model, flatten_chain=flatten_chain)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
