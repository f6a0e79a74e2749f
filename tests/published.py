"""The published int8 models the tests run (../shared/models, beside the repository), or a
skip naming where they belong."""

from pathlib import Path

import pytest

from golden.tflite_io import load_tflite

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "models"
PUBLISHED_FILES = ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite",
                   "hello_world_int8.tflite", "micro_speech_quantized.tflite")


def published_path(name):
    path = PUBLISHED / name
    if not path.exists():
        pytest.skip(f"published model absent: {path} (see ../shared/models/README.md)")
    return path


def load_published(name):
    return load_tflite(published_path(name))
