"""The op registry: every op the project knows, one module each, and the golden model that
runs a :class:`~golden.model.Model` with them, bit-exact with TFLite's int8 reference kernels.

An op module holds its IR class (validation in ``__post_init__``), its batched golden
kernel ``run``, its TFLite import ``from_tflite`` and export ``to_tflite`` (the operators
it covers in ``TFLITE``: opcode -> (options table, fields read, version, (fewest, most
inputs))), its random-generator entry ``random`` and the option names it exercises,
``features``, for the coverage test.  Adding an op means adding a module and listing it here.
"""

import numpy as np

from ..model import dtype_of, type_name
from .add import Add
from .concatenation import Concatenation
from .conv2d import Conv2D
from .depthwise_conv2d import DepthwiseConv2D
from .fully_connected import FullyConnected
from .lookup import Lookup
from .mean import Mean
from .pad import Pad
from .pool2d import Pool2D
from .quantize import Quantize
from .reshape import Reshape
from .softmax import Softmax

#: Every op class, in the order error messages list them.
OPS = (Conv2D, DepthwiseConv2D, FullyConnected, Pool2D, Add, Mean, Pad, Concatenation, Reshape, Quantize, Lookup,
       Softmax)
#: TFLite operator name -> op class.
BY_TFLITE = {name: cls for cls in OPS for name in cls.TFLITE}

#: Images per chunk in run_model, bounding the im2col buffers to some tens of MB.
CHUNK = 256


def run_model(model, x, intermediates=False):
    """Run a batch (N, *model.input_shape) of the model's input type through the model.

    Returns the output (N, *model.output_shape), and with ``intermediates`` also a dict
    from layer name to that layer's output tensor for the whole batch.  Within a chunk a
    tensor is dropped once its last reader has run.
    """
    x = np.asarray(x)
    want = dtype_of(model.input_q)
    if x.dtype != want or x.shape[1:] != tuple(model.input_shape):
        raise ValueError(f"input must be {type_name(model.input_q)} of shape "
                         f"(N, {', '.join(map(str, model.input_shape))}), got {x.dtype} {x.shape}")
    lifetimes = model.lifetimes()
    parts, layers = [], {layer.name: [] for layer in model.layers}
    for start in range(0, max(len(x), 1), CHUNK):
        live = {model.input_name: x[start:start + CHUNK]}
        for i, layer in enumerate(model.layers):
            reads = model.inputs_of(layer)
            live[layer.name] = layer.run(*(live[src] for src in reads))
            if intermediates:
                layers[layer.name].append(live[layer.name])
            for src in reads:
                if lifetimes[src][1] == i:
                    live.pop(src, None)
        parts.append(live[model.output_name])
    final = np.concatenate(parts)
    if not intermediates:
        return final
    return final, {name: np.concatenate(p) for name, p in layers.items()}


__all__ = ["OPS", "BY_TFLITE", "run_model"] + [cls.__name__ for cls in OPS]
