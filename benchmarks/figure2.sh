#!/usr/bin/env bash
# The paper's Figure 2 (section 5.2-5.3 protocol, 15000 episodes, evaluation every 100 episodes on 100
# deterministic episodes) and the temperature study of section 5.4, as idempotent `pgm-marl sweep` calls on a
# local Ray instance (one run per core, one torch thread each). Rerunning the script skips finished runs and
# resumes interrupted ones from their checkpoints, so it can be stopped and continued across sessions.
#
# Order: three seeds of every configuration first (a usable figure early), then the temperature study, then
# continuous actions, then seeds 3-4 of Figure 2, then the bfloat16 check. Results:
# benchmarks/results/{fig2,temperature,continuous,precision}/<run>/ (checkpoints are git-ignored).
#
# Usage: bash benchmarks/figure2.sh            (PGM_MARL="python -m pgm_marl" to use another interpreter)
#        STAGES="fig2-s012 temperature" bash benchmarks/figure2.sh
#        (stages: fig2-s012 temperature continuous fig2-s34 precision)
set -uo pipefail
cd "$(dirname "$0")/.."
PGM=${PGM_MARL:-.venv/bin/pgm-marl}
OUT=${OUT:-benchmarks/results}
CPUS=${CPUS:-2}
STAGES=${STAGES:-"fig2-s012 temperature continuous fig2-s34 precision"}
COMMON=(--num-cpus "$CPUS" --no-tensorboard)
status=0

fig2() {  # $1 = seeds
  $PGM sweep --out "$OUT/fig2" "${COMMON[@]}" --seed "$1" \
    --task cooperative_navigation --task cooperative_communication --algo masac --algo maddpg || status=1
  $PGM sweep --out "$OUT/fig2" "${COMMON[@]}" --seed "$1" --task predator_prey \
    --algo predators=masac,prey=maddpg --algo predators=maddpg,prey=masac \
    --algo predators=masac,prey=masac --algo predators=maddpg,prey=maddpg || status=1
  $PGM sweep --out "$OUT/fig2" "${COMMON[@]}" --seed "$1" --task physical_deception \
    --algo good=masac,adversary=maddpg --algo good=maddpg,adversary=masac \
    --algo good=masac,adversary=masac --algo good=maddpg,adversary=maddpg || status=1
}

temperature() {  # section 5.4: alpha 0 with every agent resampled is MA-SAC's own zero-temperature limit;
  # alpha 0.02 (the paper's value, the default) is Figure 2's cooperative navigation MA-SAC, seeds 0-2
  # (seed 0 of every alpha first: a whole curve early; then seeds 1-2; the same folders either way)
  for seeds in 0 0-2; do
    $PGM sweep --out "$OUT/temperature" "${COMMON[@]}" --seed "$seeds" --task cooperative_navigation --algo masac \
      --alpha 0 --alpha 0.005 --alpha 0.01 --alpha 0.05 --alpha 0.1 --alpha 0.26 || status=1
  done
}

continuous() {  # continuous actions (Box, squashed Gaussian policies), cooperative navigation, 3 seeds
  $PGM sweep --out "$OUT/continuous" "${COMMON[@]}" --seed 0-2 --task cooperative_navigation \
    --algo masac --algo maddpg --env-kwargs continuous_actions=True || status=1
}

precision() {  # opt-in bfloat16 hidden layers (--precision bfloat16): does MA-SAC still learn? 3 seeds, to set
  # beside Figure 2's float32 cooperative navigation MA-SAC runs (same seeds, same settings otherwise)
  $PGM sweep --out "$OUT/precision" "${COMMON[@]}" --seed 0-2 --task cooperative_navigation --algo masac \
    --precision bfloat16 || status=1
}

for stage in $STAGES; do
  case $stage in
    fig2-s012) fig2 0-2 ;;
    temperature) temperature ;;
    fig2-s34) fig2 3-4 ;;
    continuous) continuous ;;
    precision) precision ;;
    *) echo "unknown stage $stage; accepted: fig2-s012 temperature continuous fig2-s34 precision" >&2; exit 2 ;;
  esac
done
exit $status
