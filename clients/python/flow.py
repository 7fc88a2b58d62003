"""The whole flow, driven through Python clients generated from the services' OpenAPI
documents by openapi-python-client: signup, login, todos with ETag and Idempotency-Key,
pages, refresh, a service client's client-credentials token, logout, a second factor (TOTP:
enrol, confirm, the login's challenge, a recovery code), and errors read as typed problems.

    AUTH_URL=... TODO_URL=... ADMIN_EMAIL=... ADMIN_PASSWORD=... \
        PYTHONPATH=clients/python/generated python clients/python/flow.py

(`deploy/dev e2e` generates the clients and runs it.)
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import time
import uuid

from auth_client import AuthenticatedClient as AuthBearer
from auth_client import Client as AuthAnonymous
from auth_client.api.admin import admin_create_client
from auth_client.api.auth import complete_mfa, login, logout, refresh, signup
from auth_client.api.o_auth import oauth_token
from auth_client.api.users import confirm_totp, enrol_totp, get_me, remove_totp
from auth_client.models import (
    CreateClientRequest,
    LoginRequest,
    MfaChallenge,
    MfaRequest,
    OAuthErrorBody,
    OAuthRequest,
    OAuthToken,
    RefreshRequest,
    Scope,
    SignupRequest,
    TokenPair,
    EnrolTotpRequest,
    TotpCodeRequest,
    TotpEnrolment,
)
from auth_client.models import Problem as AuthProblem
from todo_client import AuthenticatedClient as TodoBearer
from todo_client.api.admin import admin_list_todos
from todo_client.api.todos import create_todo, delete_todo, get_todo, list_todos, update_todo
from todo_client.models import CreateTodo, PageTodo, PatchTodo, Todo
from todo_client.models import Problem as TodoProblem

AUTH = os.environ.get("AUTH_URL", "http://127.0.0.1:8080")
TODO = os.environ.get("TODO_URL", "http://127.0.0.1:8081")


def step(name: str) -> None:
    print(f"python: {name}", flush=True)


def problem(resp, status: int, code: str, kind=TodoProblem):
    """The typed problem of a failed call."""
    assert resp.status_code == status, (resp.status_code, resp.content)
    assert isinstance(resp.parsed, kind), resp.parsed
    assert resp.parsed.code == code, resp.parsed
    return resp.parsed


def tokens(result) -> TokenPair:
    """The tokens of a login (`login.sync` answers TokenPair or MfaChallenge): this flow's
    accounts have no second factor unless it says so, so a challenge fails it, saying so."""
    assert not isinstance(result, MfaChallenge), (
        f"login answered an unexpected MFA challenge (methods: {result.methods})"
    )
    assert isinstance(result, TokenPair), f"login failed: {result}"
    return result


def totp(secret: str, step: int) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s): the code of time step `step` for a base32 secret."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def amr(token: str):
    """The `amr` claim of an access token (its payload read, not verified)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["amr"]


anonymous = AuthAnonymous(base_url=AUTH)
email = f"py-{uuid.uuid4().hex}@example.com"
password = "generated clients speak python"

step("a weak password is a 422 naming the field")
weak = signup.sync_detailed(client=anonymous, body=SignupRequest(email=email, password="password"))
assert problem(weak, 422, "VALIDATION_FAILED", AuthProblem).errors[0].field == "password"

step("signup and login")
created = signup.sync_detailed(client=anonymous, body=SignupRequest(email=email, password=password))
assert created.status_code == 201 and created.parsed.email == email
assert created.parsed.display_name is None
pair = tokens(login.sync(client=anonymous, body=LoginRequest(email=email, password=password)))
assert pair.token_type == "Bearer"
todos = TodoBearer(base_url=TODO, token=pair.access_token)

