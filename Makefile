# The two commands a fresh machine needs: `make run` (set up + main job), `make test`
# (set up + the default test suite). `make bench` runs the opt-in slow benchmarks.
PY ?= python3
MNIST ?= ../shared/data/mnist

.PHONY: setup run test bench
setup:
	PYTHON=$(PY) bash scripts/setup.sh

run: setup
	$(PY) -m hdl.build --board icebreaker

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m pytest --runslow -m "slow or synth"
