"""Integer layer kernels, bit-exact with TFLite's int8 reference kernels, batched over N.

Dot products run as float64 matrix products: every partial sum of int8 products in a
model the importer accepts is far below 2**53, so they are exact and use BLAS.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .model import Conv2D, FullyConnected, Lookup, Pool2D, Reshape, Softmax
from .nonlinear import lookup_table, softmax
from .quant import requantize

#: Images per chunk in run_model, bounding the im2col buffers to some tens of MB.
CHUNK = 256


def _windows(x, kernel, stride, pads, out, fill):
    """(N, OH, OW, KH, KW, C) view of every kernel window; padding takes the value ``fill``."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, pads, out
    n, h, w, c = x.shape
    big = np.full((n, max(ph + h, (oh - 1) * sh + kh), max(pw + w, (ow - 1) * sw + kw), c),
                  fill, dtype=x.dtype)
    big[:, ph:ph + h, pw:pw + w] = x
    win = sliding_window_view(big, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :oh, :ow]
    return win.transpose(0, 1, 2, 4, 5, 3)


def _requantize_layer(acc, layer):
    mult, shift = layer.multipliers_shifts
    lo, hi = layer.act_range
    return requantize(acc + layer.bias.astype(np.int64), mult, shift, layer.output_q.zero_point, lo, hi,
                      single_rounding=layer.single_rounding)


def conv2d(x, layer):
    """ConvPerChannel: sum (x - zp_in) * w over the window, padding contributing nothing."""
    oh, ow, oc = layer.output_shape
    zp = layer.input_q.zero_point
    win = _windows(x, layer.kernel, layer.stride, layer.pads, (oh, ow), np.int8(zp))
    cols = win.reshape(x.shape[0] * oh * ow, -1).astype(np.float64) - zp
    acc = cols @ layer.weights.reshape(oc, -1).T.astype(np.float64)
    y = _requantize_layer(np.rint(acc).astype(np.int64), layer)
    return y.reshape(x.shape[0], oh, ow, oc)


def fully_connected(x, layer):
    flat = x.reshape(x.shape[0], -1).astype(np.float64) - layer.input_q.zero_point
    acc = flat @ layer.weights.T.astype(np.float64)
    return _requantize_layer(np.rint(acc).astype(np.int64), layer)


def pool2d(x, layer):
    """MaxPool / AveragePool over the valid part of each window (padding is never counted)."""
    oh, ow, _ = layer.output_shape
    lo, hi = layer.act_range
    sentinel = np.iinfo(np.int16).min
    win = _windows(x.astype(np.int16), layer.filter, layer.stride, layer.pads, (oh, ow), sentinel)
    valid = win != sentinel
    if layer.kind == "MAX":
        y = win.max(axis=(3, 4))
    else:
        total = np.where(valid, win, 0).sum(axis=(3, 4), dtype=np.int64)
        count = valid.sum(axis=(3, 4), dtype=np.int64)
        # TFLite: (acc +- count/2) / count with C's truncating division.
        num = np.where(total > 0, total + count // 2, total - count // 2)
        y = np.sign(num) * (np.abs(num) // count)
    return np.clip(y, lo, hi).astype(np.int8)


def apply_layer(x, layer):
    """One layer on a batch (N, *layer.input_shape) of int8."""
    if isinstance(layer, Conv2D):
        return conv2d(x, layer)
    if isinstance(layer, FullyConnected):
        return fully_connected(x, layer)
    if isinstance(layer, Pool2D):
        return pool2d(x, layer)
    if isinstance(layer, Reshape):
        return x.reshape((x.shape[0],) + tuple(layer.output_shape))
    if isinstance(layer, Lookup):
        return lookup_table(layer.kind, layer.input_q)[x.astype(np.int16) + 128]
    if isinstance(layer, Softmax):
        return softmax(x, layer.input_q, layer.beta)
    raise TypeError(f"no golden kernel for {type(layer).__name__}")


def run_model(model, x, intermediates=False):
    """Run a batch of int8 inputs (N, *model.input_shape) through the model.

    Returns the int8 output (N, *model.output_shape), and with ``intermediates`` also a
    dict from layer name to that layer's int8 output for the whole batch.
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.shape[1:] != tuple(model.input_shape):
        raise ValueError(f"input must be int8 of shape (N, {', '.join(map(str, model.input_shape))}), "
                         f"got {x.dtype} {x.shape}")
    outs = {layer.name: [] for layer in model.layers}
    for start in range(0, max(len(x), 1), CHUNK):
        y = x[start:start + CHUNK]
        for layer in model.layers:
            y = apply_layer(y, layer)
            outs[layer.name].append(y)
    result = {name: np.concatenate(parts) for name, parts in outs.items()}
    final = result[model.layers[-1].name]
    return (final, result) if intermediates else final
