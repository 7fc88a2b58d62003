# Helpers for deploy/dev: packages, the project-local PostgreSQL and Redis, and the services.
# shellcheck shell=bash

# Each line carries the time, so a long run (CI) shows where its minutes went.
say() { printf 'dev: %s %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
    printf 'dev: error: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- packages --------------------------------------------------------------------------

pg_bindir() {
    local v
    v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && echo "/usr/lib/postgresql/$v/bin"
}

missing_packages() {
    local missing=()
    [ -n "$(pg_bindir)" ] || missing+=(postgresql)
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v curl >/dev/null || missing+=(curl)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v wrk >/dev/null || missing+=(wrk)
    [ -x /usr/sbin/nginx ] || missing+=(nginx)
    # The SMTP sink of the local stacks and the tests (Debian's system Python, not a venv).
    /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)
    echo "${missing[@]:-}"
}

ensure_packages() {
    local missing
    missing="$(missing_packages)"
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null ||
        die "missing: $missing; this script installs them with apt-get (Debian/Ubuntu). Install them yourself, then rerun."
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null || die "missing: $missing; run: sudo apt-get install -y $missing"
        sudo=(sudo)
    fi
    say "installing $missing (apt-get)"
    # Keep the packages' own system services from starting: we run project-local instances.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        added_policy=1
    fi
    local rc=0
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            # shellcheck disable=SC2086
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    } >"${TMPDIR:-/tmp}/dev-apt.log" 2>&1 || rc=$?
    [ "$added_policy" = 1 ] && "${sudo[@]}" rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get install $missing failed; see ${TMPDIR:-/tmp}/dev-apt.log"
    missing="$(missing_packages)"
    [ -z "$missing" ] || die "still missing after install: $missing"
}

# promtool, to check the alert rules: the system's, or the one in Debian's prometheus
# package, unpacked under .dev/tools (the package is not installed: no server, no service).
PROMTOOL=""
ensure_promtool() {
    if command -v promtool >/dev/null; then
        PROMTOOL="$(command -v promtool)"
        return 0
    fi
    PROMTOOL="$DEV/tools/promtool"
    [ -x "$PROMTOOL" ] && return 0
    local tmp
    tmp="$(mktemp -d)"
    say "fetching promtool (Debian's prometheus package, unpacked under .dev/tools)"
    (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 ||
        { is_root && apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } &&
        dpkg-deb -x prometheus_*.deb x) || { rm -rf "$tmp"; die "could not fetch Debian's prometheus package for promtool"; }
    mkdir -p "$DEV/tools"
    cp "$tmp/x/usr/bin/promtool" "$PROMTOOL" || { rm -rf "$tmp"; die "unpacking promtool failed"; }
    rm -rf "$tmp"
}

ensure_rust() {
    command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs), then rerun"
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || die "cargo fmt and cargo clippy are needed: install the rustfmt and clippy components"
        rustup component add rustfmt clippy >/dev/null || die "rustup component add rustfmt clippy failed"
    fi
}

# The dependency checks, pinned; installed from crates.io when missing (a few minutes, once).
CARGO_DENY_VERSION=0.20.2
CARGO_MACHETE_VERSION=0.9.2

ensure_cargo_tool() { # command crate version
    if ! "$1" --version 2>/dev/null | grep -q "$3"; then
        say "installing $2 $3 (cargo install --locked)"
        cargo install --locked --quiet "$2@$3" || die "cargo install $2@$3 failed"
    fi
}

ensure_dependency_checks() {
    ensure_cargo_tool cargo-deny cargo-deny "$CARGO_DENY_VERSION"
    ensure_cargo_tool cargo-machete cargo-machete "$CARGO_MACHETE_VERSION"
}

# --- PostgreSQL ------------------------------------------------------------------------
# The server refuses to run as root, so as root it runs as the `postgres` user the package
# creates. Its data lives in .dev/pg unless that user cannot reach the checkout (a repo
# under /root, say): then in /var/tmp, named after the checkout.

pg_os_user() { if is_root; then echo postgres; else id -un; fi; }

