#!/usr/bin/env bash
# Installs what kbisect's LAVA tests need (Debian 12's lava-server,
# lava-dispatcher, lavacli, lava-coordinator, PostgreSQL): idempotent, and
# quick when everything is there. `make test-lava` runs it through
# scripts/lava-instance.sh start, which then starts a throwaway instance.
exec "$(dirname "$0")/lava-instance.sh" install
