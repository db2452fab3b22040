#!/usr/bin/env bash
# Install a real Moodle for tests/real_moodle.rs. Run as root; every step is idempotent.
#
#   install.sh SRC WORK PORT DBNAME
#
# SRC: a Moodle tarball (one top folder) or a Moodle code folder. WORK: a new folder, empty
# but for an empty moodle/public that a web server may already serve (it gets the code in
# moodle/, moodledata/ and db.env). The database DBNAME and its role are
# dropped and created afresh. Prints the seconds each step took on stderr.
set -euo pipefail
src=$1 work=$2 port=$3 db=$4
step() { printf '[install %3ds] %s\n' "$SECONDS" "$*" >&2; }

# Moodle's installer refuses to run with fewer than 5000 input variables.
ini=/etc/php/8.2/cli/conf.d/99-palier-moodle.ini
[ -f "$ini" ] || printf 'max_input_vars = 5000\n' > "$ini"

step "database"
pg_ctlcluster 15 main start 2>/dev/null || pg_ctlcluster 15 main status >/dev/null
for _ in $(seq 50); do runuser -u postgres -- pg_isready -q && break; sleep 0.2; done
pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<SQL
DROP DATABASE IF EXISTS $db;
DROP ROLE IF EXISTS $db;
CREATE ROLE $db LOGIN PASSWORD '$pass';
CREATE DATABASE $db OWNER $db ENCODING 'UTF8' TEMPLATE template0;
ALTER DATABASE $db SET synchronous_commit = off;
SQL
printf 'PGHOST=127.0.0.1\nPGDATABASE=%s\nPGUSER=%s\nPGPASSWORD=%s\n' "$db" "$db" "$pass" > "$work/db.env"

step "code"
if [ -d "$src" ]; then
    mkdir -p "$work/moodle"
    cp -a "$src/." "$work/moodle/"
else
    mkdir -p "$work/moodle"
    tar xzf "$src" -C "$work/moodle" --strip-components=1
fi
mkdir -p "$work/moodledata"
chown -R www-data:www-data "$work"
chmod 0600 "$work/db.env"

step "install.php"
runuser -u www-data -- php "$work/moodle/admin/cli/install.php" --non-interactive --agree-license --lang=en \
    --wwwroot="http://127.0.0.1:$port" --dataroot="$work/moodledata" --dbtype=pgsql --dbhost=127.0.0.1 \
    --dbname="$db" --dbuser="$db" --dbpass="$pass" --prefix=mdl_ --fullname="palier real Moodle test" \
    --shortname=palier --adminuser=admin --adminpass='Palier-test-1' --adminemail=admin@example.invalid \
    --supportemail=admin@example.invalid > "$work/install.log" 2>&1 || { tail -20 "$work/install.log" >&2; exit 1; }
# A fresh site has never run cron, which checks.php reports as CRITICAL. Running cron.php
# takes a minute here; the test records a cron run instead, so that checks.php (the level-3
# validate hook) reports the site's health.
for kv in "lastcronstart=$(date +%s)" "lastcroninterval=60"; do
    runuser -u www-data -- php "$work/moodle/admin/cli/cfg.php" --component=tool_task --name="${kv%%=*}" --set="${kv#*=}"
done
step "installed"
