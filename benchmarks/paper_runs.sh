#!/usr/bin/env bash
# Reproduce the paper's experiments (section 5, Figure 2) and plot them.
#
#   cn  cooperative navigation       masac, maddpg, masac-auto            team "all"
#   cc  cooperative communication    masac, maddpg, masac-auto            team "all"
#   pp  predator-prey                predators=masac,prey=maddpg and the reverse   teams predators / prey
#   pd  physical deception           good=masac,adversary=maddpg and the reverse    teams good / adversary
#
# Seeds 0 1 2 by default: the paper averaged 5 seeds (SEEDS="0 1 2 3 4" for that). All other hyperparameters
# are TrainConfig's defaults (the paper's section 5.2, 15000 episodes, per-task alpha). One run takes hours on
# one CPU core; the runs are independent, so JOBS runs that many at once (one torch thread each).
#
# Environment variables:
#   ONLY="cn cc pp pd"   which experiments (default: all four)
#   SEEDS="0 1 2"        seeds
#   JOBS=1               runs in parallel (keep <= CPU cores)
#   RUNS=runs            parent folder of the run folders (runs/<name>_s<seed>)
#   PLOTS=docs           where the figures go
#   PGM=, PY=            the pgm-marl and python to call (default: the repo's .venv, else PATH)
#   EPISODES=            override the number of training episodes (e.g. 2000 for a smoke test)
#   DRY_RUN=1            only print the commands
#   SKIP_TRAIN=1         only plot existing runs
#
# A run whose folder has timing.json is finished and skipped; one with only checkpoint.pt is resumed.
# Usage: ONLY="cn" JOBS=2 bash benchmarks/paper_runs.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ONLY=${ONLY:-"cn cc pp pd"}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-1}
RUNS=${RUNS:-runs}
PLOTS=${PLOTS:-docs}
EPISODES=${EPISODES:-}
DRY_RUN=${DRY_RUN:-0}
SKIP_TRAIN=${SKIP_TRAIN:-0}
if [[ -x .venv/bin/pgm-marl ]]; then PGM=${PGM:-.venv/bin/pgm-marl}; else PGM=${PGM:-pgm-marl}; fi
if [[ -x .venv/bin/python ]]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python}; fi

# Mean team return of the uniformly random policy, from `python benchmarks/random_baseline.py`
# (100 episodes, env seeds 10000..10099 = the evaluation seeds of a seed-0 run).
BASE_CN=-25.76
BASE_CC=-40.16
BASE_PP_PREDATORS=4.80
BASE_PP_PREY=-17.80
BASE_PD_GOOD=7.97
BASE_PD_ADVERSARY=-28.05

wants() { [[ " $ONLY " == *" $1 "* ]]; }

COMMANDS=()
# queue NAME TASK ALGO: one run per seed
queue() {
  local name=$1 task=$2 algo=$3 seed out extra
  for seed in $SEEDS; do
    out="$RUNS/${name}_s${seed}"
    if [[ -f "$out/timing.json" ]]; then echo "done already: $out"; continue; fi
    extra=""
    [[ -f "$out/checkpoint.pt" ]] && extra+=" --resume"
    [[ -n "$EPISODES" ]] && extra+=" --episodes $EPISODES"
    COMMANDS+=("$PGM train --task $task --algo '$algo' --seed $seed --out $out --threads 1 --no-progress$extra")
  done
}

if wants cn; then
  queue cn_masac cooperative_navigation masac
  queue cn_maddpg cooperative_navigation maddpg
  queue cn_masac-auto cooperative_navigation masac-auto
fi
if wants cc; then
  queue cc_masac cooperative_communication masac
  queue cc_maddpg cooperative_communication maddpg
  queue cc_masac-auto cooperative_communication masac-auto
fi
if wants pp; then
  queue pp_predmasac_preymaddpg predator_prey "predators=masac,prey=maddpg"
  queue pp_predmaddpg_preymasac predator_prey "predators=maddpg,prey=masac"
fi
if wants pd; then
  queue pd_goodmasac_advmaddpg physical_deception "good=masac,adversary=maddpg"
  queue pd_goodmaddpg_advmasac physical_deception "good=maddpg,adversary=masac"
fi

if [[ "$SKIP_TRAIN" != 1 && ${#COMMANDS[@]} -gt 0 ]]; then
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "${COMMANDS[@]}"
  else
    mkdir -p "$RUNS"
    # -d '\n': one command per line, quotes left to bash
    printf '%s\n' "${COMMANDS[@]}" | xargs -d '\n' -n 1 -P "$JOBS" bash -c 'echo "+ $0"; eval "$0"'
  fi
fi

plot() {  # plot OUT TEAM BASELINE TITLE GROUP...
  local out=$1 team=$2 base=$3 title=$4
  shift 4
  local args=(--team "$team" --out "$PLOTS/$out" --baseline "$base" --title "$title")
  for g in "$@"; do args+=(--group "$g"); done
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%q ' "$PY" benchmarks/plot_runs.py "${args[@]}"; echo
  else
    echo "== $title ($team) =="
    "$PY" benchmarks/plot_runs.py "${args[@]}" || echo "(no plot for $title: runs missing?)"
  fi
}

if wants cn; then
  plot cn.png all "$BASE_CN" "cooperative navigation" \
    "MA-SAC=$RUNS/cn_masac_s*" "MADDPG=$RUNS/cn_maddpg_s*" "MA-SAC (learned alpha)=$RUNS/cn_masac-auto_s*"
fi
if wants cc; then
  plot cc.png all "$BASE_CC" "cooperative communication" \
    "MA-SAC=$RUNS/cc_masac_s*" "MADDPG=$RUNS/cc_maddpg_s*" "MA-SAC (learned alpha)=$RUNS/cc_masac-auto_s*"
fi
if wants pp; then  # each team's return when it plays MA-SAC vs when it plays MADDPG
  plot pp_predators.png predators "$BASE_PP_PREDATORS" "predator-prey: predators" \
    "MA-SAC predators vs MADDPG prey=$RUNS/pp_predmasac_preymaddpg_s*" \
    "MADDPG predators vs MA-SAC prey=$RUNS/pp_predmaddpg_preymasac_s*"
  plot pp_prey.png prey "$BASE_PP_PREY" "predator-prey: prey" \
    "MA-SAC prey vs MADDPG predators=$RUNS/pp_predmaddpg_preymasac_s*" \
    "MADDPG prey vs MA-SAC predators=$RUNS/pp_predmasac_preymaddpg_s*"
fi
if wants pd; then
  plot pd_good.png good "$BASE_PD_GOOD" "physical deception: good agents" \
    "MA-SAC good vs MADDPG adversary=$RUNS/pd_goodmasac_advmaddpg_s*" \
    "MADDPG good vs MA-SAC adversary=$RUNS/pd_goodmaddpg_advmasac_s*"
  plot pd_adversary.png adversary "$BASE_PD_ADVERSARY" "physical deception: adversary" \
    "MA-SAC adversary vs MADDPG good=$RUNS/pd_goodmaddpg_advmasac_s*" \
    "MADDPG adversary vs MA-SAC good=$RUNS/pd_goodmasac_advmaddpg_s*"
fi
