#!/bin/sh
# The restore hook of the real-Moodle test: the database back as the backup hook dumped it,
# then Moodle's caches purged: the caches in the dataroot still hold what the database said
# before the restore (plugin versions, the all-versions hash), and Moodle would believe it.
set -eu
here=$(dirname "$0")
set -a; . "$here/../db.env"; set +a
pg_restore --clean --if-exists --no-owner --single-transaction --dbname="$PGDATABASE" "$1/moodle.dump"
php "$here/../moodle/admin/cli/purge_caches.php"
