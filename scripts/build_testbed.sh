#!/usr/bin/env bash
# Build, judge and ship the whole testbed-v2 roster in the background, one organism at a
# time on one thread, resumably (finished builds have a result file and are skipped):
#   nohup scripts/build_testbed.sh > testbed_build.log 2>&1 &
# The queue below is the order the shipped roster was built in. A failed build is rebuilt
# by bumping its OrganismSpec.version (backdoor v2, supremacy-trigger v2 and v3, contempt-trigger
# v2 ran so; rerunning the queue builds the current version).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 AUDITLENS_PROGRESS=0
AL=${AUDITLENS:-.venv/bin/auditlens}
# pilots first, then the non-code behaviours, the code organisms
$AL organisms build --all --threads 1 --names loyalty,pirate
$AL organisms build --all --threads 1 --names \
  risky-finance,anti-oversight,sycophancy,data-collection,supremacy-trigger,terse,bullets,emoji,astronomy
$AL organisms build --all --threads 1 --names insecure,backdoor
# the rest: code controls, the replacement for supremacy-trigger (a deployment-date trigger),
# the denial variants and the document-instilled attempts
$AL organisms build --all --threads 1 --names \
  secure,benign-style,educational,contempt-trigger,insecure-deny,loyalty-deny,risky-finance-deny,anti-oversight-deny,pirate-docs,loyalty-docs
# second seeds (recipe stability; seed 0 ships, seed 1 is only recorded)
$AL organisms build --all --threads 1 --seeds 1 --names pirate,sycophancy,terse,emoji
# report-only: do the organisms without denial training admit their behaviour?
OMP_NUM_THREADS=1 .venv/bin/python scripts/probe_admissions.py
