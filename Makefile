# Two entry points for a fresh machine (see README.md):
#   make example   install, synthesise a bracket, merge it   -> example/
#   make test      install, run the test suite
#
# TORCH_SPEC chooses the PyTorch build; the default lets pip pick (a CUDA build
# on Linux). CI pins the CPU wheel: TORCH_SPEC=torch==2.13.0.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch
HDRMERGE_SHARED ?= $(abspath ../shared)
export HDRMERGE_SHARED
# Without network, the example takes the checkpoint from the shared folder if
# it is there; otherwise hdrmerge downloads it (or uses HDRMERGE_WEIGHTS_DIR).
ifneq ($(wildcard $(HDRMERGE_SHARED)/weights/SAFNet_S_siggraph17.pth),)
HDRMERGE_WEIGHTS_DIR ?= $(HDRMERGE_SHARED)/weights
export HDRMERGE_WEIGHTS_DIR
endif

BIN := $(VENV)/bin

.PHONY: install example test clean

$(BIN)/hdrmerge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/hdrmerge

example: install
	$(BIN)/python -m hdrmerge.demo example/bracket
	$(BIN)/hdrmerge fuse example/bracket/*.jpg -o example/merged.exr --overwrite
	@echo "example/merged.exr and example/merged.preview.jpg written"

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) example .pytest_cache