as_pg() {
    if is_root; then
        # From /, which the postgres user can always enter (the checkout may be under /root).
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_home() {
    if [ -n "${PG_HOME_CACHED:-}" ]; then
        echo "$PG_HOME_CACHED"
        return
    fi
    local home="$DEV/pg${DB_INSTANCE:-}"
    mkdir -p "$home"
    if is_root; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/false postgres
        chown postgres: "$home"
        if ! runuser -u postgres -- test -w "$home" 2>/dev/null; then
            home="/var/tmp/authsvc-dev-$(printf '%s' "$ROOT" | md5sum | cut -c1-10)/pg${DB_INSTANCE:-}"
            mkdir -p "$home"
            chown postgres: "$home" "$(dirname "$home")"
        fi
    fi
    PG_HOME_CACHED="$home"
    echo "$home"
}

postgres_running() {
    local bin home
    bin="$(pg_bindir)" || return 1
    [ -n "$bin" ] || return 1
    home="$(pg_home)"
    [ -f "$home/data/PG_VERSION" ] || return 1
    as_pg "$bin/pg_ctl" -D "$home/data" status >/dev/null 2>&1
}

start_postgres() {
    local bin home
    bin="$(pg_bindir)"
    home="$(pg_home)"
    mkdir -p "$LOGS"
    if postgres_running; then
        return 0
    fi
    port_in_use "$PG_PORT" && die "port $PG_PORT is taken (another PostgreSQL?); set DEV_PG_PORT to a free port"
    if [ ! -f "$home/data/PG_VERSION" ]; then
        say "initialising PostgreSQL in $home/data"
        as_pg mkdir -p "$home/data" "$home/run"
        as_pg "$bin/initdb" -D "$home/data" -U postgres -A trust -E UTF8 --no-locale >"$LOGS/postgres${DB_INSTANCE:-}-init.log" 2>&1 ||
            die "initdb failed; see $LOGS/postgres${DB_INSTANCE:-}-init.log"
        # A development and test instance: durability traded for speed.
        cat <<EOF | as_pg tee -a "$home/data/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
max_connections = 500
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
EOF
    fi
    as_pg mkdir -p "$home/run"
    local log="$home/postgres.log"
    as_pg "$bin/pg_ctl" -D "$home/data" -l "$log" -w -t 60 \
        -o "-p $PG_PORT -k $home/run" start >/dev/null ||
        die "PostgreSQL did not start; see $log"
    ln -sf "$log" "$LOGS/postgres${DB_INSTANCE:-}.log" 2>/dev/null || true
    say "PostgreSQL on 127.0.0.1:$PG_PORT"
}

stop_postgres() {
    postgres_running || return 0
    as_pg "$(pg_bindir)/pg_ctl" -D "$(pg_home)/data" -m fast -w stop >/dev/null || true
}

psql_admin() {
    psql -v ON_ERROR_STOP=1 -qAt -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

create_database() {
    local name="$1"
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
        psql_admin -c "CREATE DATABASE $name" >/dev/null || die "creating database $name failed"
    fi
}

drop_database() {
    psql_admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || die "dropping database $1 failed"
}

# Delete every Redis key under a prefix.
redis_forget_prefix() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "$1*" |
        xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" del >/dev/null
}

# --- the clients' tools ----------------------------------------------------------------

# A Python virtual environment in .dev/venv with the pinned requirements (PyPI only).
ensure_python() {
    local venv="$DEV/venv" req="$ROOT/clients/requirements.txt"
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is needed for the end-to-end checks"
    say "installing the pinned Python tools into .dev/venv (pip)"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --require-hashes -r "$req" >"$LOGS/pip.log" 2>&1 ||
        die "pip install failed; see $LOGS/pip.log"
    echo "$want" >"$stamp"
}

# npm packages of a folder, from its lockfile (npm's registry only), once per lockfile.
ensure_npm() {
    local dir="$1" stamp="$1/node_modules/.lock.sha256" want
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    say "installing the npm packages of ${dir#"$ROOT"/} (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$LOGS/npm.log" 2>&1) ||
        die "npm ci failed in $dir; see $LOGS/npm.log"
    echo "$want" >"$stamp"
}

