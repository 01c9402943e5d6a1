# Two entry points for a fresh machine (see README.md):
#   make example   install, synthesise a bracket, merge it   -> example/
#   make test      install, run the test suite
#
# PyTorch build: TORCH_SPEC (a requirement) installed with TORCH_INDEX (pip
# options). Unless TORCH_SPEC is given, the machine decides: with an NVIDIA
# driver (nvidia-smi lists a GPU, or /proc/driver/nvidia exists) pip's default
# build from PyPI (CUDA on Linux, ~5 GB); without one the CPU wheel from the
# PyTorch CPU index (~200 MB); should that index not answer (a firewall, a
# machine that reaches only PyPI), TORCH_FALLBACK_SPEC through pip's own
# configuration, which finds a local CPU wheel where one is configured. CI
# pins the CPU wheel it has offline: TORCH_SPEC=torch==2.13.0. The spec in
# use is kept in $(VENV)/.torch-spec; a different spec reinstalls PyTorch.
PYTHON      ?= python3
VENV        ?= .venv
NVIDIA_SMI  ?= nvidia-smi
NVIDIA_PROC ?= /proc/driver/nvidia
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_FALLBACK_SPEC ?= torch==2.13.0
# Whether the CPU index answers (5 s at most; an unknown host fails at once).
TORCH_CPU_PROBE ?= $(PYTHON) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' $(TORCH_CPU_INDEX)/
ifeq ($(origin TORCH_SPEC),undefined)
ifneq ($(shell ($(NVIDIA_SMI) -L || test -d $(NVIDIA_PROC)) >/dev/null 2>&1 && echo y),)
TORCH_SPEC  := torch
TORCH_INDEX ?=
TORCH_BUILD := CUDA build from PyPI (NVIDIA driver found)
else ifneq ($(shell $(TORCH_CPU_PROBE) >/dev/null 2>&1 && echo y),)
TORCH_SPEC  := torch
TORCH_INDEX ?= --index-url $(TORCH_CPU_INDEX)
TORCH_BUILD := CPU build from the PyTorch CPU index (no NVIDIA driver found)
else
TORCH_SPEC  := $(TORCH_FALLBACK_SPEC)
TORCH_INDEX ?=
TORCH_BUILD := no NVIDIA driver found and the PyTorch CPU index does not answer, so pip's own sources
endif
else
TORCH_INDEX ?=
TORCH_BUILD := as TORCH_SPEC says
endif
HDRMERGE_SHARED ?= $(abspath ../shared)
export HDRMERGE_SHARED
# Without network, the example takes the checkpoint from the shared folder if
# it is there; otherwise hdrmerge downloads it (or uses HDRMERGE_WEIGHTS_DIR).
ifneq ($(wildcard $(HDRMERGE_SHARED)/weights/SAFNet_S_siggraph17.pth),)
HDRMERGE_WEIGHTS_DIR ?= $(HDRMERGE_SHARED)/weights
export HDRMERGE_WEIGHTS_DIR
endif

BIN := $(VENV)/bin
TORCH_STAMP := $(VENV)/.torch-spec
TORCH_WANT  := $(strip $(TORCH_SPEC) $(TORCH_INDEX))

.PHONY: install example test clean

# The stamp is remade whenever it holds another spec: PyTorch is uninstalled
# (a CPU and a CUDA build may share a version number) and installed anew. A
# venv from before the stamp keeps a torch that already meets the spec.
ifneq ($(shell cat $(TORCH_STAMP) 2>/dev/null),$(TORCH_WANT))
.PHONY: $(TORCH_STAMP)
endif

$(TORCH_STAMP):
	@echo "PyTorch: $(TORCH_BUILD): $(TORCH_WANT)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	test ! -f $@ || $(BIN)/python -m pip uninstall -q -y torch
	$(BIN)/python -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	echo '$(TORCH_WANT)' > $@

$(BIN)/hdrmerge: pyproject.toml $(TORCH_STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/hdrmerge

example: install
	@echo "PyTorch: $$(cat $(TORCH_STAMP))"
	$(BIN)/python -m hdrmerge.demo example/bracket
	$(BIN)/hdrmerge fuse example/bracket/*.jpg -o example/merged.exr --overwrite
	@echo "example/merged.exr and example/merged.exr.preview.jpg written"

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) example .pytest_cache
