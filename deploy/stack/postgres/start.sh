#!/bin/sh
# The first start makes the cluster (the superuser `mlproject`, its password from the secret, password
# authentication for the stack's network) and the two databases; every start then runs the server in the foreground.
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
    "$bin/initdb" -D "$data" -U mlproject --pwfile=/run/secrets/postgres_password --auth=scram-sha-256 \
        --encoding=UTF8 --locale=C
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
    for database in mlflow optuna; do
        echo "CREATE DATABASE $database" | "$bin/postgres" --single -D "$data" postgres >/dev/null
    done
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c unix_socket_directories=/tmp