step("create with an Idempotency-Key, and replay it")
key = f"milk-{email}"
body = CreateTodo(title="Buy milk", description=None)
first = create_todo.sync_detailed(client=todos, body=body, idempotency_key=key)
assert first.status_code == 201, first.content
milk = first.parsed
assert isinstance(milk, Todo) and milk.due_at is None
assert first.headers["location"] == f"/v1/todos/{milk.id}"
again = create_todo.sync_detailed(client=todos, body=body, idempotency_key=key)
assert again.headers["idempotent-replayed"] == "true" and again.parsed.id == milk.id

step("pages of one")
for title in ["Bread", "Eggs"]:
    assert create_todo.sync_detailed(client=todos, body=CreateTodo(title=title)).status_code == 201
titles, cursor = [], None
while True:
    kwargs = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
    page = list_todos.sync(client=todos, **kwargs)
    assert isinstance(page, PageTodo), page
    titles += [t.title for t in page.items]
    cursor = page.next_cursor
    if cursor is None:
        break
assert titles == ["Buy milk", "Bread", "Eggs"], titles

step("read with its ETag, change with If-Match, a stale one is 412")
read = get_todo.sync_detailed(milk.id, client=todos)
etag = read.headers["etag"]
done = update_todo.sync_detailed(milk.id, client=todos, body=PatchTodo(done=True), if_match=etag)
assert done.status_code == 200 and done.parsed.done is True, done.content
stale = update_todo.sync_detailed(milk.id, client=todos, body=PatchTodo(title="x"), if_match=etag)
problem(stale, 412, "PRECONDITION_FAILED")
assert delete_todo.sync_detailed(milk.id, client=todos).status_code == 204
problem(get_todo.sync_detailed(milk.id, client=todos), 404, "NOT_FOUND")

step("refresh rotates; the spent token is reuse")
rotated = refresh.sync(client=anonymous, body=RefreshRequest(refresh_token=pair.refresh_token))
assert isinstance(rotated, TokenPair) and rotated.refresh_token != pair.refresh_token
reused = refresh.sync_detailed(client=anonymous, body=RefreshRequest(refresh_token=pair.refresh_token))
problem(reused, 401, "REFRESH_TOKEN_REUSED", AuthProblem)

step("a service client gets a client-credentials token and reads every owner's todos")
admin_pair = tokens(login.sync(
    client=anonymous,
    body=LoginRequest(email=os.environ["ADMIN_EMAIL"], password=os.environ["ADMIN_PASSWORD"]),
))
admin = AuthBearer(base_url=AUTH, token=admin_pair.access_token)
made = admin_create_client.sync(
    client=admin, body=CreateClientRequest(name="python flow", scopes=[Scope.TODOSADMIN])
)
assert made.scopes == [Scope.TODOSADMIN], made
grant = oauth_token.sync_detailed(
    client=anonymous,
    body=OAuthRequest(
        grant_type="client_credentials",
        client_id=made.client_id,
        client_secret=made.client_secret,
    ),
)
assert isinstance(grant.parsed, OAuthToken), grant.content
service = TodoBearer(base_url=TODO, token=grant.parsed.access_token)
everyone = admin_list_todos.sync(client=service, owner_id=str(created.parsed.id))
assert isinstance(everyone, PageTodo) and len(everyone.items) == 2, everyone
refused = oauth_token.sync_detailed(
    client=anonymous,
    body=OAuthRequest(
        grant_type="client_credentials", client_id=made.client_id, client_secret="wrong"
    ),
)
assert refused.status_code == 401 and isinstance(refused.parsed, OAuthErrorBody), refused.content
assert refused.parsed.error == "invalid_client"

step("log in again (the reuse ended that session), log out, and the TODO service refuses")
problem(list_todos.sync_detailed(client=TodoBearer(base_url=TODO, token=rotated.access_token)),
        401, "TOKEN_REVOKED")
