# seem_ros: `make demo` and `make test` set up the environment (tools/setup.sh) when needed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
SETUP_INPUTS := tools/setup.sh requirements.txt requirements-torch.txt requirements-nodeps.txt \
	constraints.txt package.xml CMakeLists.txt setup.py seem_ros/__init__.py \
	$(wildcard msg/*.msg srv/*.srv)
# The main job: generate the demo scene bag, replay it through the node's pipeline with the shipped
# model and scripted prompts, write demo_out/ (output bag, overlay video and PNGs) and a summary.
DEMO ?= $(PY) -m seem_ros.cli.main demo
PYTEST_ARGS ?=
# Test processes (pytest-xdist; whole files per process, so module fixtures are made once).
PYTEST_WORKERS ?= 2

# A sourced ROS installation would shadow the venv's ROS packages.
unexport PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH

.PHONY: setup demo lint test constraints clean
setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	VENV=$(VENV) bash tools/setup.sh

demo: $(STAMP)
	$(DEMO)

# Lint (ruff) and type checks (mypy on seem_ros/), with their settings in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest test -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

# After changing a pin in requirements*.txt: set up without the old constraints, then freeze the
# resulting environment into constraints.txt.
constraints:
	CONSTRAINTS= VENV=$(VENV) bash tools/setup.sh
	$(PY) tools/freeze_constraints.py > constraints.txt

clean:
	rm -rf $(VENV)
