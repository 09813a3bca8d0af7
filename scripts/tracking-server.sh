#!/usr/bin/env bash
# A team's MLflow tracking server: PostgreSQL for runs and the registry, proxied artifacts in a folder,
# optionally MLflow's basic authentication. Runs in the foreground (Ctrl-C stops mlflow; PostgreSQL keeps
# running until `--stop`). Idempotent: a second start reuses the cluster, its databases and the artifacts.
#
#   scripts/tracking-server.sh --data ~/rtdeploy-server [--host 127.0.0.1] [--port 5000] [--pg-port 5433]
#                              [--workers 2] [--auth]
#   scripts/tracking-server.sh --data ~/rtdeploy-server --stop      # stops PostgreSQL
#
# Then, in the shell that runs the project (nothing else changes):
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
#   export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=...     # with --auth
#
# --auth takes the administrator's password from MLFLOW_AUTH_ADMIN_PASSWORD (MLflow refuses to create the
# administrator without one; 12 characters or more) and MLflow's users, permissions and the READ default
# for other users are kept in a second database of the same cluster.
#
# Needs Debian's `postgresql` package (initdb, pg_ctl under /usr/lib/postgresql/<n>/bin, or set PG_BIN) and
# the project's dependencies (mlflow[auth], psycopg). PostgreSQL refuses to run as root: as root, the cluster
# is run by the `postgres` user, which must be able to enter the data folder.
set -euo pipefail

data="" host=127.0.0.1 port=5000 pg_port=5433 workers=2 auth=0 stop=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data) data="$2"; shift 2 ;;
        --host) host="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --pg-port) pg_port="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --auth) auth=1; shift ;;
        --stop) stop=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "tracking-server: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$data" ]; then
    echo "tracking-server: --data <folder> is required: PostgreSQL's cluster and the artifacts live there" >&2
    exit 2
fi

# tests/tracking_server.py (postgres_bin) looks in the same places: keep the two alike
pg_bin="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
if [ ! -x "$pg_bin/initdb" ]; then
    echo "tracking-server: PostgreSQL not found (no initdb in ${PG_BIN:-/usr/lib/postgresql/*/bin}):" \
        "apt-get install postgresql, or set PG_BIN to the folder holding initdb and pg_ctl" >&2
    exit 1
fi

mkdir -p "$data"
data="$(cd "$data" && pwd)"
cluster="$data/postgres"
as_owner=()  # how to run PostgreSQL's programs: as root, through the postgres user
if [ "$(id -u)" = 0 ]; then
    as_owner=(runuser -u postgres --)
fi
pg() { "${as_owner[@]}" "$pg_bin/$@"; }

if [ "$stop" = 1 ]; then
    if [ -f "$cluster/postmaster.pid" ]; then pg pg_ctl -D "$cluster" -m fast -w stop; fi
    exit 0
fi

# The database user's password is made once and kept beside the cluster; libpq reads it from PGPASSFILE,
# so it never appears on a command line.
export PGPASSFILE="$data/pgpass"
if [ ! -f "$cluster/PG_VERSION" ]; then
    echo "tracking-server: creating a PostgreSQL cluster in $cluster"
    password="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    umask 077
    printf '127.0.0.1:%s:*:mlflow:%s\n' "$pg_port" "$password" > "$PGPASSFILE"
    mkdir -p "$cluster"
    printf '%s\n' "$password" > "$data/.initdb-password"
    if [ "${#as_owner[@]}" -gt 0 ]; then
        chown postgres "$cluster" "$data/.initdb-password"
        if ! runuser -u postgres -- test -x "$data"; then
            rm -rf "$cluster" "$data/.initdb-password" "$PGPASSFILE"
            echo "tracking-server: the postgres user cannot enter $data; pick a folder it can reach" \
                "(e.g. under /srv or /var/lib) or make its parents searchable (chmod o+x)" >&2
            exit 1
        fi
    fi
    pg initdb -D "$cluster" -U mlflow --pwfile="$data/.initdb-password" --auth=scram-sha-256 \
        --encoding=UTF8 > "$data/initdb.log"
    rm -f "$data/.initdb-password"
    umask 022
fi
sed -i "s/^127\.0\.0\.1:[0-9]*:/127.0.0.1:$pg_port:/" "$PGPASSFILE"  # the port may differ from the first start

if ! pg pg_ctl -D "$cluster" status > /dev/null 2>&1; then
    echo "tracking-server: starting PostgreSQL on 127.0.0.1:$pg_port"
    pg pg_ctl -D "$cluster" -l "$cluster/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $cluster" start > /dev/null
fi

database_url() { echo "postgresql://mlflow@127.0.0.1:$pg_port/$1"; }
for database in mlflow mlflow_auth; do
    if ! psql_out="$("$pg_bin/psql" "$(database_url postgres)" -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$database'")"; then
        echo "tracking-server: cannot reach PostgreSQL on 127.0.0.1:$pg_port (see $cluster/server.log)" >&2
        exit 1
    fi
    if [ "$psql_out" != 1 ]; then
        "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U mlflow "$database"
    fi
done

mkdir -p "$data/artifacts"
echo "tracking-server: upgrading the tracking schema (mlflow db upgrade)"
mlflow db upgrade "$(database_url mlflow)" > "$data/db-upgrade.log" 2>&1 || {
    cat "$data/db-upgrade.log" >&2
    exit 1
}

# MLflow's job runner (GenAI evaluation jobs: a uvicorn runner and seven huey consumers of ~250 MB each) does
# nothing for this project; it stays off unless the caller turns it on.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
server=(mlflow server --backend-store-uri "$(database_url mlflow)" --artifacts-destination "$data/artifacts"
        --serve-artifacts --host "$host" --port "$port" --workers "$workers")
if [ "$auth" = 1 ]; then
    if [ -z "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
        echo "tracking-server: --auth needs MLFLOW_AUTH_ADMIN_PASSWORD (the administrator's password)" >&2
        exit 2
    fi
    # The key that signs the UI's CSRF tokens: made once, kept with the data (every worker must share it).
    if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
        [ -f "$data/flask-secret" ] || (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$data/flask-secret")
        MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$data/flask-secret")"
        export MLFLOW_FLASK_SERVER_SECRET_KEY
    fi
    export MLFLOW_AUTH_CONFIG_PATH="$data/basic_auth.ini"
    cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = READ
database_uri = $(database_url mlflow_auth)
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Each request's password check is a PBKDF2 hash; serving replicas poll the alias every few seconds. Cache a
# checked password for a minute (per mlflow worker: a changed password takes up to that long everywhere).
auth_cache_ttl_seconds = 60
EOF
    server+=(--app-name basic-auth)
fi
echo "tracking-server: MLflow on http://$host:$port (artifacts in $data/artifacts$([ "$auth" = 1 ] && echo ", basic auth"))"
exec "${server[@]}"
