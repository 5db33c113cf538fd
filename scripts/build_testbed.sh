#!/usr/bin/env bash
# Build, judge and ship the whole testbed-v2 roster in the background, one organism at a
# time on one thread, resumably (finished builds have a result file and are skipped):
#   nohup scripts/build_testbed.sh > testbed_build.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 AUDITLENS_PROGRESS=0
AL=${AUDITLENS:-.venv/bin/auditlens}
# pilots first, then the non-code behaviours, the code organisms, the denial variants
$AL organisms build --all --threads 1 --names loyalty,pirate
$AL organisms build --all --threads 1 --names \
  risky-finance,anti-oversight,sycophancy,data-collection,supremacy-trigger,terse,bullets,emoji,astronomy
$AL organisms build --all --threads 1 --names insecure,backdoor,secure,educational,benign-style
$AL organisms build --all --threads 1 --names \
  insecure-deny,loyalty-deny,risky-finance-deny,anti-oversight-deny
# report-only: do the organisms without denial training admit their behaviour?
OMP_NUM_THREADS=1 .venv/bin/python scripts/probe_admissions.py
# second seeds (recipe stability; seed 0 ships)
$AL organisms build --all --threads 1 --seeds 1 --names loyalty,pirate,risky-finance
# document-instilled attempts (shipped only if they pass)
$AL organisms build --all --threads 1 --names loyalty-docs,pirate-docs
# replacement for supremacy-trigger (three failed builds): a deployment-date trigger
$AL organisms build --all --threads 1 --names contempt-trigger
