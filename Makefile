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

## Short MA-SAC training run on cooperative navigation: the paper's settings (section 5.2) but a third of its
## 15000 episodes and the first gradient step after 2500 env steps instead of 25600, i.e. ~1200 gradient steps
## (1-2.5 minutes on 2 CPU cores). It ends near -15.5 against -25.8 for uniform random policies (a paper-budget
## run: -10.9). Progress bar, $(RUN_OUT)/{metrics.csv,learning_curve.png}. Paper-scale runs: benchmarks/figure2.sh.
run: $(STAMP)
	$(BIN)/pgm-marl train --task cooperative_navigation --algo masac --seed 0 \
		--episodes 5000 --learning-starts 2500 --update-every 100 --eval-every 100 --eval-episodes 100 \
		--out $(RUN_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_envs.py

clean:
	rm -rf $(VENV)  # runs/ is kept: results are never deleted by make
