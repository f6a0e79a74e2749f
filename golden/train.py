"""Train the reference MNIST CNN with NumPy alone and quantise it to a full-integer int8 model.

The project's benchmark model is the Keras MNIST CNN (three 3x3 VALID ReLU convolutions,
two 2x2 max pools, Dense(64, relu), Dense(10), softmax).  TensorFlow is heavy and not a
dependency, so this module reproduces both halves of the usual recipe: Adam training in
float32 (im2col + matmul, NHWC throughout so Flatten matches Keras' (H, W, C) order), then
post-training quantisation with the formulas TFLite's converter uses for full-integer int8.

    python -m golden.train [--data CSV] [--epochs N] [--seed S] [--out FILE.tflite]
"""

import sys
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .files import OneLineParser
from .mnist import DEFAULT_DIR as DATA_DIR
from .mnist import load_test_set as load_mnist_idx
from .mnist import load_train_csv as load_mnist_csv
from .mnist import quantize_images
from .model import Model, QParams
from .ops import Conv2D, FullyConnected, Pool2D, Reshape, Softmax
from .quant import tflite_round

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "mnist_cnn_int8.tflite"

INPUT_Q = QParams(1 / 255, -128)
CONVS = (("conv1", 1, 32), ("conv2", 32, 64), ("conv3", 64, 64))
DENSES = (("dense1", 3 * 3 * 64, 64), ("dense2", 64, 10))
KERNEL = 3


def to_float(images):
    """uint8 (N, 28, 28) pixels -> float32 NHWC in [0, 1], the model's real-valued input."""
    return (np.asarray(images, np.float32) / 255.0)[..., None]


def to_int8(images):
    """uint8 pixels -> the int8 input tensor; with scale 1/255, zero point -128 that is p - 128."""
    return quantize_images(np.asarray(images), INPUT_Q)


def init_params(rng):
    """He-uniform weights for the ReLU layers, Glorot-uniform for the logits, zero biases.

    Conv weights are HWIO so that an im2col row in (kh, kw, c) order multiplies
    ``w.reshape(-1, out)`` directly; dense weights are (in, out).
    """
    params = {}
    for name, cin, cout in CONVS:
        fan_in = KERNEL * KERNEL * cin
        lim = np.sqrt(6.0 / fan_in)
        params[name] = [rng.uniform(-lim, lim, (KERNEL, KERNEL, cin, cout)).astype(np.float32),
                        np.zeros(cout, np.float32)]
    for name, fin, fout in DENSES:
        lim = np.sqrt(6.0 / fin) if name == "dense1" else np.sqrt(6.0 / (fin + fout))
        params[name] = [rng.uniform(-lim, lim, (fin, fout)).astype(np.float32), np.zeros(fout, np.float32)]
    return params


def _im2col(x):
    """(N, H, W, C) -> (N, OH, OW, 9C) VALID 3x3 patches in (kh, kw, c) order."""
    n, h, w, c = x.shape
    win = sliding_window_view(x, (KERNEL, KERNEL), axis=(1, 2))
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n, h - KERNEL + 1, w - KERNEL + 1, KERNEL * KERNEL * c)


def _col2im(dcols, shape):
    """Adjoint of :func:`_im2col`: scatter-add patch gradients back onto the input."""
    n, h, w, c = shape
    oh, ow = h - KERNEL + 1, w - KERNEL + 1
    d = dcols.reshape(n, oh, ow, KERNEL, KERNEL, c)
    dx = np.zeros(shape, np.float32)
    for i in range(KERNEL):
        for j in range(KERNEL):
            dx[:, i:i + oh, j:j + ow] += d[:, :, :, i, j]
    return dx


def _maxpool(a):
    """2x2 stride-2 VALID max pool (odd edges dropped, as TFLite does); keeps the argmax."""
    n, h, w, c = a.shape
    h2, w2 = h // 2, w // 2
    blocks = a[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h2, w2, c, 4)
    arg = blocks.argmax(-1)[..., None]
    return np.take_along_axis(blocks, arg, -1)[..., 0], arg


