PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

## Short MA-SAC training run on cooperative navigation: progress bar, runs/quickstart/{metrics.csv,learning_curve.png}
run: $(STAMP)
	$(BIN)/pgm-marl train --task cooperative_navigation --algo masac --seed 0 \
		--episodes 300 --eval-every 100 --eval-episodes 20 --out runs/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_envs.py

clean:
	rm -rf $(VENV) runs
