"""The whole flow, driven through Python clients generated from the services' OpenAPI
documents by openapi-python-client: signup, login, todos with ETag and Idempotency-Key,
pages, refresh, a service client's client-credentials token, logout, a second factor (TOTP:
enrol, confirm, the login's challenge, a recovery code), a passkey (a software authenticator
here: added, then logging in alone and answering a login's challenge, removed), and errors
read as typed problems.

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
from auth_client.api.auth import (
    complete_mfa,
    finish_passkey_login,
    login,
    logout,
    refresh,
    signup,
    start_passkey_login,
)
from auth_client.api.o_auth import oauth_token
from auth_client.api.users import (
    confirm_totp,
    enrol_totp,
    finish_passkey_registration,
    get_me,
    list_passkeys,
    remove_passkey,
    remove_totp,
    start_passkey_registration,
)
from auth_client.models import (
    CreateClientRequest,
    EnrolTotpRequest,
    LoginRequest,
    MfaChallenge,
    MfaRequest,
    OAuthErrorBody,
    OAuthRequest,
    OAuthToken,
    PasskeyChallenge,
    PasskeyLoginFinishRequest,
    PasskeyLoginFinishRequestCredential,
    PasskeyLoginRequest,
    PasskeyRegisterFinishRequest,
    PasskeyRegisterFinishRequestCredential,
    PasskeyRegisterRequest,
    PasskeyRemoveRequest,
    RefreshRequest,
    Scope,
    SignupRequest,
    TokenPair,
    TotpCodeRequest,
    TotpEnrolment,
)
from auth_client.models import Problem as AuthProblem
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from todo_client import AuthenticatedClient as TodoBearer
from todo_client.api.admin import admin_list_todos
from todo_client.api.todos import (
    create_todo,
    delete_todo,
    get_todo,
    list_todos,
    update_todo,
)
from todo_client.models import CreateTodo, PageTodo, PatchTodo, Todo
from todo_client.models import Problem as TodoProblem

AUTH = os.environ.get("AUTH_URL", "http://127.0.0.1:8080")
TODO = os.environ.get("TODO_URL", "http://127.0.0.1:8081")
# The origin the service takes passkey ceremonies from (the SPA's).
WEBAUTHN_ORIGIN = os.environ.get("WEBAUTHN_ORIGIN", "http://localhost:5173")


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

# --- a passkey, with a software authenticator (P-256, attestation "none") -----------------


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cbor(value) -> bytes:
    """The CBOR (RFC 8949) of unsigned and negative integers, byte and text strings and maps."""
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        if n < 256:
            return bytes([major << 5 | 24, n])
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, str):
        return head(3, len(value.encode())) + value.encode()
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    return head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())


class Authenticator:
    """A platform authenticator with one credential, verifying its user."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.id = os.urandom(16)
        self.user_handle = b""
        self.counter = 0

    def client_data(self, kind: str, options: dict) -> bytes:
        challenge = options["publicKey"]["challenge"]
        return json.dumps({"type": kind, "challenge": challenge, "origin": WEBAUTHN_ORIGIN,
                           "crossOrigin": False}).encode()

    def auth_data(self, rp_id: str, flags: int, attested: bytes = b"") -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + self.counter.to_bytes(4, "big") + attested

    def credential(self, response: dict) -> dict:
        """A `PublicKeyCredential`'s JSON form around an authenticator's `response`."""
        return {"id": b64u(self.id), "rawId": b64u(self.id), "type": "public-key",
                "response": response, "clientExtensionResults": {}}

    def create(self, options: dict) -> dict:
        public_key = options["publicKey"]
        handle = public_key["user"]["id"]
        self.user_handle = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4))
        point = self.key.public_key().public_numbers()
        cose = cbor({1: 2, 3: -7, -1: 1, -2: point.x.to_bytes(32, "big"),
                     -3: point.y.to_bytes(32, "big")})
        attested = bytes(16) + len(self.id).to_bytes(2, "big") + self.id + cose
        auth_data = self.auth_data(public_key["rp"]["id"], 0x01 | 0x04 | 0x40, attested)
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return self.credential({
            "attestationObject": b64u(attestation),
            "clientDataJSON": b64u(self.client_data("webauthn.create", options)),
        })

    def get(self, options: dict, rp_id: str) -> dict:
        self.counter += 1
        auth_data = self.auth_data(rp_id, 0x01 | 0x04)
        client_data = self.client_data("webauthn.get", options)
        signed = auth_data + hashlib.sha256(client_data).digest()
        return self.credential({
            "authenticatorData": b64u(auth_data),
            "clientDataJSON": b64u(client_data),
            "signature": b64u(self.key.sign(signed, ec.ECDSA(hashes.SHA256()))),
            "userHandle": b64u(self.user_handle),
        })


step("a passkey: added with the password, then logging in alone and answering a challenge")
me = AuthBearer(base_url=AUTH, token=tokens(login.sync(client=anonymous, body=credentials)).access_token)
authenticator = Authenticator()
started = start_passkey_registration.sync(
    client=me, body=PasskeyRegisterRequest(current_password=password)
)
assert isinstance(started, PasskeyChallenge), started
creation = started.options.to_dict()
rp_id = creation["publicKey"]["rp"]["id"]
finished = finish_passkey_registration.sync_detailed(
    client=me,
    body=PasskeyRegisterFinishRequest(
        challenge_id=started.challenge_id,
        name="flow key",
        credential=PasskeyRegisterFinishRequestCredential.from_dict(authenticator.create(creation)),
    ),
)
assert finished.status_code == 201, finished.content
assert finished.parsed.passkey.name == "flow key"
assert len(finished.parsed.recovery_codes) == 10, "the first factor brings recovery codes"
listed = list_passkeys.sync(client=me)
assert [p.name for p in listed.items] == ["flow key"], listed


def passkey_login(mfa_token=None):
    body = PasskeyLoginRequest() if mfa_token is None else PasskeyLoginRequest(mfa_token=mfa_token)
    start = start_passkey_login.sync(client=anonymous, body=body)
    assert isinstance(start, PasskeyChallenge), start
    answer = authenticator.get(start.options.to_dict(), rp_id)
    return finish_passkey_login.sync_detailed(
        client=anonymous,
        body=PasskeyLoginFinishRequest(
            challenge_id=start.challenge_id,
            credential=PasskeyLoginFinishRequestCredential.from_dict(answer),
        ),
    )


alone = passkey_login()
assert isinstance(alone.parsed, TokenPair), alone.content
assert amr(alone.parsed.access_token) == ["pop", "mfa"]
challenged = login.sync(client=anonymous, body=credentials)
assert isinstance(challenged, MfaChallenge), f"a challenge, no tokens: {challenged}"
assert challenged.methods == ["passkey", "recovery_code"], challenged.methods
second = passkey_login(challenged.mfa_token)
assert isinstance(second.parsed, TokenPair), second.content
assert amr(second.parsed.access_token) == ["pwd", "pop", "mfa"]
gone = remove_passkey.sync_detailed(
    listed.items[0].id,
    client=AuthBearer(base_url=AUTH, token=second.parsed.access_token),
    body=PasskeyRemoveRequest(current_password=password),
)
assert gone.status_code == 204, gone.content
problem(passkey_login(), 401, "INVALID_CREDENTIALS", AuthProblem)

step("done")