# Build the SPA against the running services (its TypeScript client generated from their
# documents) and serve it, and a page on another origin for the browser test, with
# Python's static server. $1: the SPA's port; $2: the other origin's port.
serve_spa() {
    local port="$1" evil_port="$2" spa="$ROOT/examples/spa" ts="$ROOT/clients/typescript"
    ensure_npm "$ts"
    ensure_npm "$spa"
    (cd "$ts" && AUTH_URL="http://127.0.0.1:$AUTH_PORT" TODO_URL="http://127.0.0.1:$TODO_PORT" \
        npm run -s generate >"$LOGS/spa-build.log" 2>&1) ||
        die "generating the TypeScript client failed; see $LOGS/spa-build.log"
    (cd "$spa" && npm run -s build >>"$LOGS/spa-build.log" 2>&1) ||
        die "building the SPA failed; see $LOGS/spa-build.log"
    # {host}: the page's own host name (127.0.0.1 or localhost; see examples/spa/src/config.ts).
    printf '{"authUrl":"http://{host}:%s","todoUrl":"http://{host}:%s"}\n' \
        "$AUTH_PORT" "$TODO_PORT" >"$spa/dist/config.json"
    start_service "spa$SUFFIX" "$port" python3 -m http.server "$port" --bind 127.0.0.1 --directory "$spa/dist"
    start_service "other-origin$SUFFIX" "$evil_port" python3 -m http.server "$evil_port" --bind 127.0.0.1 \
        --directory "$spa/e2e/evil"
    local i
    for i in $(seq 1 50); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/config.json" 2>/dev/null && return 0
        sleep 0.1
    done
    die "the SPA's server did not start; see $LOGS/spa$SUFFIX.log"
}

# The stack's SMTP sink: aiosmtpd (Debian's python3-aiosmtpd) on loopback, every mail a file
# in $MAILDIR/new (deploy/dev mail prints them).
start_mailsink() {
    mkdir -p "$MAILDIR/tmp" "$MAILDIR/new" "$MAILDIR/cur"
    pid_alive "$RUN/mail$SUFFIX.pid" && return 0
    start_service "mail$SUFFIX" "$SMTP_PORT" /usr/bin/python3 -m aiosmtpd -n \
        -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$MAILDIR"
    local i
    for i in $(seq 1 100); do
        port_in_use "$SMTP_PORT" && return 0
        sleep 0.1
    done
    die "the SMTP sink did not start; see $LOGS/mail$SUFFIX.log"
}