def _maxpool_backward(dout, arg, shape):
    """Each output gradient goes to the one input that won (the first on ties), as TF does."""
    n, h2, w2, c = dout.shape
    dblocks = np.zeros((n, h2, w2, c, 4), np.float32)
    np.put_along_axis(dblocks, arg, dout[..., None], -1)
    dx = np.zeros(shape, np.float32)
    dx[:, :2 * h2, :2 * w2] = dblocks.reshape(n, h2, w2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(
        n, 2 * h2, 2 * w2, c)
    return dx


def forward(params, x):
    """Float forward pass on NHWC input.

    Returns ``(outs, cache)``: ``outs`` maps every layer name of the int8 model to its
    output (what calibration needs; ``dense2`` holds the logits), ``cache`` holds what
    :func:`loss_and_grads` needs for the backward pass.
    """
    outs, cache = {}, {}
    h = x
    for name, _, cout in CONVS:
        w, b = params[name]
        cols = _im2col(h)
        a = np.maximum(cols @ w.reshape(-1, cout) + b, 0)
        cache[name] = (h.shape, cols, a)
        outs[name] = h = a
        if name != "conv3":
            pool = "pool" + name[-1]
            h, arg = _maxpool(a)
            cache[pool] = (a.shape, arg)
            outs[pool] = h
    outs["flatten"] = h = h.reshape(len(h), -1)
    for name, _, _ in DENSES:
        w, b = params[name]
        cache[name] = h
        h = h @ w + b
        if name == "dense1":
            h = np.maximum(h, 0)
        outs[name] = h
    return outs, cache


def loss_and_grads(params, x, labels):
    """Mean softmax cross-entropy, its gradients (same structure as params) and the logits."""
    outs, cache = forward(params, x)
    logits = outs["dense2"]
    n = len(labels)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -float(logp[np.arange(n), labels].mean())
    d = np.exp(logp)
    d[np.arange(n), labels] -= 1
    d /= n
    grads = {}
    for name, _, _ in reversed(DENSES):
        if name == "dense1":
            d = d * (outs[name] > 0)
        h = cache[name]
        grads[name] = [h.T @ d, d.sum(0)]
        d = d @ params[name][0].T
    d = d.reshape(outs["conv3"].shape)
    for name, cin, cout in reversed(CONVS):
        in_shape, cols, a = cache[name]
        d = (d * (a > 0)).reshape(-1, cout)
        grads[name] = [(cols.reshape(-1, cols.shape[-1]).T @ d).reshape(KERNEL, KERNEL, cin, cout), d.sum(0)]
        if name != "conv1":
            d = _col2im(d @ params[name][0].reshape(-1, cout).T, in_shape)
            pool_in_shape, arg = cache["pool" + str(int(name[-1]) - 1)]
            d = _maxpool_backward(d, arg, pool_in_shape)
    return loss, grads, logits


def _shift(images, rng, max_shift):
    """Random translation by up to ``max_shift`` pixels per axis, zero-filled, one per image."""
    n, h, w = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    win = sliding_window_view(padded, (h, w), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * max_shift + 1, (2, n))
    return win[np.arange(n), dy, dx]


def train(images, labels, epochs=20, seed=0, log=print, lr=1e-3, batch_size=64, max_shift=2):
    """Adam on minibatches of shifted images; returns params {layer: [w, b]} (float32).

    The shifts make up for the 5k-image training set (TF reaches 97.7 % on t10k without
    them); the learning rate decays by cosine to 10 % so the last epochs settle.
    """
    rng = np.random.default_rng(seed)
    params = init_params(rng)
    b1, b2, eps = 0.9, 0.999, 1e-7
    m = {name: [np.zeros_like(p) for p in ps] for name, ps in params.items()}
    v = {name: [np.zeros_like(p) for p in ps] for name, ps in params.items()}
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    steps_per_epoch = -(-n // batch_size)
    step = 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        total_loss = correct = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            batch = to_float(_shift(images[idx], rng, max_shift))
            loss, grads, logits = loss_and_grads(params, batch, labels[idx])
            total_loss += loss * len(idx)
            correct += int((logits.argmax(1) == labels[idx]).sum())
            step += 1
            rate = lr * (0.1 + 0.45 * (1 + np.cos(np.pi * step / (epochs * steps_per_epoch))))
            corr = np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
            for name, ps in params.items():
                for p, g, mm, vv in zip(ps, grads[name], m[name], v[name]):
                    mm += (1 - b1) * (g - mm)
                    vv += (1 - b2) * (g * g - vv)
                    p -= (rate * corr) * mm / (np.sqrt(vv) + eps)
        log(f"epoch {epoch + 1}/{epochs}: loss {total_loss / n:.4f}  train acc {correct / n:.4f}  "
            f"{time.perf_counter() - t0:.1f} s")
    return params


def predict(params, images, batch_size=500):
    """Float logits for uint8 images, in batches to bound the im2col memory."""
    return np.concatenate([forward(params, to_float(images[i:i + batch_size]))[0]["dense2"]
                           for i in range(0, len(images), batch_size)])


def float_accuracy(params, images, labels):
    return float((predict(params, images).argmax(1) == labels).mean())


def activation_qparams(lo, hi):
    """TFLite's asymmetric int8 params for a calibrated range, widened to include 0.

    scale = (max - min) / 255 and the zero point nudged into [-128, 127], so a
    post-ReLU tensor (min 0) gets zero point -128.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0
    zp = int(np.clip(tflite_round(-128 - lo / scale), -128, 127))
    return QParams(scale, zp)


def _symmetric(w, axis):
    """Symmetric int8 weights in [-127, 127], one scale per slice along ``axis`` (None: per tensor).

    An all-zero slice gets scale 1: its values quantise to 0 either way, and Model needs
    positive scales.
    """
    reduce = None if axis is None else tuple(i for i in range(w.ndim) if i != axis)
    peak = np.abs(w).max(axis=reduce, keepdims=True).astype(np.float64)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    q = np.clip(tflite_round(w / scale), -127, 127).astype(np.int8)
    return q, np.float32(scale.reshape(-1))


def _bias(b, input_q, weight_scales):
    """int32 bias at scale input_scale * weight_scale, from the scales as stored (float32)."""
    scale = np.float64(input_q.scale) * np.asarray(weight_scales, np.float64)
    return tflite_round(np.asarray(b, np.float64) / scale).astype(np.int32)


def quantize(params, calib_images, name="mnist_cnn_int8"):
    """Post-training full-integer quantisation of the float params into a :class:`Model`.

    Activation ranges are the min/max of each layer output over ``calib_images`` (uint8);
    pooling and flatten reuse their input's params as TFLite requires.  Conv weights are
    per-channel, dense weights per-tensor, both symmetric.
    """
    outs, _ = forward(params, to_float(calib_images))
    layers = []
    shape, q = (28, 28, 1), INPUT_Q
    for lname, _, _ in CONVS:
        w, b = params[lname]
        wq, ws = _symmetric(w.transpose(3, 0, 1, 2), axis=0)
        out = outs[lname]
        oq = activation_qparams(out.min(), out.max())
        layers.append(Conv2D(lname, shape, weights=wq, bias=_bias(b, q, ws), weight_scales=ws,
                             input_q=q, output_q=oq, activation="RELU"))
        shape, q = layers[-1].output_shape, oq
        if lname != "conv3":
            layers.append(Pool2D("pool" + lname[-1], shape, kind="MAX", q=q))
            shape = layers[-1].output_shape
    layers.append(Reshape("flatten", shape, new_shape=(int(np.prod(shape)),), q=q))
    shape = layers[-1].output_shape
    for lname, _, _ in DENSES:
        w, b = params[lname]
        wq, ws = _symmetric(w.T, axis=None)
        out = outs[lname]
        oq = activation_qparams(out.min(), out.max())
        layers.append(FullyConnected(lname, shape, weights=wq, bias=_bias(b, q, ws), weight_scales=ws,
                                     input_q=q, output_q=oq, activation="RELU" if lname == "dense1" else "NONE"))
        shape, q = layers[-1].output_shape, oq
    layers.append(Softmax("softmax", shape, input_q=q))
    return Model(name, (28, 28, 1), INPUT_Q, layers)


def int8_accuracy(model, images, labels, batch_size=1000):
    """Accuracy of the integer model via the golden integer kernels."""
    from .ops import run_model
    preds = [np.asarray(run_model(model, to_int8(images[i:i + batch_size]))).reshape(-1, 10).argmax(1)
             for i in range(0, len(images), batch_size)]
    return float((np.concatenate(preds) == labels).mean())


def main(argv=None):
    ap = OneLineParser(prog="python -m golden.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA_DIR / "mnist_5k.csv.gz", help="training CSV")
    ap.add_argument("--test-dir", type=Path, default=DATA_DIR, help="folder with the t10k IDX files")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=int, default=500, help="training images used for calibration")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    images, labels = load_mnist_csv(args.data)
    print(f"training on {len(images)} images from {args.data}")
    t0 = time.perf_counter()
    params = train(images, labels, epochs=args.epochs, seed=args.seed)
    print(f"training took {time.perf_counter() - t0:.1f} s")

    calib = np.random.default_rng(args.seed).choice(len(images), min(args.calib, len(images)), replace=False)
    model = quantize(params, images[calib])
    print(model.summary())

    if (args.test_dir / "t10k-images-idx3-ubyte.gz").exists():
        test_images, test_labels = load_mnist_idx(args.test_dir)
        print(f"float accuracy on t10k: {float_accuracy(params, test_images, test_labels):.4f}")
        print(f"int8 accuracy on t10k:  {int8_accuracy(model, test_images, test_labels):.4f}")
    else:
        print(f"no test set at {args.test_dir}; skipping evaluation")

    from .tflite_io import save_tflite
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_tflite(model, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
