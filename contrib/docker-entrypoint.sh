#!/bin/sh
# The container's entrypoint: toma with its project in $TOMA_PROJECT (/project,
# a volume). Tested outside a container by tests/integration/test_container_entrypoint.py.
#
#   (no argument) | run    the daemon (toma run); the first start writes a starter
#                          project and exits 78: edit config.toml, then start again
#   healthcheck            healthy when the store can be read (toma status exits
#                          0, 75 or 78), or, with TOMA_HEALTH_URL set (the
#                          dashboard's /healthz), when that answers 200
#   anything else          passed to toma: `docker compose run toma check`, `… backup /project/b.tgz`
set -eu
project=${TOMA_PROJECT:-/project}
export TOMA_CONFIG="$project/config.toml"
toma=${TOMA_BIN:-toma}

if [ "$#" -eq 0 ]; then
    set -- run
fi

case "$1" in
healthcheck)
    if [ -n "${TOMA_HEALTH_URL:-}" ]; then
        exec "${TOMA_PYTHON:-python3}" -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
    sys.exit(0 if answer.status == 200 else 1)' "$TOMA_HEALTH_URL"
    fi
    status=0
    "$toma" status >/dev/null 2>&1 || status=$?
    case "$status" in
    0 | 75 | 78) exit 0 ;;  # the store reads; 75/78 say what waits, not that toma is down
    *) exit 1 ;;
    esac
    ;;
run)
    if [ ! -e "$TOMA_CONFIG" ]; then
        "$toma" init "$project" >&2
        echo "toma: wrote a starter project in $project (a volume): edit config.toml," >&2
        echo "      then start the container again" >&2
        exit 78
    fi
    exec "$toma" "$@"
    ;;
*)
    exec "$toma" "$@"
    ;;
esac
