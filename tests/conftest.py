import pytest

from golden.mnist import DEFAULT_DIR, load_test_set


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


@pytest.fixture(scope="session")
def mnist_test_set():
    """The official 10k MNIST test set (images, labels), or a skip naming where it belongs."""
    try:
        return load_test_set(DEFAULT_DIR)
    except FileNotFoundError as e:
        pytest.skip(f"MNIST test data absent ({e}); it is expected at ../shared/data/mnist")