fresh = tokens(login.sync(client=anonymous, body=LoginRequest(email=email, password=password)))
todos = TodoBearer(base_url=TODO, token=fresh.access_token)
assert list_todos.sync_detailed(client=todos).status_code == 200
out = logout.sync_detailed(client=AuthBearer(base_url=AUTH, token=fresh.access_token))
assert out.status_code == 204, out.content
started = time.monotonic()
while True:
    resp = list_todos.sync_detailed(client=todos)
    if resp.status_code == 401:
        problem(resp, 401, "TOKEN_REVOKED")
        break
    assert time.monotonic() - started < 1.0, "refused within a second"
    time.sleep(0.02)

step("a second factor: enrol TOTP, confirm it, and login asks for a code")
credentials = LoginRequest(email=email, password=password)
signed_in = tokens(login.sync(client=anonymous, body=credentials))
assert amr(signed_in.access_token) == ["pwd"]
me = AuthBearer(base_url=AUTH, token=signed_in.access_token)
enrolled = enrol_totp.sync_detailed(client=me, body=EnrolTotpRequest(current_password=password))
assert enrolled.status_code == 200 and isinstance(enrolled.parsed, TotpEnrolment), enrolled.content
secret = enrolled.parsed.secret
assert enrolled.parsed.otpauth_uri.startswith("otpauth://totp/")
assert base64.b64decode(enrolled.parsed.qr_png)[:8] == b"\x89PNG\r\n\x1a\n"
# A code is good once: each one used is of a later time step than the last.
last = int(time.time()) // 30
wrong = confirm_totp.sync_detailed(client=me, body=TotpCodeRequest(code=totp(secret, last + 5)))
assert problem(wrong, 422, "VALIDATION_FAILED", AuthProblem).errors[0].field == "code"
confirmed = confirm_totp.sync(client=me, body=TotpCodeRequest(code=totp(secret, last)))
recovery = confirmed.recovery_codes
assert len(recovery) == 10, confirmed
assert get_me.sync(client=me).mfa_enabled is True
problem(enrol_totp.sync_detailed(client=me, body=EnrolTotpRequest(current_password=password)), 409, "CONFLICT", AuthProblem)


def challenge() -> str:
    answer = login.sync(client=anonymous, body=credentials)
    assert isinstance(answer, MfaChallenge), f"a challenge, no tokens: {answer}"
    assert answer.mfa_required is True and sorted(answer.methods) == ["recovery_code", "totp"]
    return answer.mfa_token


mfa_token = challenge()
refused = complete_mfa.sync_detailed(
    client=anonymous, body=MfaRequest(mfa_token=mfa_token, code="000000")
)
problem(refused, 401, "MFA_CODE_INVALID", AuthProblem)
last += 1
passed = complete_mfa.sync(
    client=anonymous, body=MfaRequest(mfa_token=mfa_token, code=totp(secret, last))
)
assert isinstance(passed, TokenPair) and passed.refresh_token, passed
assert amr(passed.access_token) == ["pwd", "otp", "mfa"]

step("a recovery code completes a login once, and removes the factor")
code, other = recovery[0], recovery[1]
recovered = complete_mfa.sync(client=anonymous, body=MfaRequest(mfa_token=challenge(), code=code))
assert isinstance(recovered, TokenPair), recovered
assert amr(recovered.access_token) == ["pwd", "mfa"]
spent = complete_mfa.sync_detailed(
    client=anonymous, body=MfaRequest(mfa_token=challenge(), code=code)
)
problem(spent, 401, "MFA_CODE_INVALID", AuthProblem)
current = AuthBearer(base_url=AUTH, token=recovered.access_token)
removed = remove_totp.sync_detailed(client=current, body=TotpCodeRequest(code=other))
assert removed.status_code == 204, removed.content
none = remove_totp.sync_detailed(client=current, body=TotpCodeRequest(code=other))
problem(none, 404, "NOT_FOUND", AuthProblem)
assert amr(tokens(login.sync(client=anonymous, body=credentials)).access_token) == ["pwd"]

step("done")
