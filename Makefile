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

RUN_OUT ?= runs/quickstart/$(shell date +%Y%m%d-%H%M%S)

## Short MA-SAC training run on cooperative navigation (a few minutes on 2 CPU cores): progress bar,
## $(RUN_OUT)/{metrics.csv,learning_curve.png}. The paper-scale runs are in benchmarks/paper_runs.sh.
run: $(STAMP)
	$(BIN)/pgm-marl train --task cooperative_navigation --algo masac --seed 0 \
		--episodes 1500 --learning-starts 2500 --eval-every 100 --eval-episodes 20 --out $(RUN_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_envs.py

clean:
	rm -rf $(VENV)  # runs/ is kept: results are never deleted by make
