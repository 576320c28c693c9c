#!/usr/bin/env bash
# Every run reported in docs/benchmarks.md, one after the other (about 30 minutes in all,
# more if the machine is busy: each run first waits for idle CPUs). Results: bench/results/.
#   bench/run_beat_benchmarks.sh            # all runs
#   bench/run_beat_benchmarks.sh stock-1000 taskcenter-1000  # only the runs with these labels
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STOCK=django_celery_beat.schedulers:DatabaseScheduler
TASKCENTER=taskcenter.scheduler:TaskcenterScheduler
EXPERIMENT=bench.experimental_scheduler:ConstantCompareScheduler
only=" $* "

run() {
  local label=$1
  shift
  if [[ $only != "  " && $only != *" $label "* ]]; then return; fi
  echo "=== $label"
  "$PY" bench/beat_lateness.py --label "$label" "$@"
}

run stock-10000 --schedules 10000 --duration 60 --scheduler "$STOCK"
run taskcenter-10000 --schedules 10000 --duration 60 --scheduler "$TASKCENTER"
run stock-1000 --schedules 1000 --duration 60 --scheduler "$STOCK"
run taskcenter-1000 --schedules 1000 --duration 60 --scheduler "$TASKCENTER"
run stock-10000-every600s --schedules 10000 --period 600 --duration 60 --scheduler "$STOCK"
run taskcenter-10000-every600s --schedules 10000 --period 600 --duration 60 --scheduler "$TASKCENTER"
run taskcenter-10000-every20s --schedules 10000 --period 20 --duration 60 --scheduler "$TASKCENTER"
# PostgreSQL runs only when BENCH_DATABASE_URL names a database of their own (it is emptied first).
if [[ -n ${BENCH_DATABASE_URL:-} ]]; then
  run stock-10000-postgres --schedules 10000 --duration 60 --database-url "$BENCH_DATABASE_URL" --scheduler "$STOCK"
  run taskcenter-10000-postgres --schedules 10000 --duration 60 --database-url "$BENCH_DATABASE_URL" --scheduler "$TASKCENTER"
fi
run experiment-constantcompare-10000 --schedules 10000 --duration 60 --scheduler "$EXPERIMENT"
# The same with one more SQLite connection open all along (as a web or worker process with
# persistent connections): beat's per-tick close then no longer checkpoints the WAL.
run stock-10000-held --schedules 10000 --duration 60 --hold-connection --scheduler "$STOCK"
run taskcenter-10000-held --schedules 10000 --duration 60 --hold-connection --scheduler "$TASKCENTER"
run experiment-constantcompare-10000-held --schedules 10000 --duration 60 --hold-connection --scheduler "$EXPERIMENT"
run profile-stock-10000 --schedules 10000 --duration 30 --tail 5 --profile --scheduler "$STOCK"
run profile-taskcenter-10000 --schedules 10000 --duration 30 --tail 5 --profile --scheduler "$TASKCENTER"
