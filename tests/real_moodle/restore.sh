#!/bin/sh
# The restore hook of the real-Moodle test: the database back as the backup hook dumped it.
# The agent's rollback then reloads PHP and runs the purge_caches hook: Moodle's caches in
# the dataroot still hold what the database said before the restore.
set -eu
here=$(dirname "$0")
set -a; . "$here/../db.env"; set +a
pg_restore --clean --if-exists --no-owner --single-transaction --dbname="$PGDATABASE" "$1/moodle.dump"
