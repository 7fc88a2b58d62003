"""Helpers of the replicas suite: HTTP calls from addresses of their own, accounts, checks
and the report, loops of requests, and the hands that cause faults (deploy/dev fault)."""

import base64
import http.client
import json
import os
import shlex
import subprocess
import threading
import time
import uuid

PASSWORD = "replicas-correct-horse-battery"
HERE = os.path.dirname(os.path.abspath(__file__))

# The mixed load's script is the benchmark's (an SPA's traffic, refreshes replacing tokens).
failures = []
report = []


def check(ok, what):
    line = f"{'ok  ' if ok else 'FAIL'} {what}"
    print(line, flush=True)
    report.append(f"- {'ok' if ok else '**FAIL**'}: {what}")
    if not ok:
        failures.append(what)


def call(base, method, path, body=None, token=None, source=None, headers=None):
    """One request on a connection of its own: (status, parsed body, headers)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30,
                                      source_address=(source, 0) if source else None)
    hdrs = {"content-type": "application/json"}
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    try:
        conn.request(method, path, None if body is None else json.dumps(body), hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed, dict(resp.getheaders())
    finally:
        conn.close()


def source(n):
    """The n-th client address (127.0.1.0 upwards; 127.0.0.1 is nginx, the trusted proxy)."""
    return f"127.0.{1 + n // 250}.{n % 250 + 1}"


def log_files(args):
    """nginx's error log and every replica's log."""
    logs = os.path.join(os.path.dirname(args.report), "..", "logs")
    return [os.path.join(logs, n) for n in sorted(os.listdir(logs))
            if n.endswith(".log") and ("_replicas-" in n or n == "front_replicas.log")]


def kid_of(token):
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def psql(args, sql, db=None):
    # On stdin, not as an argument: a statement naming every acknowledged create is longer
    # than one argument may be (128 KiB on Linux).
    out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                          f"{args.pg}/{db or args.auth_db}"],
                         input=sql, check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Accounts:
    """Accounts made once: one signed up through the API, the rest copies of it made in
    PostgreSQL (the same password hash, so their signups' hashing is not paid again), each
    logged in from an address of its own batch (the per-address login limit is 30/60s)."""

    def __init__(self, args, n):
        self.args = args
        tag = uuid.uuid4().hex[:8]
        first = f"replicas-{tag}-0@example.com"
        status, body, _ = call(args.front, "POST", "/v1/auth/signup",
                               {"email": first, "password": PASSWORD}, source=source(0))
        assert status == 201, (status, body)
        psql(args, f"""INSERT INTO users (id, email, password_hash)
            SELECT gen_random_uuid(), 'replicas-{tag}-' || g || '@example.com', u.password_hash
            FROM generate_series(1, {n - 1}) g, users u WHERE u.email = '{first}'""")
        self.free = [f"replicas-{tag}-{i}@example.com" for i in range(n)]
        self.next_source = 1000
        self.lock = threading.Lock()

    def take(self, n=1):
        with self.lock:
            out, self.free = self.free[:n], self.free[n:]
            assert len(out) == n, "the suite ran out of accounts"
            return out

    def login(self, email, at=None):
        with self.lock:
            self.next_source += 1
            src = source(self.next_source // 20)
        status, body, _ = call(at or self.args.front, "POST", "/v1/auth/login",
                               {"email": email, "password": PASSWORD}, source=src)
        assert status == 200, (email, status, body)
        return body


def metric_sum(port, name, label_match):
    status, text, _ = call(f"http://127.0.0.1:{port}", "GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith(name + "{") and label_match in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def fault(args, target, action):
    run = subprocess.run(shlex.split(args.fault) + [target, action], capture_output=True, text=True)
    assert run.returncode == 0, f"fault {target} {action}: {run.stdout} {run.stderr}"


def timed(base, method, path, **kw):
    """call() that never raises: (status or 0 for a failed connection, seconds, body)."""
    t = time.monotonic()
    try:
        status, body, _ = call(base, method, path, **kw)
    except (OSError, http.client.HTTPException):
        status, body = 0, None
    return status, time.monotonic() - t, body


def forged_kid(token):
    """The token with its header naming a key nobody has (the signature is not checked
    before the key is looked up)."""
    head, payload, _ = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["kid"] = "unknown-" + uuid.uuid4().hex
    enc = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{enc}.{payload}.{base64.urlsafe_b64encode(os.urandom(64)).rstrip(b'=').decode()}"


class Loop:
    """Run `step` in `n` threads until stopped; each step returns a record kept in order."""

    def __init__(self, n, step):
        self.stop = threading.Event()
        self.records = []
        self.lock = threading.Lock()

        self.crashed = []

        def run(i):
            while not self.stop.is_set():
                try:
                    rec = step(i)
                except Exception as err:  # a client that broke is a failure, not silence
                    self.crashed.append(f"{type(err).__name__}: {err}")
                    return
                with self.lock:
                    self.records.append((time.monotonic(), rec))
        self.threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def finish(self):
        """Stop the clients; their records, after checking none broke or hung."""
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        alive = sum(t.is_alive() for t in self.threads)
        check(not self.crashed and not alive,
              f"every client thread ran to the end (broke: {self.crashed[:2]}, still running: {alive})")
        with self.lock:
            return list(self.records)


