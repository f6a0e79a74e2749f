import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run slow benchmarks and synthesis tests (markers slow, synth)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="opt-in: slow benchmark or synthesis run; use --runslow (make bench)")
    for item in items:
        if "slow" in item.keywords or "synth" in item.keywords:
            item.add_marker(skip)
