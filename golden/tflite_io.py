"""The only code that reads or writes .tflite flatbuffers.

The importer accepts one subgraph, batch 1, int8 bodies (uint8 or float32 only at the
model's input and output, through QUANTIZE/DEQUANTIZE) of the ops in the registry
(:mod:`golden.ops`) wired as any DAG, and turns anything else into a one-line
:class:`ModelError` naming the file and the op or tensor at fault, so users never see a
flatbuffer traceback.  The flatbuffer work is generic here; what each op reads from its
operands and options, and how it writes itself back, is in its op module (``from_tflite``
through a :class:`_Reader`, ``to_tflite`` through a :class:`_Writer`).  The exporter lets
tests build models by hand and still compare against the real interpreter.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

from .files import write_atomic
from .model import Model, ModelError, QParams, Tensor, dtype_of
from .ops import BY_TFLITE, OPS, Quantize


def _names(enum_class):
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


_OP_NAMES = _names(tflite.BuiltinOperator)
_OP_CODES = {v: k for k, v in _OP_NAMES.items()}
_TYPE_NAMES = _names(tflite.TensorType)
_TYPES = {"int8": tflite.TensorType.INT8, "uint8": tflite.TensorType.UINT8, "int32": tflite.TensorType.INT32,
          "int64": tflite.TensorType.INT64, "float32": tflite.TensorType.FLOAT32}
_NUMPY = {"int8": "<i1", "uint8": "u1", "int32": "<i4", "int64": "<i8", "float32": "<f4"}

#: The side ops TF emits to compute a Flatten's shape tensor; RESHAPE takes its shape from
#: its output tensor, so they are never evaluated.
_SHAPE_OPS = {"SHAPE": ("ShapeOptions", (), 1), "STRIDED_SLICE": ("StridedSliceOptions", (), 1),
              "PACK": ("PackOptions", (), 1)}
#: Op -> (options table, fields read, version, (fewest, most inputs)), for every op the importer takes.
_OPTIONS = {name: spec for cls in OPS for name, spec in cls.TFLITE.items()}
#: Why well-known ops outside the set are refused.
_REFUSED = {
    "LSTM": "recurrent ops are unsupported", "UNIDIRECTIONAL_SEQUENCE_LSTM": "recurrent ops are unsupported",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "recurrent ops are unsupported", "RNN": "recurrent ops are unsupported",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "recurrent ops are unsupported", "SVDF": "stateful SVDF is unsupported",
    "VAR_HANDLE": "variables are unsupported", "READ_VARIABLE": "variables are unsupported",
    "ASSIGN_VARIABLE": "variables are unsupported",
}


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


class _Budget:
    """What decoding may read in all: a few times the file.  Every vector and buffer a valid
    file holds is stored once, but a crafted one can point many tables at one large vector
    (aliasing), and decoding each copy would take time quadratic in the file's size."""

    def __init__(self, buf):
        self.size = len(buf)
        self.left = 4 * len(buf) + (1 << 16)

    def take(self, nbytes):
        if nbytes > self.size:
            raise ValueError(f"vector of {nbytes} bytes runs past the end of the file")
        self.left -= nbytes
        if self.left < 0:
            raise ValueError("its tables point at the same data over and over (aliased vectors): "
                             "more to decode than the file holds")


#: The most elements a tensor may have (int32 indexing, as TFLite's kernels use); a crafted
#: shape's product could otherwise wrap int64 in NumPy.
MAX_ELEMENTS = (1 << 31) - 1


def _count(n, budget):
    """A vector length, refused when it cannot fit the file (corrupt bytes would loop for ages)."""
    budget.take(n * 4)
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
    if kind not in _OPTIONS or _OPTIONS[kind][0] is None:
        return None
    table_name, fields = _OPTIONS[kind][:2]
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
    raw = bytes(data)
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    m = tflite.Model.GetRootAs(raw, 0)
    buf = _Budget(raw)
    kinds = [_op_kind(m.OperatorCodes(j)) for j in _count(m.OperatorCodesLength(), buf)]
    buffers = []
    for j in _count(m.BuffersLength(), buf):
        n = m.Buffers(j).DataLength()
        buf.take(n)
        buffers.append(bytes(m.Buffers(j).DataAsNumpy()) if n else b"")
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
    for t in tensors:
        if math.prod(t.shape) > MAX_ELEMENTS:
            raise ValueError(f"tensor '{t.name}' of shape {list(t.shape)} has {math.prod(t.shape):,} elements, "
                             f"more than {MAX_ELEMENTS:,}")
    return graph


# ---------------------------------------------------------------- building the Model


