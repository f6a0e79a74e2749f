"""Compiler: the emulated dataflow equals golden, and models that do not fit fail in one line."""

import dataclasses

import numpy as np
import pytest

from boards import ICEBREAKER
from compiler.emulate import cycles, run_program
from compiler.program import CompileError, compile_model
from golden.config import AcceleratorConfig
from golden.generate import random_graph, random_inputs, random_model
from golden.model import Model, QParams
from golden.ops import Add, Concatenation, Conv2D, DepthwiseConv2D, Lookup, Pool2D, Quantize, Reshape, run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from model_builders import (broadcast_add_model, concat_model, depthwise_model, pad_mean_model, residual_model,
                            strided_conv)
from published import load_published


def emulate(program, x):
    """The model's outputs for inputs ``x`` as the emulated hardware and the host give them."""
    return program.finish_on_host(run_program(program, program.start_on_host(x)))


def check_against_golden(model, x, config=ICEBREAKER):
    program = compile_model(model, config)
    _, inter = run_model(model, x, intermediates=True)
    want = inter[program.output_name].reshape(len(x), -1)
    np.testing.assert_array_equal(run_program(program, program.start_on_host(x)).reshape(len(x), -1), want)
    return program


@pytest.mark.parametrize("seed", range(60))
def test_random_model_emulation_matches_golden(seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    check_against_golden(model, random_inputs(rng, model, 8), AcceleratorConfig(table_slots=4))


def test_shipped_model_fits_and_matches():
    model = load_tflite(DEFAULT_MODEL)
    x = np.random.default_rng(0).integers(-128, 128, (20, 28, 28, 1)).astype(np.int8)
    program = check_against_golden(model, x)
    assert [d.name for d in program.layers] == ["pool1", "pool2", "conv3", "dense1", "dense2"]
    assert [type(t).__name__ for t in program.host_tail] == ["Softmax"]
    assert sum(cycles(program).values()) <= 200_000
    assert program.memory_map["weights"]["bytes"] <= ICEBREAKER.weight_mem_bytes


def _conv_model(h=8, c=4, oc=6, k=3, weights=None):
    rng = np.random.default_rng(0)
    w = weights if weights is not None else rng.integers(-127, 128, (oc, k, k, c)).astype(np.int8)
    q = QParams(0.05, -3)
    conv = Conv2D(name="conv", input_shape=(h, h, c), weights=w, bias=np.zeros(len(w), np.int32),
                  weight_scales=np.full(len(w), 0.01, np.float32), input_q=q, output_q=QParams(0.5, 1))
    return Model(name="m", input_shape=(h, h, c), input_q=q, layers=(conv,))


@pytest.mark.parametrize("model,config,needle", [
    (_conv_model(), AcceleratorConfig(weight_mem_bytes=64), "weight memory needs 288 B, config has 64 B"),
    (_conv_model(h=30, c=8), AcceleratorConfig(), "activation bank needs"),
    (_conv_model(oc=40), AcceleratorConfig(param_depth=32), "parameter memory needs 40 channels"),
    (_conv_model(c=64, weights=np.full((2, 3, 3, 64), -128, np.int8)), AcceleratorConfig(acc_width=24),
     "exceeds the 24-bit accumulator"),
    (_conv_model(), AcceleratorConfig(rows=2, cols=8), "rows must be 4"),
    (load_tflite(DEFAULT_MODEL), AcceleratorConfig(desc_depth=4), "needs 5 layer descriptors, config has 4"),
])
def test_does_not_fit_gives_one_line(model, config, needle):
    with pytest.raises(CompileError) as e:
        compile_model(model, config)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unsupported_reshape_is_named():
    base = _conv_model()
    conv = base.layers[0]
    q = conv.output_q
    reshape = Reshape(name="odd_reshape", input_shape=conv.output_shape, new_shape=(3, 12, 6), q=q)
    conv2 = Conv2D(name="conv2", input_shape=(3, 12, 6), weights=np.ones((2, 1, 1, 6), np.int8),
                   bias=np.zeros(2, np.int32), weight_scales=np.full(2, 0.01, np.float32), input_q=q,
                   output_q=QParams(0.5, 0))
    model = Model(name="m", input_shape=base.input_shape, input_q=base.input_q, layers=(conv, reshape, conv2))
    with pytest.raises(CompileError, match="odd_reshape: RESHAPE from .* would move data in the banks"):
        compile_model(model, AcceleratorConfig())


@pytest.mark.parametrize("kwargs", [{}, {"mult": 1}, {"mult": 4, "stride": (2, 1)}, {"c": 1, "mult": 7},
                                    {"pool": True, "padding": "VALID"}])
def test_depthwise_runs_one_channel_per_group(kwargs):
    """Group g of a depthwise step reads input channel g and computes its multiplier's output
    channels (one input channel is an ordinary convolution); a 2x2 max pool fuses."""
    model = depthwise_model(**kwargs)
    program = check_against_golden(model, random_inputs(np.random.default_rng(2), model, 6))
    d = program.layers[0]
    c, mult = model.input_shape[2], kwargs.get("mult", 2)
    if c > 1:
        assert (d.depthwise, d.groups, d.group_channels, d.taps) == (True, c, mult, 9)
    else:
        assert (d.depthwise, d.group_channels, d.taps) == (False, ICEBREAKER.cols, 9)
    assert d.fused_pool == kwargs.get("pool", False)


def test_depthwise_multiplier_beyond_the_columns_is_refused():
    with pytest.raises(CompileError, match="dw: depth multiplier 5 exceeds the array's 4 columns"):
        compile_model(depthwise_model(mult=5), ICEBREAKER)


def test_views_at_the_input_and_the_tail_move_nothing():
    """micro_speech's shape: a RESHAPE of the flat input to an image, the host stores it in
    the new shape; a trailing view runs on the host."""
    conv = _conv_model(h=6, c=2).layers[0]
    q = conv.input_q
    head = Reshape(name="head", input_shape=(72,), new_shape=(6, 6, 2), q=q)
    tail = Reshape(name="tail", input_shape=conv.output_shape, new_shape=(4, 24), q=conv.output_q)
    model = Model(name="m", input_shape=(72,), input_q=q, layers=(head, conv, tail))
    program = check_against_golden(model, random_inputs(np.random.default_rng(3), model, 4))
    assert program.input_shape == (6, 6, 2) and [t.name for t in program.host_tail] == ["tail"]
    x = random_inputs(np.random.default_rng(4), model, 3)
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


@pytest.mark.parametrize("name, steps", [("kws_ref_model.tflite", 11), ("micro_speech_quantized.tflite", 2),
                                         ("hello_world_int8.tflite", 3), ("pretrainedResnet_quant.tflite", 14)])
def test_published_models_emulate_bit_exact(name, steps):
    """ResNet-8 needs more parameter entries than the UP5K's block RAM holds, so it is compiled
    with larger banks and parameter memory (the iCEBreaker's array otherwise; KWS's maps go
    to SPRAM)."""
    model = load_published(name)
    config = {"pretrainedResnet_quant.tflite": ICEBREAKER.with_(act_bank_bytes=16384, param_depth=2048)}.get(
        name, ICEBREAKER)
    program = check_against_golden(model, random_inputs(np.random.default_rng(6), model, 8), config)
    assert len(program.layers) == steps


def test_maps_go_to_spram_only_when_block_ram_is_too_small():
    """``act_memory="auto"``: the shipped model keeps its 2,560-byte block-RAM banks; KWS's
    5,172 B per bank go to the SPRAMs, addressed with the 13 bits 8 KiB needs, the weights
    above them in each SPRAM and a cache as deep as its deepest channel group."""
    mnist = compile_model(load_tflite(DEFAULT_MODEL), ICEBREAKER)
    assert (mnist.config.act_memory, mnist.config.act_bank_bytes) == ("bram", 2560)
    assert "spram" not in mnist.memory_map
    kws = compile_model(load_published("kws_ref_model.tflite"), ICEBREAKER)
    assert (kws.config.act_memory, kws.config.act_bank_bytes, kws.config.bank_addr_bits) == ("spram", 8192, 13)
    assert kws.config.with_(act_memory="auto", act_bank_bytes=2560, acc_width=25, requant_bits=32,
                            weight_stream="auto") == ICEBREAKER
    plan, need = kws.memory_map["spram"], kws.memory_map["activation_bank"]["bytes"]
    assert need == 5172 and plan["weight_base"] == 2586
    assert plan["weight_words_per_spram"] == -(-len(kws.weights) // 2)
    assert plan["cache_words"] == max(d.taps for d in kws.layers if d.kind == "CONV") == 125


def test_narrow_acc_sizes_the_accumulator_from_the_weights():
    """The widest sum a step can reach, sum |w| * 128 over a channel's taps, plus a sign bit:
    24 bits for the shipped model, 20 for KWS, never below 17; the requantiser's input, that
    sum plus the folded bias, left-shifted: 24 and 21 bits.  Without ``narrow_acc`` the
    configuration's widths stay."""
    mnist = compile_model(load_tflite(DEFAULT_MODEL), ICEBREAKER)
    kws = compile_model(load_published("kws_ref_model.tflite"), ICEBREAKER)
    assert (mnist.config.acc_width, kws.config.acc_width) == (24, 20)
    assert (mnist.config.requant_bits, kws.config.requant_bits) == (24, 21)
    tiny = _conv_model(weights=np.ones((2, 3, 3, 4), np.int8))       # 36 * 128: 14 bits
    narrowed = compile_model(tiny, AcceleratorConfig(narrow_acc=True)).config
    assert (narrowed.acc_width, narrowed.requant_bits) == (17, 17)
    assert compile_model(tiny, AcceleratorConfig()).config.acc_width == 25
    wide = compile_model(load_tflite(DEFAULT_MODEL), ICEBREAKER.with_(narrow_acc=False)).config
    assert (wide.acc_width, wide.requant_bits) == (25, 32)


def test_requantiser_input_beyond_its_bits_is_refused():
    """A bias that takes (acc + bias) << left past ``requant_bits`` is named in one line."""
    model = _conv_model()
    conv = model.layers[0]
    big = Model(name="m", input_shape=model.input_shape, input_q=model.input_q,
                layers=(dataclasses.replace(conv, bias=np.full(conv.out_channels, 1 << 20, np.int32)),))
    with pytest.raises(CompileError, match=r"^conv: requantiser input reaches \d+, beyond its 20 bits$"):
        compile_model(big, AcceleratorConfig(requant_bits=20))
    assert 20 < compile_model(big, AcceleratorConfig(requant_bits=23)).memory_map["requantiser"]["bits"] <= 23


@pytest.mark.parametrize("weight_bytes, word_groups", [(None, 1), (128, 4), (64, None)])
def test_depthwise_channels_share_weight_words_only_when_they_must(weight_bytes, word_groups):
    """Each depthwise channel gets weight words of its own (a pass drains only its column)
    while the weights fit: 6 channels x 9 taps are 216 B that way, 72 B four to a word; a
    memory of 128 B takes only the shared words, one of 64 B neither (refused in one line)."""
    model = depthwise_model(c=6, mult=1)
    config = AcceleratorConfig() if weight_bytes is None else AcceleratorConfig(weight_mem_bytes=weight_bytes)
    if word_groups is None:
        with pytest.raises(CompileError, match=r"^dw: weight memory needs 72 B, config has 64 B$"):
            compile_model(model, config)
        return
    program = compile_model(model, config)
    assert program.layers[0].word_groups == word_groups
    assert program.memory_map["weights"]["bytes"] == {1: 216, 4: 72}[word_groups]


def _two_depthwise_model():
    """A 9x7x8 depthwise 3x3 with a fused 2x2 max pool (12 passes a channel), then one on the
    4x3x8 result (4 passes)."""
    rng = np.random.default_rng(3)
    q, mid = QParams(0.05, -3), QParams(0.3, 4)

    def dw(name, shape, src, in_q):
        return DepthwiseConv2D(name=name, input_shape=shape, inputs=(src,),
                               weights=rng.integers(-128, 128, (1, 3, 3, 8)).astype(np.int8),
                               bias=rng.integers(-3000, 3000, 8).astype(np.int32),
                               weight_scales=rng.uniform(0.005, 0.02, 8).astype(np.float32), input_q=in_q,
                               output_q=mid, padding="SAME", activation="RELU")

    first = dw("dw1", (9, 7, 8), "input", q)
    pool = Pool2D(name="pool", input_shape=first.output_shape, inputs=("dw1",), kind="MAX", filter=(2, 2),
                  stride=(2, 2), padding="VALID", q=mid)
    second = dw("dw2", (4, 3, 8), "pool", mid)
    return Model(name="two_dw", input_shape=(9, 7, 8), input_q=q, layers=(first, pool, second))


@pytest.mark.parametrize("weight_bytes, word_groups", [(None, [1, 1]), (360, [1, 4]), (356, [4, 4])])
def test_depthwise_steps_with_most_passes_get_their_own_words_first(weight_bytes, word_groups):
    """Both steps' weights take 144 B four channels to a word and 216 B more each with words
    of their own: in 360 B only the step of 12 passes a channel gets them, in 356 B neither;
    the outputs equal golden's either way."""
    model = _two_depthwise_model()
    config = AcceleratorConfig() if weight_bytes is None else AcceleratorConfig(weight_mem_bytes=weight_bytes)
    program = compile_model(model, config)
    assert [d.word_groups for d in program.layers] == word_groups
    x = random_inputs(np.random.default_rng(4), model, 4)
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


def test_weights_streamed_from_spram_share_words_for_long_windows():
    """With the weights fetched from SPRAM group by group, KWS's depthwise 3x3 layers (39
    blocks a channel) get words of their own and its 25x5 average pool (one block, 125 taps a
    channel) shares them, four channels a word, so a fetch serves four channels."""
    kws = compile_model(load_published("kws_ref_model.tflite"), ICEBREAKER)
    assert kws.config.in_spram
    dw = [d for d in kws.layers if d.depthwise]
    assert [d.word_groups for d in dw] == [1, 1, 1, 1, 4]
    assert dw[-1].taps == 125


def test_spram_maps_that_do_not_fit_are_refused_in_one_line():
    spram = AcceleratorConfig(act_memory="spram", act_bank_bytes=32768)
    with pytest.raises(CompileError, match=r"^conv: activation bank needs \d+ B per bank .*config has 32768 B$"):
        compile_model(_conv_model(h=140, c=4, oc=4), spram)
    with pytest.raises(CompileError, match=r"^m: SPRAM needs 32900 B per SPRAM \(28980 B of maps, 3920 B of "
                                           r"weights\), it has 32768 B$"):
        compile_model(_conv_model(h=60, c=16, oc=20, k=7), spram)
    with pytest.raises(CompileError, match=r"^conv: weight cache needs 144 words of 4 weights, config has 100$"):
        compile_model(_conv_model(h=6, c=16, oc=4), spram.with_(weight_cache_words=100))


def test_graphs_the_hardware_cannot_run_are_refused_in_one_line():
    conv = _conv_model().layers[0]
    q = conv.output_q
    other = Lookup(name="t", input_shape=conv.output_shape, kind="TANH", input_q=q)
    # A row repeated down the map: the add engine repeats one pixel only.
    broadcast = Add(name="add", input_shape=conv.output_shape, inputs=("conv", "t"), other_shape=(1, 6, 6),
                    input_q=q, other_q=q, output_q=q)
    for model, needle in [
        (Model(name="m", input_shape=conv.input_shape, input_q=conv.input_q, layers=(conv, other),
               output_name="conv"),
         "the output is 'conv', not the last op's"),
        (Model(name="m", input_shape=conv.input_shape, input_q=conv.input_q,
               layers=(conv, Pool2D(name="t", input_shape=conv.output_shape, kind="MAX", filter=(6, 1),
                                    stride=(1, 1), q=q), broadcast)),
         "add: ADD of (6, 6, 6) and (1, 6, 6) (stored as (6, 6, 6) and (1, 6, 6)) broadcasts other than one value"),
    ]:
        with pytest.raises(CompileError) as e:
            compile_model(model, AcceleratorConfig())
        assert needle in str(e.value) and "\n" not in str(e.value)


def test_residual_graph_keeps_the_skipped_map_live():
    """The first conv's output is read again by the ADD after the second conv: the planner
    puts the second conv's output elsewhere, and the ADD's inputs are the two maps."""
    model = residual_model()
    program = check_against_golden(model, random_inputs(np.random.default_rng(5), model, 6))
    a, b, add, fc = program.layers
    assert b.in_base == a.out_base and b.out_base != a.out_base
    assert (add.kind, add.in_base, add.other_base) == ("ADD", a.out_base, b.out_base)
    assert add.out_base not in (a.out_base, b.out_base)


def test_int8_requantisation_runs_as_a_table():
    conv = _conv_model().layers[0]
    q2 = QParams(0.7, 9)
    requant = Quantize(name="rq", input_shape=conv.output_shape, input_q=conv.output_q, output_q=q2)
    model = Model(name="m", input_shape=conv.input_shape, input_q=conv.input_q, layers=(conv, requant))
    program = check_against_golden(model, random_inputs(np.random.default_rng(6), model, 6))
    assert len(program.layers) == 1 and program.layers[0].table == 0


@pytest.mark.parametrize("kwargs", [{}, {"value": -3}, {"keep_dims": False}])
def test_pad_folds_into_convolutions_and_mean_is_a_depthwise_sum(kwargs):
    """PAD and PADV2 of the zero point become the leading padding of the convolutions that
    read them (no step, no copy); a spatial MEAN becomes a depthwise convolution of ones
    whose requantisation is QuantizedMeanOrSum's: emulated equal to golden."""
    model = pad_mean_model(**kwargs)
    program = compile_model(model, AcceleratorConfig())
    assert [(d.kind, d.pads, d.depthwise) for d in program.layers] == [
        ("CONV", (2, 0), True), ("CONV", (2, 2), False), ("CONV", (0, 0), True)]
    x = random_inputs(np.random.default_rng(4), model, 5)
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


@pytest.mark.parametrize("kwargs, message", [
    ({"value": 5}, r"pad1: PADV2 maps only onto the padding .* pads \(\(2, 1\), \(0, 3\), \(0, 0\)\) with 5 "
                   r"for DEPTHWISE_CONV_2D"),
    ({"pad_channels": True}, r"pad1: PAD maps only onto the padding .* \(0, 1\)\) with -3")])
def test_pads_that_are_not_convolution_padding_are_refused(kwargs, message):
    with pytest.raises(CompileError, match=message):
        compile_model(pad_mean_model(**kwargs), AcceleratorConfig())


@pytest.mark.parametrize("pooled", [True, False])
def test_concatenation_is_written_in_place(pooled):
    """The steps feeding a channel CONCATENATION write their slices of it (a pixel stride of
    the whole map, no copy step), a conv with a fused pool and a pool engine step among them:
    emulated equal to golden."""
    model = concat_model(pooled=pooled)
    program = compile_model(model, AcceleratorConfig())
    *slices, reader = program.layers[-3:]
    assert [d.out_stride for d in slices] == [8, 8] and slices[1].out_base == slices[0].out_base + 3
    assert reader.in_shape[2] == 8 and reader.in_base == slices[0].out_base
    x = random_inputs(np.random.default_rng(6), model, 5)
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


def _with_concat(model, inputs, shapes):
    """``model`` (concat_model(pooled=False)) with its CONCATENATION replaced by one of ``inputs``."""
    *body, cat, reader = model.layers
    new = Concatenation(name="cat", input_shape=shapes[0], inputs=inputs, others=tuple(shapes[1:]), axis=-1, q=cat.q)
    c = new.output_shape[2]
    conv = Conv2D(name="d", input_shape=new.output_shape, inputs=("cat",), padding="SAME",
                  weights=np.ones((2, 1, 1, c), np.int8), weight_scales=np.array([0.01], np.float32),
                  input_q=cat.q, output_q=QParams(0.1, 0))
    return Model(name="cat", input_shape=model.input_shape, input_q=model.input_q, layers=(*body, new, conv))


def test_concatenations_that_would_move_data_are_refused():
    model = concat_model(pooled=False)
    last = Model(name="last", input_shape=model.input_shape, input_q=model.input_q, layers=model.layers[:-1])
    with pytest.raises(CompileError, match=r"cat: CONCATENATION of the hardware's output"):
        compile_model(last, AcceleratorConfig())
    with pytest.raises(CompileError, match=r"cat: CONCATENATION of an input twice"):
        compile_model(_with_concat(model, ("b", "b"), [(6, 7, 3)] * 2), AcceleratorConfig())
    # "a" is read by the average pool "c" too, so it cannot live inside the concatenation.
    with pytest.raises(CompileError, match=r"cat: CONCATENATION of input 'a': only outputs of convolution"):
        compile_model(_with_concat(model, ("a", "c"), [(6, 7, 5), (6, 7, 5)]), AcceleratorConfig())


@pytest.mark.parametrize("io", [("uint8", "uint8"), ("float32", "float32"), ("uint8", "float32")])
def test_uint8_and_float_edges_run_on_the_host(io):
    """The input's QUANTIZE to int8 and the output's QUANTIZE/DEQUANTIZE run on the host
    (golden), the int8 body on the hardware: random graphs with those edges, emulated, equal
    golden."""
    checked = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        model = random_graph(rng, io=io)
        try:
            program = compile_model(model, AcceleratorConfig(act_bank_bytes=8192, param_depth=4096, table_slots=8))
        except CompileError as e:
            assert "\n" not in str(e)
            continue
        assert [layer.op for layer in program.host_head] == ["QUANTIZE"]
        assert program.host_tail[-1].op == ("QUANTIZE" if io[1] == "uint8" else "DEQUANTIZE")
        x = random_inputs(rng, model, 4)
        got = emulate(program, x)
        np.testing.assert_array_equal(got, run_model(model, x))
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("kwargs", [{}, {"small_first": True}, {"scalar": True}, {"scalar": True, "small_first": True}])
def test_add_of_a_vector_or_value_per_pixel(kwargs):
    """ADD where one input is one value or one vector of channels for every pixel (either
    operand): the broadcast input becomes the second, stored as one pixel; emulated equal to
    golden."""
    model = broadcast_add_model(**kwargs)
    program = compile_model(model, AcceleratorConfig())
    [add] = [d for d in program.layers if d.kind == "ADD"]
    assert add.other_shape == (1, 1, 1 if kwargs.get("scalar") else 4) and add.in_shape == (5, 6, 4)
    x = random_inputs(np.random.default_rng(7), model, 5)
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


S2D = [((49, 10, 1), (10, 4), "SAME"), ((9, 7, 3), (3, 3), "SAME"), ((8, 8, 2), (3, 3), "VALID"),
       ((7, 6, 2), (2, 2), "VALID"), ((6, 9, 1), (5, 2), "SAME")]


@pytest.mark.parametrize("shape, k, padding", S2D)
def test_stride_two_first_convolution_reads_its_input_space_to_depth(shape, k, padding):
    """A stride-2 convolution that alone reads the model input runs as a stride-1 VALID one
    with half the kernel over four times the channels, on the input the host stores padded
    and space-to-depth, so it fills 2x2 pixel blocks instead of one pixel a pass; the outputs
    equal golden's, the int8 extremes included."""
    conv = strided_conv("conv", shape, k, padding, sum(shape))
    model = Model(name="s2d", input_shape=shape, input_q=conv.input_q, layers=(conv,))
    program = compile_model(model, AcceleratorConfig())
    d, = program.layers
    layout = program.input_layout
    assert layout is not None and program.input_shape == layout.shape and layout.shape[2] == 4 * shape[2]
    assert (d.stride, d.block, d.pads, d.kernel) == ((1, 1), 2, (0, 0), tuple(-(-v // 2) for v in k))
    x = np.concatenate([np.full((1, *shape), -128, np.int8), np.full((1, *shape), 127, np.int8),
                        random_inputs(np.random.default_rng(1), model, 6)])
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


def test_space_to_depth_only_when_the_convolution_alone_reads_the_input():
    """Two stride-2 convolutions of the input (added): the input is stored as it is."""
    a, b = strided_conv("a", (8, 8, 2), (3, 3), "SAME", 1), strided_conv("b", (8, 8, 2), (3, 3), "SAME", 2)
    add = Add(name="add", input_shape=a.output_shape, inputs=("a", "b"), other_shape=b.output_shape,
              input_q=a.output_q, other_q=b.output_q, output_q=QParams(0.5, 0))
    model = Model(name="two", input_shape=(8, 8, 2), input_q=a.input_q, layers=(a, b, add))
    program = compile_model(model, AcceleratorConfig())
    assert program.input_layout is None and program.layers[0].stride == (2, 2)
    x = random_inputs(np.random.default_rng(2), model, 4)
    np.testing.assert_array_equal(emulate(program, x), run_model(model, x))


def test_program_id_names_what_the_device_runs():
    """The id the flash header and INFO carry: the same for the same program simulated with
    generic primitives, different for another configuration, other weights or parameters."""
    model = depthwise_model()
    a = compile_model(model, ICEBREAKER)
    assert a.program_id == compile_model(model, ICEBREAKER.with_(target="generic")).program_id
    assert a.program_id == compile_model(model, ICEBREAKER).program_id
    others = [compile_model(model, ICEBREAKER.with_(requant_digit_bits=4)),
              dataclasses.replace(a, weights=a.weights ^ 1),
              dataclasses.replace(a, params=dataclasses.replace(a.params, bias=a.params.bias + 1)),
              dataclasses.replace(a, input_shape=(7, 9, 5))]
    ids = {p.program_id for p in others} | {a.program_id}
    assert len(ids) == 5 and all(0 <= i < 1 << 32 for i in ids)
