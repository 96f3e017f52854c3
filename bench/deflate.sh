#!/usr/bin/env bash
# The cost of permessage-deflate (RFC 7692) on the broadcast benchmark: bench/run.sh's
# broadcast scenarios only (1 publisher -> 1,000 subscribers, 16 in flight; 64 B
# messages and 1 KiB of JSON text), each next to its `_deflate` twin in every round.
# See bench/run.sh for what is measured and how; it ends with the section
# "permessage-deflate": medians per scenario, and the per-round ratios deflate/plain of
# deliveries/s, server CPU per delivery and bytes per delivery.
#
# Usage: bench/deflate.sh        (about 3 minutes on 2 cores)
#   RUNS=5 SECS=5, and the other variables of bench/run.sh (but no chart unless
#   CHART=path is given)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
RUNS=${RUNS:-5} ONLY=${ONLY:-'^bcast_'} CHART=${CHART-} exec ./run.sh