def _act_type(t):
    """A tensor's quantised type (QParams), or None for float32; other types are refused."""
    if t.type == _TYPES["float32"]:
        return None
    if t.type == tflite.TensorType.INT16:
        raise ModelError(f"tensor '{t.name}' is INT16; int16 activations are unsupported (only int8 bodies)")
    if t.type not in (_TYPES["int8"], _TYPES["uint8"]):
        raise ModelError(f"tensor '{t.name}' is {t.type_name}; only int8 tensors (uint8 or float32 at the "
                         "model's edges) are supported")
    if t.scales.size == 0:
        raise ModelError(f"tensor '{t.name}' has no quantisation parameters")
    if t.scales.size != 1 or t.zero_points.size != 1:
        raise ModelError(f"tensor '{t.name}' has {t.scales.size} scales and {t.zero_points.size} zero points; "
                         "activations need exactly one of each")
    try:
        return QParams(float(t.scales[0]), int(t.zero_points[0]), "int8" if t.type == _TYPES["int8"] else "uint8")
    except ModelError as e:
        raise ModelError(f"tensor '{t.name}': {e}") from None


def _batchless(t, what):
    if len(t.shape) < 2 or t.shape[0] != 1:
        raise ModelError(f"{what} tensor '{t.name}' has shape {list(t.shape)}; only batch 1 (leading dimension 1) "
                         "is supported")
    return tuple(t.shape[1:])


class _Reader:
    """What an op module's ``from_tflite`` sees of one operator: its operands and options."""

    def __init__(self, graph, op, produced, name):
        self.graph, self._op, self._produced, self.name = graph, op, produced, name
        self.op = op.kind
        out = graph.tensors[op.outputs[0]]
        self.output = Tensor(name, _batchless(out, "output"), _act_type(out))

    @property
    def n_inputs(self):
        return len(self._op.inputs)

    def has_input(self, k):
        return k < len(self._op.inputs) and self._op.inputs[k] != -1

    def _tensor(self, k):
        if not self.has_input(k):
            raise ModelError(f"input {k} is missing")
        return self.graph.tensors[self._op.inputs[k]]

    def data(self, k):
        """Input ``k``, a tensor an earlier op (or the model input) computes."""
        i = self._op.inputs[k] if self.has_input(k) else -1
        if i in self._produced:
            return self._produced[i]
        t = self._tensor(k)
        if t.data is not None:
            raise ModelError(f"input {k} is the constant tensor '{t.name}'; a {self.op} with a constant operand "
                             "is unsupported")
        raise ModelError(f"reads tensor '{t.name}', which no earlier op writes")

    def const(self, k, dtypes):
        """Constant input ``k`` as an array of its declared shape, its type one of ``dtypes``."""
        t = self._tensor(k)
        names = {v: n for n, v in _TYPES.items()}
        if names.get(t.type) not in dtypes:
            raise ModelError(f"tensor '{t.name}' is {t.type_name}, expected {' or '.join(d.upper() for d in dtypes)}")
        if t.data is None:
            raise ModelError(f"tensor '{t.name}' is not a constant")
        dtype = np.dtype(_NUMPY[names[t.type]])
        need = int(np.prod(t.shape)) * dtype.itemsize
        if len(t.data) != need:
            raise ModelError(f"tensor '{t.name}' holds {len(t.data)} bytes, its shape {list(t.shape)} needs {need}")
        return np.frombuffer(t.data, dtype).reshape(t.shape).astype(dtype.newbyteorder("="))

    def const_q(self, k):
        t = self._tensor(k)
        return _act_type(t) if t.scales.size else None

    def weights(self, k, qdim):
        """Symmetric int8 weights and their scales, per tensor or per channel along ``qdim``."""
        if not self.has_input(k):
            raise ModelError("has no weights tensor")
        t = self._tensor(k)
        weights = self.const(k, ("int8",))
        if t.scales.size == 0:
            raise ModelError(f"weights tensor '{t.name}' has no quantisation parameters")
        if np.any(t.zero_points != 0):
            raise ModelError(f"weights tensor '{t.name}' has a non-zero zero point; only symmetric int8 weights "
                             "are supported")
        if t.scales.size > 1 and t.qdim != qdim:
            raise ModelError(f"weights tensor '{t.name}' is quantised along dimension {t.qdim}; a {self.op} is "
                             f"quantised per channel along dimension {qdim}")
        return weights, t.scales

    def bias(self, k):
        """int32 bias of a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED (data input 0,
        weights input 1).  With per-tensor weights LiteRT's prepare
        (``GetQuantizedConvolutionMultipler``) refuses a bias scale further from the input
        scale times the weight scale than 2 % of the output scale, and so does this."""
        if not self.has_input(k):
            return None
        t, x, w = self._tensor(k), self._tensor(0), self._tensor(1)
        out = self.graph.tensors[self._op.outputs[0]]
        if t.scales.size == 1 and w.scales.size == 1 and x.scales.size == 1 and out.scales.size == 1:
            product, scale = float(x.scales[0]) * float(w.scales[0]), float(t.scales[0])
            if not abs(product - scale) / float(out.scales[0]) <= 0.02:
                raise ModelError(f"bias '{t.name}' has scale {scale:.9g}, the input scale times the weight scale is "
                                 f"{product:.9g}: further apart than TFLite's prepare allows (2 % of the output "
                                 f"scale {float(out.scales[0]):.9g})")
        return self.const(k, ("int32",))

    def options(self, required=True):
        if self._op.options is None:
            if required and _OPTIONS[self.op][0] is not None:
                raise ModelError(f"missing {_OPTIONS[self.op][0]}")
            return {}
        return self._op.options


