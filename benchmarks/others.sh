#!/usr/bin/env bash
# New guides on MPE (issue 16 item 4): masac-inferred and masac-optimistic against masac, paper budget
# (15000 episodes, section 5.2 defaults), seeds 0-2, as idempotent `pgm-marl sweep` calls: rerunning skips
# finished runs and resumes interrupted ones. masac is rerun beside them so that every comparison is made at one
# commit (see docs/RESULTS.md, "Reproducing a committed run").
#   coop      cooperative navigation and cooperative communication: masac, masac-inferred; navigation also
#             masac-optimistic
#   pp        predator-prey: optimistic predators against masac prey, the mirror, and masac against masac
# Results: benchmarks/results/others/<run>/ (checkpoints are git-ignored). Report:
#   pgm-marl report benchmarks/results/others --last 10
# Usage: bash benchmarks/others.sh        (STAGES="pp" CPUS=1 bash benchmarks/others.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
PGM=${PGM_MARL:-.venv/bin/pgm-marl}
OUT=${OUT:-benchmarks/results/others}
CPUS=${CPUS:-2}
STAGES=${STAGES:-"coop pp"}
COMMON=(--num-cpus "$CPUS" --no-tensorboard --seed 0-2)
status=0
for stage in $STAGES; do
  case $stage in
    coop) $PGM sweep --out "$OUT" "${COMMON[@]}" --task cooperative_navigation --algo masac \
            --algo masac-inferred --algo masac-optimistic || status=1
          $PGM sweep --out "$OUT" "${COMMON[@]}" --task cooperative_communication --algo masac \
            --algo masac-inferred || status=1 ;;
    pp) $PGM sweep --out "$OUT" "${COMMON[@]}" --task predator_prey --algo predators=masac-optimistic,prey=masac \
          --algo predators=masac,prey=masac-optimistic --algo predators=masac,prey=masac || status=1 ;;
    *) echo "unknown stage $stage (stages: coop pp)" >&2; exit 2 ;;
  esac
done
exit $status
