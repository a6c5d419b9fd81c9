# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean models FORCE

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	# torch first: pip takes this exact pair from the local disk on the dev and CI machines.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test,ray]' $(foreach p,$(wildcard plugins/*/pyproject.toml),-e $(dir $(p)))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nodeflow run graphs/showcase.toml

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Retrain the shipped checkpoints from graphs/train_*.toml, keep each run's event log
# (gzipped JSON lines, one event per training step) in docs/training-logs/, and copy the
# models into the package. Run again after an interruption, a training resumes from its
# last checkpoint and its log continues the interrupted one. Each training runs well on
# one core, so on a machine with N cores `OMP_NUM_THREADS=1 make -j N models` trains N at
# a time (docs/models.md: times).
SHIPPED := denoise superres4 colorize edges2photo autoencoder gan
models: $(SHIPPED:%=docs/training-logs/%.jsonl.gz)
	mkdir -p nodeflow/checkpoints
	cp graphs/out/models/*.safetensors nodeflow/checkpoints/

docs/training-logs/%.jsonl.gz: graphs/train_%.toml $(STAMP) FORCE
	mkdir -p docs/training-logs
	$(BIN)/nodeflow run $< --no-cache --events jsonl >> $(basename $@)
	gzip -f $(basename $@)

FORCE:

clean:
	rm -rf $(VENV)
