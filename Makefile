# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean models

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	# torch first: pip takes this exact pair from the local disk on the dev and CI machines.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]' $(foreach p,$(wildcard plugins/*/pyproject.toml),-e $(dir $(p)))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nodeflow run graphs/pca_eigenimages.toml

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Retrain the shipped checkpoints from graphs/train_*.toml (1,500 steps each),
# keep each run's event log in docs/training-logs/, and copy the models into the package.
SHIPPED := denoise superres4 colorize edges2photo autoencoder
models: $(STAMP)
	mkdir -p docs/training-logs
	for name in $(SHIPPED); do \
		$(BIN)/nodeflow run graphs/train_$$name.toml --no-cache --events jsonl > docs/training-logs/$$name.jsonl || exit 1; \
	done
	cp graphs/out/models/*.safetensors nodeflow/checkpoints/

clean:
	rm -rf $(VENV)
