"""The whole flow, driven through Python clients generated from the services' OpenAPI
documents by openapi-python-client: signup, login, todos with ETag and Idempotency-Key,
pages, refresh, a service client's client-credentials token, logout, and errors read as
typed problems.

    AUTH_URL=... TODO_URL=... ADMIN_EMAIL=... ADMIN_PASSWORD=... \
        PYTHONPATH=clients/python/generated python clients/python/flow.py

(`deploy/dev e2e` generates the clients and runs it.)
"""

import os
import time
import uuid

from auth_client import AuthenticatedClient as AuthBearer
from auth_client import Client as AuthAnonymous
from auth_client.api.admin import admin_create_client
from auth_client.api.auth import login, logout, refresh, signup
from auth_client.api.o_auth import oauth_token
from auth_client.models import (
    CreateClientRequest,
    LoginRequest,
    OAuthErrorBody,
    OAuthRequest,
    OAuthToken,
    RefreshRequest,
    Scope,
    SignupRequest,
    TokenPair,
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
pair = login.sync(client=anonymous, body=LoginRequest(email=email, password=password))
assert isinstance(pair, TokenPair) and pair.token_type == "Bearer"
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
admin_pair = login.sync(
    client=anonymous,
    body=LoginRequest(email=os.environ["ADMIN_EMAIL"], password=os.environ["ADMIN_PASSWORD"]),
)
assert isinstance(admin_pair, TokenPair), admin_pair
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
fresh = login.sync(client=anonymous, body=LoginRequest(email=email, password=password))
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

step("done")
