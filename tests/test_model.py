"""The graph model: DAG validation in one line, edges, lifetimes, quantised types."""

import numpy as np
import pytest

from golden.model import Model, ModelError, QParams
from golden.ops import Add, Conv2D, Lookup, Reshape, run_model

Q = QParams(0.05, -3)


def conv(name, shape=(4, 4, 2), inputs=(), oc=2, q=Q):
    return Conv2D(name, shape, inputs=inputs, weights=np.ones((oc, 3, 3, shape[2]), np.int8),
                  weight_scales=np.full(1, 0.01, np.float32), input_q=q, output_q=Q, padding="SAME")


def residual():
    """input -> a -> b, then add(input, b): the input stays live across two convolutions."""
    return Model("res", (4, 4, 2), Q, [conv("a"), conv("b"),
                                       Add("add", (4, 4, 2), inputs=("input", "b"), other_shape=(4, 4, 2),
                                           input_q=Q, other_q=Q, output_q=QParams(0.1, 0))])


def test_chain_is_the_default_wiring():
    m = Model("chain", (4, 4, 2), Q, [conv("a"), conv("b")])
    assert m.is_chain and m.inputs_of(m.layers[1]) == ("a",) and m.output_name == "b"
    assert m.lifetimes() == {"input": (-1, 0), "a": (0, 1), "b": (1, 2)}


def test_residual_graph_edges_and_lifetimes():
    m = residual()
    assert not m.is_chain
    assert m.inputs_of(m.layers[2]) == ("input", "b")
    assert m.lifetimes() == {"input": (-1, 2), "a": (0, 1), "b": (1, 2), "add": (2, 3)}
    x = np.random.default_rng(0).integers(-128, 128, (3, 4, 4, 2)).astype(np.int8)
    y, inter = run_model(m, x, intermediates=True)
    assert y.shape == (3, 4, 4, 2) and set(inter) == {"a", "b", "add"}


def test_an_earlier_output_can_be_the_model_output():
    m = Model("early", (4, 4, 2), Q, [conv("a"), conv("b")], output_name="a")
    assert not m.is_chain and m.output_shape == (4, 4, 2)
    assert m.lifetimes()["a"] == (0, 2) and m.lifetimes()["b"] == (1, 1)


@pytest.mark.parametrize("layers, kwargs, needle", [
    ([conv("a"), conv("a")], {}, "duplicate tensor name a"),
    ([conv("a", inputs=("later",))], {}, "reads tensor 'later', which no earlier op writes"),
    ([conv("a"), conv("b", shape=(4, 4, 3))], {}, "input shape (4, 4, 3) does not follow (4, 4, 2)"),
    ([conv("a"), conv("b", q=QParams(0.5, 0))], {}, "does not match"),
    ([conv("a", inputs=("input", "input"))], {}, "reads 2 tensors, a CONV_2D takes 1"),
    ([conv("a")], {"output_name": "nope"}, "output tensor 'nope'"),
    ([], {}, "no layers"),
])
def test_bad_graphs_are_refused_in_one_line(layers, kwargs, needle):
    with pytest.raises(ModelError) as e:
        Model("m", (4, 4, 2), Q, layers, **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_quantised_types():
    assert QParams(0.1, 200, "uint8").range == (0, 255)
    with pytest.raises(ModelError, match=r"int8 zero point must be in \[-128, 127\], got 200"):
        QParams(0.1, 200)
    with pytest.raises(ModelError, match="uint8 zero point"):
        QParams(0.1, -1, "uint8")
    with pytest.raises(ModelError, match="int16"):
        QParams(0.1, 0, "int16")


def test_views_and_tables_keep_any_wiring():
    m = Model("v", (4, 4, 2), Q, [Reshape("flat", (4, 4, 2), new_shape=(32,), q=Q),
                                  Lookup("t", (4, 4, 2), inputs=("input",), kind="TANH", input_q=Q)])
    assert m.output_name == "t" and m.lifetimes()["flat"] == (0, 0)