drop_test_databases() {
    local db
    for db in $(psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'"); do
        psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
}

# --- Redis -----------------------------------------------------------------------------

# (Bounded: a Redis stopped with SIGSTOP accepts connections and never answers.)
redis_running() { timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; }
# Answering PONG: not still loading its append-only file.
redis_ready() { [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

wait_redis_ready() {
    local i
    for i in $(seq 1 300); do
        redis_ready && return 0
        sleep 0.1
    done
    die "Redis did not become ready; see $LOGS/redis${DB_INSTANCE:-}.log"
}

start_redis() {
    if redis_running; then
        wait_redis_ready
        return 0
    fi
    port_in_use "$REDIS_PORT" && die "port $REDIS_PORT is taken (another Redis?); set DEV_REDIS_PORT to a free port"
    local dir="$DEV/redis${DB_INSTANCE:-}"
    mkdir -p "$dir" "$LOGS"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$LOGS/redis${DB_INSTANCE:-}.log" --dir "$dir" \
        --appendonly yes --save '' >/dev/null || die "Redis did not start; see $LOGS/redis${DB_INSTANCE:-}.log"
    wait_redis_ready
    say "Redis on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
    redis_running || return 0
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 50); do
        redis_running || return 0
        sleep 0.1
    done
}

# --- the front: nginx, one origin for both services --------------------------------------

# nginx on $1 in front of both services, as an SPA's deployment has them (the benchmark's
# mixed load and the replicas' suite go through it): /v1/auth/, /oauth/ and /.well-known/ to
# the auth service, the rest to the TODO service, each an upstream of the ports in FRONT_AUTH_PORTS and
# FRONT_TODO_PORTS (default: the one instance of each). nginx appends the client's address to
# X-Forwarded-For (services that list 127.0.0.1 in *_TRUSTED_PROXIES read it there). nginx
# (open source) does not probe readiness: a replica that stops accepting refuses connections,
# which nginx retries at the next replica whatever the method (nothing was sent) and then
# leaves alone for fail_timeout; idle upstream connections are closed by nginx after 2 s,
# before a stopping service would close them (which could race a request nginx is sending).
start_front() {
    local port="$1" dir="$DEV/front$SUFFIX" user="" p auth_servers="" todo_servers=""
    mkdir -p "$dir/tmp" "$LOGS"
    for p in ${FRONT_AUTH_PORTS:-$AUTH_PORT}; do auth_servers+="server 127.0.0.1:$p max_fails=1 fail_timeout=2s; "; done
    for p in ${FRONT_TODO_PORTS:-$TODO_PORT}; do todo_servers+="server 127.0.0.1:$p max_fails=1 fail_timeout=2s; "; done
    # As root, nginx's workers would run as nobody and could not use the temp directory.
    is_root && user="user root;"
    cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
pid $dir/nginx.pid;
error_log $LOGS/front$SUFFIX.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream auth { $auth_servers keepalive 64; keepalive_timeout 2s; }
    upstream todo { $todo_servers keepalive 64; keepalive_timeout 2s; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_next_upstream error timeout;
    server {
        listen 127.0.0.1:$port;
        location /v1/auth/ { proxy_pass http://auth; }
        location /oauth/ { proxy_pass http://auth; }
        location /.well-known/ { proxy_pass http://auth; }
        location / { proxy_pass http://todo; }
        # nginx's own answer: a probe of the front that marks no upstream as failed.
        location = /front-alive { return 204; }
    }
}
EOF
    start_service "front$SUFFIX" "$port" /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
    local i
    for i in $(seq 1 50); do
        # Not through to a service: one not started yet would be left alone for fail_timeout.
        curl -fsS -o /dev/null "http://127.0.0.1:$port/front-alive" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nginx (the front) did not start; see $LOGS/front$SUFFIX.log"
}

# --- the services ----------------------------------------------------------------------

# The end-to-end stack's access-token lifetime: the browser test waits it out twice.
E2E_ACCESS_TOKEN_TTL_SECS=60

load_secrets() {
    local file="$DEV/secrets.env"
    if [ ! -f "$file" ]; then
        (umask 077 && printf 'DEV_KEY_ENCRYPTION_KEY=%s\n' "$(head -c 32 /dev/urandom | base64)" >"$file")
    fi
    # Added later: a checkout that already has the file gets the new key appended.
    if ! grep -q '^DEV_AUDIT_HMAC_KEY=' "$file"; then
        printf 'DEV_AUDIT_HMAC_KEY=%s\n' "$(head -c 32 /dev/urandom | base64)" >>"$file"
    fi
    # shellcheck disable=SC1090
    source "$file"
}

# The environment each service runs with locally; variables already set win. Migrations run
# as the database owner; the auth service runs as auth_service_app, which may not update or
# delete audit rows (the role is created by the migrations).
auth_env() {
    AUTH_ENV=(
        AUTH_DATABASE_URL="${AUTH_DATABASE_URL:-postgres://auth_service_app@127.0.0.1:$PG_PORT/$AUTH_DB}"
        AUTH_REDIS_URL="${AUTH_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"
        AUTH_LISTEN_ADDR="${AUTH_LISTEN_ADDR:-127.0.0.1:$AUTH_PORT}"
        AUTH_ISSUER="${AUTH_ISSUER:-http://127.0.0.1:$AUTH_PORT}"
        AUTH_KEY_ENCRYPTION_KEY="${AUTH_KEY_ENCRYPTION_KEY:-$DEV_KEY_ENCRYPTION_KEY}"
        AUTH_AUDIT_HMAC_KEY="${AUTH_AUDIT_HMAC_KEY:-$DEV_AUDIT_HMAC_KEY}"
        AUTH_CORS_ALLOWED_ORIGINS="${AUTH_CORS_ALLOWED_ORIGINS:-http://localhost:$SPA_PORT,http://127.0.0.1:$SPA_PORT}"
        # Development: every client shares one loopback ip, so per-ip budgets are wider than
        # the production defaults; limits and throttling still apply.
        AUTH_RATE_LOGIN_IP="${AUTH_RATE_LOGIN_IP:-1000/60s}"
        AUTH_RATE_LOGIN_ACCOUNT="${AUTH_RATE_LOGIN_ACCOUNT:-30/60s}"
        AUTH_RATE_SIGNUP_IP="${AUTH_RATE_SIGNUP_IP:-1000/60s}"
        AUTH_RATE_REFRESH_IP="${AUTH_RATE_REFRESH_IP:-600/60s}"
        AUTH_RATE_TOKEN_IP="${AUTH_RATE_TOKEN_IP:-600/60s}"
        AUTH_THROTTLE_IP_FAILURES="${AUTH_THROTTLE_IP_FAILURES:-20}"
        AUTH_THROTTLE_ACCOUNT_FAILURES="${AUTH_THROTTLE_ACCOUNT_FAILURES:-50}"
        # Mail goes to the stack's SMTP sink (deploy/dev mail); its links to the SPA.
        AUTH_SMTP_URL="${AUTH_SMTP_URL:-smtp://127.0.0.1:$SMTP_PORT}"
        AUTH_MAIL_FROM="${AUTH_MAIL_FROM:-Local auth <no-reply@localhost>}"
        AUTH_PUBLIC_APP_URL="${AUTH_PUBLIC_APP_URL:-http://127.0.0.1:$SPA_PORT}"
    )
    if [ "$STACK" != dev ]; then
        # The end-to-end and benchmark stacks: keys of their own in the shared Redis; limits
        # out of the way of fuzzers that log in again after every revoking call, and of load.
        local wide=100000000/60s
        AUTH_ENV+=(
            AUTH_REDIS_PREFIX="$STACK:"
            AUTH_RATE_LOGIN_IP=$wide
            AUTH_RATE_LOGIN_ACCOUNT=$wide
            AUTH_RATE_SIGNUP_IP=$wide
            AUTH_RATE_REFRESH_IP=$wide
            AUTH_RATE_REFRESH_SESSION=$wide
            AUTH_RATE_TOKEN_IP=$wide
            AUTH_RATE_TOKEN_CLIENT=$wide
            AUTH_RATE_PASSWORD_CHANGE=$wide
            AUTH_RATE_RESET_IP=$wide
            AUTH_RATE_RESET_ACCOUNT=$wide
            AUTH_RATE_RESET_CONFIRM_IP=$wide
            AUTH_RATE_VERIFY_IP=$wide
            AUTH_RATE_VERIFY_RESEND=$wide
            AUTH_RATE_EMAIL_CHANGE=$wide
            AUTH_RATE_MFA_CHANGE=$wide
            AUTH_THROTTLE_IP_FAILURES=100000
            AUTH_THROTTLE_ACCOUNT_FAILURES=100000
        )
    fi
    if [ "$STACK" = e2e ]; then
        # Tokens that expire within a browser test (a minute, no leeway).
        AUTH_ENV+=(AUTH_ACCESS_TOKEN_TTL_SECS="$E2E_ACCESS_TOKEN_TTL_SECS" AUTH_CLOCK_LEEWAY_SECS=0)
    fi
    if [ "$STACK" = replicas ]; then
        # Behind nginx (the only trusted proxy), one issuer for every replica, and the
        # production login limits and throttling: the suite checks them across replicas
        # from addresses of its own (127.0.0.x). Requests are not logged one by one.
        AUTH_ENV+=(
            AUTH_TRUSTED_PROXIES=127.0.0.1/32
            AUTH_ISSUER="http://127.0.0.1:$FRONT_PORT"
            AUTH_RATE_LOGIN_IP=30/60s
            AUTH_RATE_LOGIN_ACCOUNT=10/60s
            AUTH_THROTTLE_IP_FAILURES=5
            AUTH_THROTTLE_ACCOUNT_FAILURES=20
            AUTH_LOG_LEVEL="warn,shared_edge::server=info"
        )
    fi
    if [ "$STACK" = bench ]; then
        # Production hashing; tokens that outlive a run; no log line per request; the purge
        # only when the benchmark runs it (`auth-service purge`, timed at size with --grow).
        AUTH_ENV+=(AUTH_ACCESS_TOKEN_TTL_SECS=3600 AUTH_LOG_LEVEL=warn AUTH_PURGE_INTERVAL_SECS=0 AUTH_SMTP_URL=)
    fi
}

todo_env() {
    TODO_ENV=(
        TODO_DATABASE_URL="${TODO_DATABASE_URL:-postgres://postgres@127.0.0.1:$PG_PORT/$TODO_DB}"
        TODO_REDIS_URL="${TODO_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"
        TODO_LISTEN_ADDR="${TODO_LISTEN_ADDR:-127.0.0.1:$TODO_PORT}"
        TODO_JWKS_URL="${TODO_JWKS_URL:-http://127.0.0.1:$AUTH_PORT/.well-known/jwks.json}"
        TODO_ISSUER="${TODO_ISSUER:-http://127.0.0.1:$AUTH_PORT}"
        TODO_CORS_ALLOWED_ORIGINS="${TODO_CORS_ALLOWED_ORIGINS:-http://localhost:$SPA_PORT,http://127.0.0.1:$SPA_PORT}"
    )
    if [ "$STACK" != dev ]; then
        TODO_ENV+=(TODO_REDIS_PREFIX="$STACK:" TODO_RATE_WRITE_USER=100000000/60s)
    fi
    if [ "$STACK" = e2e ]; then
        TODO_ENV+=(TODO_CLOCK_LEEWAY_SECS=0)
    fi
    if [ "$STACK" = replicas ]; then
        TODO_ENV+=(
            TODO_TRUSTED_PROXIES=127.0.0.1/32
            TODO_ISSUER="http://127.0.0.1:$FRONT_PORT"
            TODO_JWKS_URL="http://127.0.0.1:$FRONT_PORT/.well-known/jwks.json"
            TODO_LOG_LEVEL="warn,shared_edge::server=info"
            TODO_MAX_TODOS_PER_OWNER=1000000
        )
    fi
    if [ "$STACK" = bench ]; then
        TODO_ENV+=(TODO_MAX_TODOS_PER_OWNER=100000000 TODO_DATABASE_POOL_SIZE=32 TODO_LOG_LEVEL=warn)
    fi
}

start_service() {
    local name="$1" port="$2"
    shift 2
    mkdir -p "$RUN" "$LOGS"
    if pid_alive "$RUN/$name.pid"; then
        say "$name-service already running (pid $(cat "$RUN/$name.pid")); restarting with the new build"
        stop_pidfile "$name"
    fi
    port_in_use "$port" && die "port $port is taken; stop what uses it or set DEV_$(echo "$name" | tr a-z A-Z)_PORT"
    nohup setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
    # Not this shell's job: a fault test's kill -9 is not reported as "Killed" here.
    disown
}

wait_ready() {
    local name="$1" port="$2" i
    for i in $(seq 1 120); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
            return 0
        fi
        if ! pid_alive "$RUN/$name.pid"; then
            tail -n 20 "$LOGS/$name.log" >&2 || true
            die "$name-service exited; see $LOGS/$name.log"
        fi
        sleep 0.5
    done
    die "$name-service did not become ready in 60s; see $LOGS/$name.log"
}

stop_pidfile() {
    local name="$1" file="$RUN/$1.pid" i
    STOP_KILLED=0
    pid_alive "$file" || {
        rm -f "$file"
        return 0
    }
    local pid
    pid="$(cat "$file")"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name did not stop within 30 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        STOP_KILLED=1
    fi
    rm -f "$file"
}
