#!/bin/sh
# The backup hook of the real-Moodle test: a custom-format pg_dump of the site's database
# into {backup_dir}. Database settings from db.env beside this script.
set -eu
set -a; . "$(dirname "$0")/../db.env"; set +a
pg_dump --format=custom --file="$1/moodle.dump"
