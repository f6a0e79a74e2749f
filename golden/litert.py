"""LiteRT as the oracle every golden and hardware result is compared against.

Only this module imports ai_edge_litert, so the rest of golden/ works without it.  It uses
the reference kernels (BUILTIN_REF): the optimised ones are not bit-exact with them.
"""

import os
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from .model import dtype_of, type_name
from .tflite_io import parse_tflite


def run_litert(model, x, intermediates=False):
    """Run every row of ``x`` (shape (N, *input_shape), the model's input type) through LiteRT,
    one batch-1 invoke each.

    ``model`` is .tflite bytes or a path.  Returns the outputs (N, *output_shape) and, with
    ``intermediates``, also a dict layer name -> array (N, *layer.output_shape) holding each
    layer's output, keyed like the layers :func:`parse_tflite` returns.
    """
    if isinstance(model, (str, os.PathLike)):
        source, data = str(model), Path(model).read_bytes()
    else:
        source, data = "<bytes>", bytes(model)
    parsed, tensor_indices = parse_tflite(data, source)
    x = np.asarray(x)
    if x.dtype != dtype_of(parsed.input_q) or x.shape[1:] != parsed.input_shape:
        raise ValueError(f"{source}: input must be {type_name(parsed.input_q)} of shape "
                         f"(N, {', '.join(map(str, parsed.input_shape))}), got {x.dtype} {x.shape}")

    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    y = np.empty((len(x), *parsed.output_shape), dtype_of(parsed.output_q))
    layers = {layer.name: np.empty((len(x), *layer.output_shape), dtype_of(layer.output_q))
              for layer in parsed.layers if intermediates}
    for n, row in enumerate(x):
        interpreter.set_tensor(input_index, row[None])
        interpreter.invoke()
        y[n] = interpreter.get_tensor(output_index).reshape(parsed.output_shape)
        if intermediates:
            for layer, index in zip(parsed.layers, tensor_indices):
                layers[layer.name][n] = interpreter.get_tensor(index).reshape(layer.output_shape)
    return (y, layers) if intermediates else y