def _refusal(op):
    if op.kind.startswith("CUSTOM"):
        return f"{op}: custom operators are unsupported"
    reason = _REFUSED.get(op.kind, "unsupported operator")
    return f"{op}: {reason} (supported: {', '.join(sorted(BY_TFLITE))})"


def _build(g, name):
    """Validate the decoded graph and build the Model; returns it and each layer's output tensor index."""
    if g.subgraphs != 1:
        raise ModelError(f"has {g.subgraphs} subgraphs; only single-subgraph models are supported")
    for op in g.ops:
        if op.kind not in BY_TFLITE and op.kind not in _SHAPE_OPS:
            raise ModelError(_refusal(op))
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ModelError(f"has {len(g.inputs)} inputs and {len(g.outputs)} outputs; exactly one of each is supported")
    x = g.tensors[g.inputs[0]]
    input_q = _act_type(x)
    input_shape = _batchless(x, "input")
    used = set()

    def unique(text, fallback):
        text = text or fallback
        out, n = text, 1
        while out in used:
            n += 1
            out = f"{text}#{n}"
        used.add(out)
        return out

    produced = {g.inputs[0]: Tensor(unique(x.name, "input"), input_shape, input_q)}
    shape_tensors = set()
    layers, indices = [], []
    for op in g.ops:
        try:
            if op.kind in _SHAPE_OPS:
                shape_tensors.update(op.outputs)
                continue
            if len(op.outputs) != 1:
                raise ModelError(f"has {len(op.outputs)} outputs, expected 1")
            cls = BY_TFLITE[op.kind]
            fewest, most = _OPTIONS[op.kind][3]
            n = len(op.inputs)
            if n < fewest or (most is not None and n > most):
                want = f"{fewest}" if fewest == most else f"{fewest} to {most}" if most else f"at least {fewest}"
                raise ModelError(f"has {n} inputs, a {op.kind} takes {want}")
            for k, i in enumerate(op.inputs):
                if i in shape_tensors and not (op.kind == "RESHAPE" and k == 1):
                    raise ModelError(f"reads the shape computation '{g.tensors[i].name}' as data")
            out = g.tensors[op.outputs[0]]
            if cls is not Quantize:     # the only op that converts types: the rest keep int8 bodies
                first = g.tensors[op.inputs[0]] if op.inputs[0] != -1 else out
                for t in (first, out):
                    if t.type != _TYPES["int8"]:
                        _act_type(t)        # int16 and other types have their own message
                        raise ModelError(f"tensor '{t.name}' is {t.type_name}; only int8 bodies are supported "
                                         "(UINT8 and FLOAT32 only at the model's input and output, through "
                                         "QUANTIZE/DEQUANTIZE)")
            reader = _Reader(g, op, produced, unique(out.name, f"{op.kind.lower()}_{op.index}"))
            layer = cls.from_tflite(reader)
            if reader.output.shape != tuple(layer.output_shape):
                raise ModelError(f"output tensor '{out.name}' has shape {list(out.shape)}, expected "
                                 f"{[1, *layer.output_shape]}")
        except (ModelError, ValueError) as e:   # ValueError: quantisation the kernels cannot represent
            raise ModelError(f"{op}: {e}") from None
        layers.append(layer)
        indices.append(op.outputs[0])
        produced[op.outputs[0]] = reader.output
    if g.outputs[0] not in produced or g.outputs[0] == g.inputs[0]:
        raise ModelError(f"the model output '{g.tensors[g.outputs[0]].name}' is not written by any op")
    if not layers:
        raise ModelError("has no ops")
    model = Model(name, input_shape, input_q, layers, input_name=produced[g.inputs[0]].name,
                  output_name=produced[g.outputs[0]].name)
    _prepare(model)
    return model, tuple(indices)


