#!/bin/sh
# The restore hook of the real-Moodle test: the database back as the backup hook dumped it.
set -eu
set -a; . "$(dirname "$0")/../db.env"; set +a
pg_restore --clean --if-exists --no-owner --single-transaction --dbname="$PGDATABASE" "$1/moodle.dump"
