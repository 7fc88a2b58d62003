#!/usr/bin/env python3
"""The load side of `deploy/dev bench`: scenarios driven by wrk against a running stack,
and PostgreSQL's own rates (pgbench, same server, same concurrency) measured in the same run,
interleaved with the scenarios because these machines drift. Prints a table and writes it to
--report. Standard library only."""

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

PASSWORD = "bench-correct-horse-battery"
CONNECTIONS = 32
OWNERS = 32
# The mixed load: this many users, each making one TODO request per 10 s of simulated use and
# refreshing every 15 minutes, so one refresh per 90 TODO requests.
MIXED_USERS = 1000
REFRESH_EVERY = 90


def call(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def users(auth, n):
    """n new accounts, each logged in once: their emails and token pairs."""
    out = []
    for _ in range(n):
        email = f"bench-{uuid.uuid4().hex}@example.com"
        status, body = call("POST", f"{auth}/v1/auth/signup", {"email": email, "password": PASSWORD})
        assert status == 201, (status, body)
        out.append((email, login(auth, email)))
    return out


def login(auth, email):
    status, body = call("POST", f"{auth}/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, (status, body)
    return body


def many_users(auth, pg, auth_db, n):
    """n accounts, each logged in once through the API: one signed up through the API, the
    others copies of it made straight in PostgreSQL (same password hash, so the signups'
    n argon2 hashes are not paid again). Their token pairs and one todo each."""
    tag = uuid.uuid4().hex[:8]
    first = f"mixed-{tag}-0@example.com"
    status, body = call("POST", f"{auth}/v1/auth/signup", {"email": first, "password": PASSWORD})
    assert status == 201, (status, body)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{pg}/{auth_db}", "-c", f"""
        INSERT INTO users (id, email, password_hash)
        SELECT gen_random_uuid(), 'mixed-{tag}-' || g || '@example.com', u.password_hash
        FROM generate_series(1, {n - 1}) g, users u WHERE u.email = '{first}'"""],
        check=True, capture_output=True)
    return [f"mixed-{tag}-{i}@example.com" for i in range(n)]


def log_in_all(auth, todo, emails):
    """Each account logged in (4 at a time: argon2 runs on every core) with one todo of its
    own: [(token pair, todo id)]."""
    def one(email):
        pair = login(auth, email)
        status, created = call("POST", f"{todo}/v1/todos", {"title": "mixed"}, pair["access_token"])
        assert status == 201, (status, created)
        return pair, created["id"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, emails))


def lua_mixed(sessions):
    """An SPA's traffic through the front, per user: 70 % a page of 20 todos, 15 % one
    todo, 10 % a PATCH, 5 % a create, and every REFRESH_EVERY-th request a refresh whose
    answer replaces the user's tokens (their session names the user's todo)."""
    items = [f"{p['access_token']} {p['refresh_token']} {p['session_id']} {todo}"
             for p, todo in sessions]
    quoted = ", ".join(json.dumps(i) for i in items)
    return f"""
local all = {{{quoted}}}
local every = {REFRESH_EVERY}
{LUA_THREAD_SHARES}local todo_of = {{}}
function init(args)
  for k, item in ipairs(all) do
    if k % 2 == index then
      local a, r, s, t = item:match("(%S+) (%S+) (%S+) (%S+)")
      todo_of[s] = t
      table.insert(pool, {{a = a, r = r, t = t, n = math.random(0, every - 1)}})
    end
  end
end
function request()
  local u = table.remove(pool, 1)
  u.n = u.n + 1
  if u.n >= every then
    return wrk.format("POST", "/v1/auth/refresh", {{["Content-Type"] = "application/json"}},
      '{{"refresh_token":"' .. u.r .. '"}}')
  end
  table.insert(pool, u)
  local h = {{["Authorization"] = "Bearer " .. u.a, ["Content-Type"] = "application/json"}}
  local p = math.random(100)
  if p <= 70 then return wrk.format("GET", "/v1/todos?limit=20", h)
  elseif p <= 85 then return wrk.format("GET", "/v1/todos/" .. u.t, h)
  elseif p <= 95 then return wrk.format("PATCH", "/v1/todos/" .. u.t, h, '{{"done":true}}')
  else return wrk.format("POST", "/v1/todos", h, '{{"title":"mixed"}}') end
end
function response(status, headers, body)
  local s = body:match('"session_id":"([^"]+)"')
  if s and todo_of[s] then
    local a = body:match('"access_token":"([^"]+)"')
    local r = body:match('"refresh_token":"([^"]+)"')
    if a and r then table.insert(pool, {{a = a, r = r, t = todo_of[s], n = 0}}) end
  end
end
"""


def revocation_probes(auth, todo, email, seconds):
    """While the mixed load runs: log in, see the token work, log out, then ask the TODO
    service back to back (one kept-alive connection) until it answers 401. Returns the
    milliseconds from logout's 204 to that first 401, one per probe."""
    host, port = todo.removeprefix("http://").split(":")
    found = []
    stop_at = time.monotonic() + seconds

    def status(conn, token):
        conn.request("GET", "/v1/todos?limit=1", headers={"authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def run():
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while time.monotonic() < stop_at:
            token = login(auth, email)["access_token"]
            assert status(conn, token) == 200
            code, body = call("POST", f"{auth}/v1/auth/logout", token=token)
            assert code == 204, (code, body)
            logged_out = time.monotonic()
            while (code := status(conn, token)) != 401:
                assert code == 200, code
                if time.monotonic() - logged_out > 5:
                    found.append(float("inf"))
                    break
            else:
                found.append((time.monotonic() - logged_out) * 1000)
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return lambda: (thread.join(), found)[1]


def lua(tokens, method, paths, body=None):
    """A wrk script: each request takes the next token (and path) in turn."""
    quoted = ", ".join(json.dumps(t) for t in tokens)
    path_list = ", ".join(json.dumps(p) for p in paths)
    body_line = f"wrk.body = {json.dumps(json.dumps(body))}" if body is not None else ""
    return f"""
local tokens = {{{quoted}}}
local paths = {{{path_list}}}
local i = 0
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{body_line}
request = function()
  i = i + 1
  local h = {{["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1], ["Content-Type"] = "application/json"}}
  return wrk.format(nil, paths[(i % #paths) + 1], h)
end
"""


# Each wrk thread numbers itself (`index`) in `setup`, and keeps the items of `all` whose
# position has its parity in its own `pool`.
LUA_THREAD_SHARES = """local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end
local pool = {}
"""


def lua_rotating(items, make_request, take_from_response):
    """A wrk script whose requests each spend one item of a pool (a refresh token, a todo
    with its version) that the response gives back renewed. Each wrk thread has its own
    share of the pool, larger than its connections, so the pool never runs dry."""
    quoted = ", ".join(json.dumps(i) for i in items)
    return f"""
local all = {{{quoted}}}
{LUA_THREAD_SHARES}function init(args)
  for k, item in ipairs(all) do
    if k % 2 == index then table.insert(pool, item) end
  end
end
function request()
  local item = table.remove(pool, 1)
  {make_request}
end
function response(status, headers, body)
  {take_from_response}
end
"""


def lua_refresh(refresh_tokens):
    return lua_rotating(
        refresh_tokens,
        'return wrk.format("POST", "/v1/auth/refresh", {["Content-Type"] = "application/json"}, '
        '\'{"refresh_token":"\' .. item .. \'"}\')',
        'local t = body:match(\'"refresh_token":"([^"]+)"\')\n  if t then table.insert(pool, t) end',
    )


def lua_patch(token, todos):
    items = [f"{t['id']} {t['version']}" for t in todos]
    return lua_rotating(
        items,
        'local id, v = item:match("(%S+) (%S+)")\n'
        '  return wrk.format("PATCH", "/v1/todos/" .. id, {["Content-Type"] = "application/json", '
        f'["Authorization"] = "Bearer {token}", ["If-Match"] = \'"\' .. v .. \'"\'}}, '
        '\'{"done":true}\')',
        'local id = body:match(\'"id":"([^"]+)"\')\n'
        '  local v = body:match(\'"version":(%d+)\')\n'
        '  if id and v then table.insert(pool, id .. " " .. v) end',
    )


def lua_login(email):
    body = json.dumps({"email": email, "password": PASSWORD})
    return f"""
wrk.method = "POST"
wrk.path = "/v1/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {json.dumps(body)}
"""


def stat_fields(pid):
    """/proc/PID/stat after the command name: [state, ppid, ...]; utime, stime, cutime and
    cstime are [11:15], in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    return sum(int(x) for x in stat_fields(pid)[11:13]) / TICK


def tree_cpu_seconds(root):
    """CPU seconds of a process and its children (PostgreSQL: the postmaster and every
    backend): the live ones' own, and the exited ones' that the root has reaped (its
    cutime and cstime; pgbench's backends exit just before a scenario)."""
    total = sum(int(x) for x in stat_fields(root)[11:15]) / TICK
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = stat_fields(entry)
        except OSError:
            continue
        if int(fields[1]) == root:
            total += sum(int(x) for x in fields[11:13]) / TICK
    return total


def machine_ticks():
    """(idle, all) clock ticks of every CPU since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks[:8])


def rss_mib(pid, field="VmHWM"):
    """A process's peak (VmHWM) or current (VmRSS) resident memory."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(f"not a wrk latency: {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url, script, seconds, pids, beside):
    """One scenario under wrk. `pids`: the auth and TODO services; `beside`: PostgreSQL's
    postmaster and Redis, whose CPU per request is reported too, with the machine's idle
    share, so that each row shows where the machine's time went."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    sample = lambda: ([cpu_seconds(p) for p in pids] + [tree_cpu_seconds(beside[0]),
                                                        cpu_seconds(beside[1])])
    before, ticks_before = sample(), machine_ticks()
    run = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True, text=True,
    )
    out = run.stdout
    if run.returncode != 0:
        sys.exit(f"bench: wrk failed ({run.returncode}) on {url} with the script {f.name}:\n"
                 f"{run.stdout}\n{run.stderr}")
    after, ticks_after = sample(), machine_ticks()
    os.unlink(f.name)
    try:
        result = parse_wrk(out, total_cpu=[a - b for a, b in zip(after, before)])
        result["peak"] = [rss_mib(p) for p in pids]
        idle, every = (a - b for a, b in zip(ticks_after, ticks_before))
        result["idle"] = idle / max(every, 1)
        return result
    except (AttributeError, ValueError) as err:
        sys.exit(f"bench: cannot read wrk's output ({err}):\n{out}")


def parse_wrk(out, total_cpu):
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: (.*)", out)
    cpu = [c * 1000 / max(total, 1) for c in total_cpu]
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "cpu": cpu,
            "socket": sock.group(1) if sock else ""}


def redis_pings(port, seconds):
    """Redis alone: PING round trips per second from 32 connections (redis-benchmark)."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CONNECTIONS),
         "-n", str(10_000 * seconds), "-t", "ping", "--csv"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r'"PING_MBULK","([\d.]+)"', out).group(1))


def psql(pg, db, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{pg}/{db}", "-c", sql],
                   check=True, capture_output=True)


def pgbench(pg, db, script, seconds):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["pgbench", "-n", f"-c{CONNECTIONS}", "-j2", f"-T{seconds}", "-f", f.name, f"{pg}/{db}"],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(f.name)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def revocation_lines(found):
    """The revocation probes' figures: logout's 204 to the TODO service's first 401."""
    if not found:
        return ["", "Revocation: no probe finished during the mixed load."]
    ms = sorted(found)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return ["", f"Revocation under the mixed load, from logout's 204 to the TODO service's first "
            f"401 (asked back to back): p50 {ms[len(ms) // 2]:.1f} ms, p99 {p99:.1f} ms, max "
            f"{ms[-1]:.1f} ms over {len(ms)} logouts; floor: p99 under 100 ms"
            f"{'' if p99 < 100 else ' (NOT MET)'}."]


def purge_beside(auth_bin, scenario, run, quiet_p99):
    """`auth-service purge` of what the grown data set left dead, with a scenario on the
    tables it deletes from under load beside it: the purge's batches and longest batch
    (the longest any row lock was held), and the scenario's p99 meanwhile."""
    started = time.monotonic()
    purge = subprocess.Popen([auth_bin, "purge"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    loaded = run(scenario)
    loaded_for = time.monotonic() - started
    out, err = purge.communicate()
    took = time.monotonic() - started
    if purge.returncode != 0:
        sys.exit(f"bench: auth-service purge failed:\n{out}\n{err}")
    overlap = ("the whole scenario ran inside the purge" if took >= loaded_for else
               f"the purge ended {loaded_for - took:.0f} s before the scenario did")
    return ["", f"The background purge at this size (`auth-service purge`, {took:.1f} s; "
            "each batch one statement of at most 1,000 rows, 20 ms apart, SKIP LOCKED):", "",
            *[f"- {line}" for line in out.strip().splitlines()], "",
            f"{scenario[0]} beside it: {loaded['rps']:,.0f} req/s, p99 {loaded['p99']:.1f} ms "
            f"({loaded['p99'] / quiet_p99:.2f}x its p99 on the grown data without the purge; "
            f"{overlap})."]


def grown(args, scenarios, small, pids, account, todo, build_scenarios, run, refresh_scenario):
    """Seed to production size, run every scenario again, and report p99 against the small
    data set's, and the plans of the hot queries."""
    import base64
    import grow
    started = time.time()
    grow.seed(args.pg, args.todo_db, args.auth_db)
    seeded_in = time.time() - started
    size = grow.sizes(args.pg, args.todo_db, args.auth_db)
    big = [run(scenario) for scenario in build_scenarios()]
    payload = account[1]["access_token"].split(".")[1]
    owner = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    plans = grow.explain(args.pg, args.todo_db, args.auth_db, owner, todo["id"], account[0])
    lines = [
        "",
        f"Grown (seeded in {seeded_in:.0f} s, straight into PostgreSQL): {size['todos']:,} todos, "
        f"{size['users']:,} accounts, {size['sessions']:,} sessions, "
        f"{size['refresh_tokens']:,} refresh tokens. Every scenario again:",
        "",
        "| scenario | req/s small | req/s grown | p99 ms small | p99 ms grown | p99 grown / small | within 1.5x |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for (name, *_), a, b in zip(scenarios, small, big):
        ratio = b["p99"] / a["p99"] if a["p99"] else float("inf")
        lines.append(f"| {name} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['p99']:.1f} | "
                     f"{b['p99']:.1f} | {ratio:.2f} | {'yes' if ratio <= 1.5 else 'NO'} |")
    lines += revocation_lines(big[-1]["beside"])
    refresh_at = [n for n, *_ in scenarios].index("refresh")
    lines += purge_beside(args.auth_bin, refresh_scenario(), run, big[refresh_at]["p99"])
    lines += ["", "Plans of the hot queries at that size (EXPLAIN ANALYZE, BUFFERS):", ""]
    for name, plan in plans.items():
        lines += [f"{name}:", "", "```", plan.rstrip(), "```", ""]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", required=True)
    ap.add_argument("--todo", required=True)
    ap.add_argument("--front", required=True, help="nginx in front of both (the mixed load)")
    ap.add_argument("--pg", required=True, help="PostgreSQL URL without a database")
    ap.add_argument("--todo-db", required=True)
    ap.add_argument("--pids", required=True, help="the auth and TODO services' pid files")
    ap.add_argument("--report", required=True)
    ap.add_argument("--auth-db", required=True)
    ap.add_argument("--auth-bin", required=True, help="the auth service's binary (its purge)")
    ap.add_argument("--redis-port", required=True, type=int)
    ap.add_argument("--pg-pid", required=True, type=int, help="PostgreSQL's postmaster")
    ap.add_argument("--redis-pid", required=True, type=int)
    ap.add_argument("--grow", action="store_true",
                    help="then seed a million todos, sessions and refresh tokens straight into "
                         "PostgreSQL, run every scenario again, and show the hot queries' plans")
    ap.add_argument("--argon2", required=True,
                    help="the argon2_rate example: argon2id alone on every core, hashes/s")
    ap.add_argument("--quick", action="store_true", help="5 s per scenario")
    ap.add_argument("--smoke", action="store_true",
                    help="2 s per scenario on a debug build (CI): the harness runs and every "
                         "scenario answers as it should; the figures mean nothing")
    args = ap.parse_args()
    seconds = 2 if args.smoke else 5 if args.quick else 20
    pids = [int(open(p).read().strip()) for p in args.pids.split(",")]

    # PostgreSQL's own rates, on a table shaped like todos (same indexes), in a scratch database.
    scratch = "bench_limits"
    subprocess.run(["psql", "-q", f"{args.pg}/postgres", "-c", f"DROP DATABASE IF EXISTS {scratch}"],
                   check=True, capture_output=True)
    subprocess.run(["psql", "-q", f"{args.pg}/postgres", "-c", f"CREATE DATABASE {scratch}"],
                   check=True, capture_output=True)
    psql(args.pg, scratch, """
        CREATE TABLE rows (id uuid PRIMARY KEY, owner_id text NOT NULL, title text NOT NULL,
          description text, done boolean NOT NULL DEFAULT false, due_at timestamptz,
          version bigint NOT NULL DEFAULT 1, created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(), n bigint UNIQUE);
        CREATE INDEX ON rows (owner_id, created_at, id);
        CREATE INDEX ON rows (owner_id, due_at, id);
        CREATE INDEX ON rows (created_at, id);
        INSERT INTO rows (id, owner_id, title, n)
          SELECT gen_random_uuid(), 'o' || (g % 32), 'seed', g FROM generate_series(1, 10000) g;
        ANALYZE rows;""")
    insert_sql = ("INSERT INTO rows (id, owner_id, title) "
                  "VALUES (gen_random_uuid(), 'o' || (random() * 31)::int, 'bench');\n")
    select_sql = "\\set n random(1, 10000)\nSELECT * FROM rows WHERE n = :n;\n"

    measure = {
        "insert": lambda: pgbench(args.pg, scratch, insert_sql, seconds),
        "select": lambda: pgbench(args.pg, scratch, select_sql, seconds),
        "argon2": lambda: float(subprocess.run([args.argon2, str(min(seconds, 10))],
                                               capture_output=True, text=True,
                                               check=True).stdout),
        "redis": lambda: redis_pings(args.redis_port, seconds),
    }

    accounts = users(args.auth, OWNERS)
    tokens = [pair["access_token"] for _, pair in accounts]
    todos = []
    for i in range(128):
        status, todo = call("POST", f"{args.todo}/v1/todos", {"title": f"seed {i}"}, tokens[0])
        assert status == 201, (status, todo)
        todos.append(todo)
    refreshers = users(args.auth, 4)
    # Logins of an account of its own too (each login past the session cap ends its oldest).
    login_account = users(args.auth, 1)[0][0]
    # The mixed load's users, and the account the revocation probes log in and out.
    crowd = many_users(args.auth, args.pg, args.auth_db, 20 if args.smoke else MIXED_USERS)
    prober = users(args.auth, 1)[0][0]

    def refresh_scenario():
        # Sessions to refresh, more than the connections (each refresh spends one token), of
        # accounts of their own: a user past AUTH_MAX_SESSIONS_PER_USER loses the oldest
        # sessions, and with them the tokens the other scenarios use.
        refresh_tokens = [login(args.auth, email)["refresh_token"]
                          for email, _ in refreshers for _ in range(CONNECTIONS)]
        return ("refresh", args.auth, lua_refresh(refresh_tokens), "insert", 0.25, None)

    def build_scenarios():
        """The scenarios with fresh state: refresh tokens not yet spent, and the todos'
        current versions (each run spends the one and moves the other on)."""
        current = [call("GET", f"{args.todo}/v1/todos/{t['id']}", token=tokens[0])[1]
                   for t in todos]
        one = tokens[:1]
        by_id = [f"/v1/todos/{t['id']}" for t in todos[:100]]
        # Each user logged in afresh: the last run spent their refresh tokens.
        sessions = log_in_all(args.auth, args.todo, crowd)
        owners = [pair["access_token"] for pair, _ in sessions]
        # (name, service, wrk script, the limit it is held against, floor, what runs beside)
        return [
            ("login", args.auth, lua_login(login_account), "argon2", 0.85, None),
            refresh_scenario(),
            ("POST /v1/todos, one owner", args.todo, lua(one, "POST", ["/v1/todos"], {"title": "bench"}), "insert", 0.40, None),
            (f"POST /v1/todos, {len(owners):,} owners", args.todo, lua(owners, "POST", ["/v1/todos"], {"title": "bench"}), "insert", 0.40, None),
            ("PATCH /v1/todos/{id} with If-Match", args.todo, lua_patch(tokens[0], current), "insert", None, None),
            ("GET /v1/todos/{id}", args.todo, lua(one, "GET", by_id), "select", 0.25, None),
            ("GET /v1/todos?limit=20", args.todo, lua(one, "GET", ["/v1/todos?limit=20"]), "select", 0.15, None),
            ("GET /v1/todos?limit=100", args.todo, lua(one, "GET", ["/v1/todos?limit=100"]), "select", 0.05, None),
            ("bad token", args.todo, lua(["not.a.token"], "GET", by_id), "by id", 2.0, None),
            (f"mixed SPA-like load, {len(sessions):,} users, through nginx", args.front,
             lua_mixed(sessions), None, None,
             lambda: revocation_probes(args.auth, args.todo, prober, seconds)),
        ]

    def run(scenario):
        """One scenario under wrk, with what runs beside it (its results under "beside")."""
        _, url, script, _, _, beside = scenario
        waiting = beside() if beside else None
        result = wrk(url, script, seconds, pids, (args.pg_pid, args.redis_pid))
        if waiting:
            result["beside"] = waiting()
        return result

    # Each limit is measured right before every scenario held against it, and all of them
    # once more at the end: a scenario's ratio is to the mean of the run just before it and
    # the next run of the same limit, so the machine's drift (a fifth or more here, minute
    # to minute) reaches the scenario and its limit alike.
    scenarios = build_scenarios()
    runs = {kind: [] for kind in measure}
    runs["redis"].append(measure["redis"]())  # held against no scenario: the start and the end
    results, beside_runs = [], []
    for scenario in scenarios:
        kind = scenario[3]
        if kind in measure:
            runs[kind].append(measure[kind]())
            beside_runs.append((kind, len(runs[kind]) - 1))
        else:
            beside_runs.append(None)
        results.append(run(scenario))
    for kind in measure:
        runs[kind].append(measure[kind]())
    mean = lambda xs: sum(xs) / len(xs)
    by_id = results[[n for n, *_ in scenarios].index("GET /v1/todos/{id}")]["rps"]
    limits = [mean(runs[b[0]][b[1]:b[1] + 2]) if b else by_id for b in beside_runs]
    bound = {"insert": "of pgbench insert", "select": "of pgbench select",
             "argon2": "of argon2 alone", "by id": "x GET by id"}
    shown = lambda kind, fmt: (f"{fmt.format(mean(runs[kind]))} ({len(runs[kind])} runs, "
                               f"{fmt.format(min(runs[kind]))} to {fmt.format(max(runs[kind]))})")

    lines = [
        *(["SMOKE RUN on a debug build: these figures are not a benchmark.", ""] if args.smoke else []),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.platform()}; {seconds} s per scenario, wrk -c{CONNECTIONS}.",
        f"Limits, each measured right before every scenario held against it and once more at "
        f"the end (a scenario's ratio is to the runs just before and after it): PostgreSQL "
        f"alone (pgbench -c{CONNECTIONS}, same server) single-row insert "
        f"{shown('insert', '{:,.0f}')} tps, point select {shown('select', '{:,.0f}')} tps; "
        f"argon2id alone on every core at the configured parameters "
        f"{shown('argon2', '{:,.1f}')} hashes/s; Redis alone (redis-benchmark PING, "
        f"-c{CONNECTIONS}) {shown('redis', '{:,.0f}')} round trips/s.",
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx | CPU ms/req auth, todo, PostgreSQL, Redis | machine idle | peak RSS MiB auth, todo | ratio to its limit | floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, _, _, kind, floor, _), r, limit in zip(scenarios, results, limits):
        ratio = r["rps"] / limit if kind else 0
        shown_ratio = f"{ratio:.2f}{bound[kind]}" if kind == "by id" else f"{ratio:.0%} {bound[kind]}" if kind else "none set"
        if floor is None:
            shown_floor, met = "none set", ""
        else:
            shown_floor = f"{floor:.1f}x" if kind == "by id" else f"{floor:.0%}"
            met = "" if ratio >= floor else " (below)"
        expected_errors = name == "bad token"
        errors = "all (401)" if expected_errors and r["errors"] else str(r["errors"])
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {errors} | "
            f"{', '.join(f'{c:.2f}' for c in r['cpu'])} | {r['idle']:.0%} | "
            f"{r['peak'][0]:.0f}, {r['peak'][1]:.0f} | "
            f"{shown_ratio}{met} | {shown_floor} |"
        )
    lines += revocation_lines(results[-1]["beside"])
    if args.grow:
        lines += grown(args, scenarios, results, pids, accounts[0], todos[0],
                       build_scenarios, run, refresh_scenario)
    lines.append("")
    lines.append(f"Peak RSS: auth-service {rss_mib(pids[0]):.0f} MiB, "
                 f"todo-service {rss_mib(pids[1]):.0f} MiB (now: {rss_mib(pids[0], 'VmRSS'):.0f} "
                 f"and {rss_mib(pids[1], 'VmRSS'):.0f} MiB).")
    report = "\n".join(lines)
    print(report)
    with open(args.report, "w") as f:
        f.write(report + "\n")
    failures = [n for (n, *_), r in zip(scenarios, results)
                if r["errors"] and n != "bad token"]
    if failures:
        print(f"bench: unexpected error answers in: {', '.join(failures)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
