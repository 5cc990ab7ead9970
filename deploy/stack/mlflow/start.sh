#!/bin/sh
# MLflow's server on the stack's PostgreSQL. The password comes from the compose secret, for libpq (PGPASSWORD), so it
# is in no layer, no compose variable and no command line. Hosts allowed: its name on the stack's network, and the
# host's loopback (where its port is published).
set -eu
PGPASSWORD=$(cat /run/secrets/postgres_password)
export PGPASSWORD
# PostgreSQL makes its cluster on its first start: wait for it (bounded) rather than fail and be restarted
python -c "
import time, psycopg
for attempt in range(120):
    try:
        psycopg.connect('host=postgres user=mlproject dbname=mlflow', connect_timeout=2).close()
        break
    except psycopg.OperationalError:
        time.sleep(0.5)
"
exec mlflow server \
    --backend-store-uri "postgresql+psycopg://mlproject@postgres:5432/mlflow" \
    --artifacts-destination /var/lib/mlflow/artifacts --serve-artifacts \
    --host 0.0.0.0 --port 5000 --workers 2 \
    --allowed-hosts "mlflow,mlflow:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
