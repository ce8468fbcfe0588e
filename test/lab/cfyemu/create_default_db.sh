#!/bin/bash
# The emulator's create_default_db.sh: what cloudify-manager-install 4.6's script of that name
# (cfy_manager/components/restservice/scripts/create_default_db.sh) does, run the way 4.6 runs
# it (restservice/db.py prepare_db: `su - postgres -c "<this> <db> <user> <password> <host>"`):
# its arguments expanded unquoted, the password spliced into an SQL literal, psql with the
# postgres user's ~/.pgpass and libpq's defaults (sslmode=prefer, no client certificate).
# Lab choice (cfyemu/README.md): a DROP DATABASE that meets "being accessed by other users" is
# tried again, 20 times 0.25 s apart.
set -e

if [ $# -lt 4 ]; then
    echo "Missing arguments."
    echo "Usage: $0 db_name username password"
    exit
fi

db_name=$1
user=$2
password=$3
host=$4

run_psql() {
    echo "Going to run: $1"
    if [ "$host" = "localhost" ]; then
        psql -c "$1"
    else
        psql -h ${host} -c "$1"
    fi
}

drop_database() {
    for attempt in $(seq 20); do
        if out=$(run_psql "DROP DATABASE IF EXISTS $1;" 2>&1); then
            echo "$out"
            return 0
        fi
        case "$out" in
            *"being accessed by other users"*) sleep 0.25 ;;
            *) echo "$out" >&2; return 1 ;;
        esac
    done
    echo "$out" >&2
    return 1
}

owned_database() {
    run_psql "CREATE DATABASE $1"
    run_psql "GRANT ALL PRIVILEGES ON DATABASE $1 TO $2;"
    run_psql "ALTER DATABASE $1 OWNER TO $2;"
}

create_user() {
    run_psql "CREATE USER $2 WITH PASSWORD '$3';"
    run_psql "GRANT ALL PRIVILEGES ON DATABASE $1 TO $2;"
    run_psql "ALTER USER $2 CREATEDB;"
    run_psql "ALTER DATABASE $1 OWNER TO $2;"
}

for name in ${db_name} stage composer; do
    drop_database ${name}
done
run_psql "DROP USER IF EXISTS ${user};"
run_psql "CREATE DATABASE ${db_name}"
create_user ${db_name} ${user} ${password}
owned_database stage ${user}
owned_database composer ${user}
