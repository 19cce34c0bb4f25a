#!/usr/bin/env bash
# Many agents (issue 15, section 5.4): the critic forms (--critic) with and without --share-params, as
# idempotent `pgm-marl sweep` calls (paper budget: 15000 episodes, section 5.2 defaults, 3 seeds). Rerunning
# skips finished runs and resumes interrupted ones from their checkpoints, so the study can be stopped and
# continued on a machine that keeps the working tree. Checkpoints are git-ignored (gigabytes of replay): where a
# session starts from a fresh clone, an unfinished run restarts at episode 0, so start only runs that end within
# the session (one thread each, two side by side on 2 cores: N = 24 attention ~1.5 h, N = 24 mean-field/local
# ~1.7 h with separate networks, predator-prey attention ~1-2.5 h, everything else under an hour; measured times
# per run in docs/RESULTS.md, "Many agents").
#
# Stages (in this order by default; seed 0 of a stage's grid first, a whole picture early):
#   n3    cooperative navigation, N = 3: attention (per-ego draws, and common draws in n3/common), mean-field,
#         local (mlp: Figure 2's committed masac runs)
#   n12   cooperative navigation, N = 12: attention, mean-field, local x {no sharing, sharing}; mlp
#   (from n12 on, attention runs with --common-draws, see ATTENTION below)
#   pp    predator-prey, 12 predators / 4 prey / 4 obstacles, both teams masac with the same form; mlp with
#         separate networks (about 1.4x mean-field's step there, so a run stays under an hour)
#   n24   cooperative navigation, N = 24: attention, mean-field, local x {no sharing, sharing} (mlp: its
#         measured cost per step stands in, benchmarks/bench_critics.py)
#   n48   cooperative navigation, N = 48, the complete paper-budget run of item 3: mean-field, shared, float16
#         replay (11.2 GB), bfloat16 hidden layers, 2 threads, a checkpoint every 5000 episodes (chosen when each
#         checkpoint rewrote the whole replay); 1.7 h on 2 cores (measured), peak RSS 12.45 GB
# Results: benchmarks/results/many_agents/<stage>[/share|/noshare]/<run>/ (checkpoints are git-ignored; a
# finished run drops its replay, --no-keep-replay: 5-6 GB each at N = 24, a dozen of them filled the disk once).
# Temperature: every stage keeps the paper's alpha (0.02, tuned at N = 3; training warns). The runs that rescale
# it (alpha 0.02 x N / 3, or masac-auto) are single `pgm-marl train` commands, in docs/RESULTS.md ("The
# temperature at many agents"), results in <stage>/temperature/.
#
# Usage: bash benchmarks/many_agents.sh               (PGM_MARL="python -m pgm_marl" for another interpreter)
#        STAGES="n3 n12" bash benchmarks/many_agents.sh
#        SEED0_FIRST=0 bash benchmarks/many_agents.sh    (each grid's seeds in one sweep: a grid of one form then
#                                                          runs seeds 0 and 1 side by side instead of seed 0 alone)
set -uo pipefail
cd "$(dirname "$0")/.."
PGM=${PGM_MARL:-.venv/bin/pgm-marl}
OUT=${OUT:-benchmarks/results/many_agents}
CPUS=${CPUS:-2}
SEED0_FIRST=${SEED0_FIRST:-1}
STAGES=${STAGES:-"n3 n12 pp n24 n48"}
COMMON=(--num-cpus "$CPUS" --no-tensorboard --no-keep-replay --algo masac)
FORMS=(--critic mean-field --critic local)
# attention with one draw of each a_j for all egos (--common-draws: 1.3-2x cheaper per step, each agent's
# estimator unchanged; N = 3 compares it with per-ego draws). Its runs are named ...__common_drawsTrue__seedK;
# the per-ego attention runs made before (n3, n12/noshare seed 0) keep their names and stay as they are.
ATTENTION=(--critic attention --common-draws --name-by critic --name-by common_draws)
PP=(--task predator_prey --env-kwargs num_adversaries=12,num_good=4,num_obstacles=4)  # the many-agent predator-prey
status=0

grid() {  # $1 = out folder, rest = flags; seed 0 first (unless SEED0_FIRST=0), then seeds 1-2 (same folders)
  local out=$1; shift
  for seeds in $([ "$SEED0_FIRST" = 0 ] || echo 0) 0-2; do
    $PGM sweep --out "$out" "${COMMON[@]}" --seed "$seeds" "$@" || status=1
  done
}

for stage in $STAGES; do
  case $stage in
    n3) grid "$OUT/n3" --task cooperative_navigation --critic attention "${FORMS[@]}"  # (per-ego attention)
        grid "$OUT/n3/common" --task cooperative_navigation --critic attention --common-draws --name-by critic ;;
    n12) grid "$OUT/n12/noshare" --task cooperative_navigation --env-kwargs N=12 "${FORMS[@]}" --no-share-params
         grid "$OUT/n12/share" --task cooperative_navigation --env-kwargs N=12 "${FORMS[@]}" --share-params
         grid "$OUT/n12/share" --task cooperative_navigation --env-kwargs N=12 "${ATTENTION[@]}" --share-params
         grid "$OUT/n12/noshare" --task cooperative_navigation --env-kwargs N=12 "${ATTENTION[@]}" --no-share-params
         grid "$OUT/n12/noshare" --task cooperative_navigation --env-kwargs N=12 --critic mlp --name-by critic \
           --no-share-params ;;
    pp) for share in noshare share; do  # (a folder per setting: run names hold only the grid's axes)
          for forms in FORMS ATTENTION; do
            declare -n chosen=$forms
            grid "$OUT/pp/$share" "${PP[@]}" "${chosen[@]}" "--$([ $share = share ] || echo no-)share-params"
          done
        done
        grid "$OUT/pp/noshare" "${PP[@]}" --critic mlp --name-by critic --no-share-params ;;
    n24) for share in noshare share; do
           for forms in FORMS ATTENTION; do
             declare -n chosen=$forms
             grid "$OUT/n24/$share" --task cooperative_navigation --env-kwargs N=24 "${chosen[@]}" \
               "--$([ $share = share ] || echo no-)share-params"
           done
         done ;;
    n48) $PGM sweep --out "$OUT/n48/share" "${COMMON[@]}" --seed 0 \
           --task cooperative_navigation --env-kwargs N=48 --critic mean-field --name-by critic --share-params \
           --replay-dtype float16 --precision bfloat16 --threads 2 --checkpoint-every 5000 || status=1 ;;
    *) echo "unknown stage $stage (stages: n3 n12 pp n24 n48)" >&2; exit 2 ;;
  esac
done
exit $status