def _prepare(model):
    """What LiteRT's prepare does before it runs anything: every layer computes its integer
    parameters (one input of zeros through the model), so a quantisation the kernels cannot
    represent is refused at import, naming the layer, not met at the first inference."""
    live = {model.input_name: np.zeros((1, *model.input_shape), dtype_of(model.input_q))}
    for layer in model.layers:
        try:
            live[layer.name] = layer.run(*(live[src] for src in model.inputs_of(layer)))
        except ValueError as e:
            raise ModelError(f"layer '{layer.name}': {' '.join(str(e).split())}") from None


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
    """Import a .tflite file as a Model."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return parse_tflite(data, str(path))[0]


# ---------------------------------------------------------------- exporting


class _Writer:
    """Collects tensors, buffers and ops as plain lists, then serialises them in one pass."""

    def __init__(self):
        self.flatten_chain = False   # write RESHAPEs as TF's SHAPE -> STRIDED_SLICE -> PACK chain
        self.tensors = []      # (name, type, shape, buffer index, (scales, zero points) or None)
        self.buffers = [b""]   # buffer 0 is the empty sentinel TFLite expects
        self.kinds = []
        self.ops = []          # (opcode index, inputs, outputs, (options type, builder fn) or None)

    def tensor(self, name, dtype, shape, data=None, scales=None, zero_points=None, qdim=0):
        """A tensor of type ``dtype`` ("int8", "int32", ...); returns its index."""
        buffer = 0
        if data is not None:
            self.buffers.append(bytes(data))
            buffer = len(self.buffers) - 1
        q = None if scales is None else (np.asarray(scales, np.float32).reshape(-1),
                                         np.asarray(zero_points, np.int64).reshape(-1), int(qdim))
        self.tensors.append((name, _TYPES[dtype], tuple(shape), buffer, q))
        return len(self.tensors) - 1

    def activation(self, name, shape, q):
        """A computed tensor of batch 1 and type ``q`` (QParams, or None for float32)."""
        if q is None:
            return self.tensor(name, "float32", (1, *shape))
        return self.tensor(name, q.dtype, (1, *shape), scales=[q.scale], zero_points=[q.zero_point])

    def const(self, name, values, dtype, scales=None, zero_points=None, qdim=0):
        values = np.asarray(values)
        if scales is not None and zero_points is None:
            zero_points = np.zeros(np.size(scales), np.int64)
        return self.tensor(name, dtype, values.shape, values.astype(_NUMPY[dtype]).tobytes(), scales, zero_points,
                           qdim)

    def op(self, kind, inputs, outputs, options=None):
        """``options``: (options table name, {field: value}) or None."""
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
                tflite.QuantizationParametersAddQuantizedDimension(b, q[2])
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
            opt_off = _build_options(b, *options) if options else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, opcode)
            tflite.OperatorAddInputs(b, in_off)
            tflite.OperatorAddOutputs(b, out_off)
            if options:
                tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, options[0]))
                tflite.OperatorAddBuiltinOptions(b, opt_off)
            ops.append(tflite.OperatorEnd(b))

        codes = []
        for kind in self.kinds:
            code = _OP_CODES[kind]
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(
                b, min(code, tflite.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, (_OPTIONS.get(kind) or _SHAPE_OPS[kind])[2])
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


def _build_options(b, table, fields):
    """An options table from {field: value}, field names as the schema's Add* calls; lists become vectors."""
    vectors = {f: b.CreateNumpyVector(np.asarray(v, np.int32)) for f, v in fields.items() if isinstance(v, list)}
    getattr(tflite, f"{table}Start")(b)
    for field, value in fields.items():
        getattr(tflite, f"{table}Add{field}")(b, vectors.get(field, value))
    return getattr(tflite, f"{table}End")(b)


def to_tflite_bytes(model, *, flatten_chain=False):
    """Serialise a Model as a schema-3 .tflite that LiteRT runs.

    With ``flatten_chain`` each RESHAPE is written as TF's SHAPE -> STRIDED_SLICE -> PACK ->
    RESHAPE chain, to prove the importer folds it.
    """
    w = _Writer()
    w.flatten_chain = flatten_chain
    ids = {model.input_name: w.activation(model.input_name, model.input_shape, model.input_q)}
    for layer in model.layers:
        out = w.activation(layer.name, layer.output_shape, layer.output_q)
        ins = [ids[src] for src in model.inputs_of(layer)]
        layer.to_tflite(w, ins, out)
        ids[layer.name] = out
    return w.serialise([ids[model.input_name]], [ids[model.output_name]])


def save_tflite(model, path, *, flatten_chain=False):
    """Write ``model`` to ``path`` atomically (nothing half-written)."""
    write_atomic(path, to_tflite_bytes(model, flatten_chain=flatten_chain))
