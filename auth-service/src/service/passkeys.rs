//! Passkeys (WebAuthn, `webauthn-rs`): registered by a logged-in user, then used either as
//! the second factor of a password login or as a login on their own.
//!
//! Every ceremony has two steps. The first stores webauthn-rs's state (the random challenge
//! and what it allows) in PostgreSQL and answers the options for the browser's
//! `navigator.credentials.create` or `.get`; the second takes that state once (a replayed or
//! expired ceremony is refused) and checks the browser's answer against it. Passkeys always
//! verify the user (PIN or biometric): a passwordless login is two factors in itself, and its
//! access tokens say `amr: ["pop","mfa"]` (RFC 8176 proof of possession); after a password,
//! `["pwd","pop","mfa"]`.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};
use shared::problem::FieldCode;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CredentialID, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential,
};

use crate::crypto::tokens::hash_token;
use crate::domain::{PasswordInput, RequestMeta};
use crate::error::AuthError;
use crate::service::auth::{Delivery, Issued};
use crate::service::mfa::{self as factors, CHALLENGE_ATTEMPTS};
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, event};
use crate::store::mfa;
use crate::store::passkeys::{self, CeremonyRow, NewCeremony, PasskeyRow, Purpose};
use crate::store::users;

/// How long the browser has between the two steps (WebAuthn's own timeout is 5 minutes).
const CEREMONY_SECS: i64 = 300;
/// Passkeys per user.
pub const MAX_PASSKEYS: usize = 10;
/// Characters in a passkey's name.
pub const NAME_MAX: usize = 64;

/// The first step's answer: the ceremony to name in the second, and the options for the
/// browser (`{"publicKey": {...}}`, WebAuthn's JSON form).
pub struct Started {
    pub challenge_id: Uuid,
    pub options: Value,
}

/// A passkey added; with ten recovery codes (shown once) when the user had none.
pub struct Registered {
    pub passkey: PasskeyRow,
    pub recovery_codes: Option<Vec<String>>,
}

fn field(name: &str, message: &str) -> AuthError {
    AuthError::Validation(vec![shared::FieldError::new(
        name,
        FieldCode::Invalid,
        message,
    )])
}

fn internal(what: &str, err: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(anyhow::anyhow!("{what}: {err}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, AuthError> {
    serde_json::to_string(value).map_err(|e| internal("serialising WebAuthn state", e))
}

fn from_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, AuthError> {
    serde_json::from_str(raw).map_err(|e| internal("reading WebAuthn state", e))
}

/// A passkey's name: trimmed, 1 to 64 characters, no control characters; "Passkey" if none.
fn parse_name(name: Option<String>) -> Result<String, AuthError> {
    let name = name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if name.is_empty() {
        return Ok("Passkey".into());
    }
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(field(
            "name",
            "must be 1 to 64 characters, without control characters",
        ));
    }
    Ok(name)
}

/// Begin adding a passkey: needs the current password (checked as a login attempt). The
/// user's passkeys are excluded (an authenticator is registered once).
pub async fn register_start(
    state: &AppState,
    user_id: Uuid,
    current_password: String,
    meta: &RequestMeta,
) -> Result<Started, AuthError> {
    let user = factors::changing(state, user_id).await?;
    // Always the password (not only a recent login): a passkey logs in on its own, so a
    // session token alone must not add or remove one.
    let password = PasswordInput::parse("current_password", current_password)?;
    crate::service::users::check_current_password(state, &user, password, "passkey_register", meta)
        .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let existing = passkeys::list(&mut conn, user_id).await?;
    if existing.len() >= MAX_PASSKEYS {
        return Err(AuthError::Conflict(format!(
            "At most {MAX_PASSKEYS} passkeys: remove one first."
        )));
    }
    let exclude: Vec<CredentialID> = existing
        .iter()
        .map(|p| CredentialID::from(p.credential_id.clone()))
        .collect();
    let display = user.display_name.as_deref().unwrap_or(&user.email);
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(user.id, &user.email, display, Some(exclude))
        .map_err(|e| internal("starting a passkey registration", e))?;
    let mut options = serde_json::to_value(&options).map_err(|e| internal("options", e))?;
    // Ask for a discoverable credential where the authenticator can make one, so that the
    // passkey also logs in without a password (webauthn-rs asks for none; it does not check).
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
        selection["residentKey"] = json!("preferred");
    }
    let id = Uuid::new_v4();
    passkeys::start_ceremony(
        &mut conn,
        id,
        NewCeremony {
            purpose: Purpose::Register,
            user_id: Some(user.id),
            auth_epoch: Some(user.auth_epoch),
            mfa_token_hash: None,
            refresh_delivery: Delivery::Body.as_str(),
            state: &to_json(&registration)?,
            expires_at: Utc::now() + chrono::Duration::seconds(CEREMONY_SECS),
        },
    )
    .await?;
    Ok(Started {
        challenge_id: id,
        options,
    })
}

/// Finish adding a passkey with the browser's answer: stored, the factor is on, the other
/// sessions end and a notice is mailed. Refused (422) when the ceremony is unknown, spent,
/// expired or another user's, when the account changed since it began, or when the answer
/// does not prove the challenge.
pub async fn register_finish(
    state: &AppState,
    user_id: Uuid,
    session_id: Option<Uuid>,
    challenge_id: Uuid,
    name: Option<String>,
    credential: Value,
    meta: &RequestMeta,
) -> Result<Registered, AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(state, "mfa-change", a.rate_mfa_change, &user_id.to_string()).await?;
    let name = parse_name(name)?;
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(credential).map_err(|_| {
            field(
                "credential",
                "is not a WebAuthn registration (PublicKeyCredential JSON)",
            )
        })?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let unknown = || {
        field(
            "challenge_id",
            "is not a passkey registration of yours in progress (it expired or was used)",
        )
    };
    let ceremony =
        passkeys::take_ceremony(&mut conn, challenge_id, &[Purpose::Register], Some(user_id))
            .await?
            .ok_or_else(unknown)?;
    let user = users::find(&mut conn, user_id)
        .await?
        .filter(|u| Some(u.auth_epoch) == ceremony.auth_epoch)
        .ok_or_else(unknown)?;
    let registration: PasskeyRegistration = from_json(&ceremony.state)?;
    let passkey = state
        .webauthn
        .finish_passkey_registration(&credential, &registration)
        .map_err(|err| {
            tracing::info!(error = %err, "a passkey registration was refused");
            field(
                "credential",
                "does not answer this registration's challenge",
            )
        })?;
    let credential_id = passkey.cred_id().to_vec();
    let stored = to_json(&passkey)?;
    let id = Uuid::now_v7();
    let (passkey, codes, rows) = conn
        .transaction(async |conn| {
            // The account as it was when the ceremony began: a password or factor change
            // since voids it.
            if !passkeys::bump_epoch_from(conn, user_id, user.auth_epoch).await? {
                return Err(unknown());
            }
            if passkeys::list(conn, user_id).await?.len() >= MAX_PASSKEYS {
                return Err(AuthError::Conflict(format!(
                    "At most {MAX_PASSKEYS} passkeys: remove one first."
                )));
            }
            let Some(row) =
                passkeys::insert(conn, id, user_id, &credential_id, &name, &stored).await?
            else {
                return Err(AuthError::Conflict(
                    "This passkey is registered already.".into(),
                ));
            };
            let codes = if passkeys::recovery_codes_left(conn, user_id).await? > 0 {
                None
            } else {
                let (codes, hashes) = factors::new_recovery_codes();
                mfa::replace_recovery_codes(conn, user_id, &hashes).await?;
                Some(codes)
            };
            passkeys::sync_enabled(conn, user_id).await?;
            mfa::forget_wrong_codes(conn, user_id).await?;
            let rows = factors::factor_changed(
                state,
                conn,
                &user,
                session_id,
                event::PASSKEY_ADDED,
                "A passkey was added",
                None,
                meta,
            )
            .await?;
            Ok::<_, AuthError>((row, codes, rows))
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    throttle::forget_known_ips(state, &user.email.trim().to_lowercase()).await;
    Ok(Registered {
        passkey,
        recovery_codes: codes,
    })
}

/// The caller's factors: an app confirmed, passkeys, unused recovery codes.
pub async fn status(state: &AppState, user_id: Uuid) -> Result<(bool, i64, i64), AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let (app, keys) = passkeys::factors(&mut conn, user_id).await?;
    let codes = passkeys::recovery_codes_left(&mut conn, user_id).await?;
    Ok((app, keys, codes))
}

pub async fn list(state: &AppState, user_id: Uuid) -> Result<Vec<PasskeyRow>, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    Ok(passkeys::list(&mut conn, user_id).await?)
}

/// Remove one of the caller's passkeys (with the current password, as for adding one): the
/// other sessions end and a notice is mailed. With no factor left, login
/// asks for none and the recovery codes go.
pub async fn remove(
    state: &AppState,
    user_id: Uuid,
    session_id: Option<Uuid>,
    id: Uuid,
    current_password: String,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let user = factors::changing(state, user_id).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    if !passkeys::list(&mut conn, user_id)
        .await?
        .iter()
        .any(|p| p.id == id)
    {
        return Err(AuthError::NotFound);
    }
    drop(conn);
    // Always the password (not only a recent login): a passkey logs in on its own, so a
    // session token alone must not add or remove one.
    let password = PasswordInput::parse("current_password", current_password)?;
    crate::service::users::check_current_password(state, &user, password, "passkey_remove", meta)
        .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = conn
        .transaction(async |conn| {
            users::bump_epoch(conn, user_id).await?;
            if !passkeys::delete(conn, user_id, id).await? {
                return Err(AuthError::NotFound);
            }
            passkeys::sync_enabled(conn, user_id).await?;
            factors::factor_changed(
                state,
                conn,
                &user,
                session_id,
                event::PASSKEY_REMOVED,
                "A passkey was removed",
                None,
                meta,
            )
            .await
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    Ok(())
}

/// Begin a login with a passkey: without `mfa_token`, passwordless (any discoverable
/// passkey of this site; the browser offers the user's); with it, the second factor of
/// that password login (one of that user's passkeys). Limited per client ip like login.
pub async fn login_start(
    state: &AppState,
    mfa_token: Option<&str>,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Started, AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(state, "passkey-ip", a.rate_login_ip, &meta.ip_key).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let expires_at = Utc::now() + chrono::Duration::seconds(CEREMONY_SECS);
    let id = Uuid::new_v4();
    let (options, ceremony_state, purpose, user_id, hash, delivery) = match mfa_token {
        None => {
            let (options, auth) = state
                .webauthn
                .start_discoverable_authentication()
                .map_err(|e| internal("starting a passkey login", e))?;
            let options = serde_json::to_value(&options).map_err(|e| internal("options", e))?;
            (
                options,
                to_json::<DiscoverableAuthentication>(&auth)?,
                Purpose::Login,
                None,
                None,
                delivery.as_str().to_owned(),
            )
        }
        Some(token) => {
            let token = token.trim();
            if token.is_empty() || token.len() > 128 {
                return Err(AuthError::MfaCodeInvalid);
            }
            let hash = hash_token(token);
            // Counts as one of the challenge's tries.
            let challenge = mfa::attempt_challenge(&mut conn, &hash, CHALLENGE_ATTEMPTS)
                .await?
                .ok_or(AuthError::MfaCodeInvalid)?;
            let keys = passkeys::list(&mut conn, challenge.user_id).await?;
            let keys: Vec<Passkey> = keys
                .iter()
                .map(|p| from_json(&p.credential))
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                return Err(AuthError::MfaCodeInvalid);
            }
            let (options, auth) = state
                .webauthn
                .start_passkey_authentication(&keys)
                .map_err(|e| internal("starting a passkey second factor", e))?;
            let options = serde_json::to_value(&options).map_err(|e| internal("options", e))?;
            (
                options,
                to_json::<PasskeyAuthentication>(&auth)?,
                Purpose::Mfa,
                Some(challenge.user_id),
                Some(hash),
                challenge.refresh_delivery,
            )
        }
    };
    passkeys::start_ceremony(
        &mut conn,
        id,
        NewCeremony {
            purpose,
            user_id,
            auth_epoch: None,
            mfa_token_hash: hash.as_deref(),
            refresh_delivery: &delivery,
            state: &ceremony_state,
            expires_at,
        },
    )
    .await?;
    Ok(Started {
        challenge_id: id,
        options,
    })
}

/// Finish a passkey login with the browser's answer: tokens. A failed passwordless login is
/// 401 `INVALID_CREDENTIALS`; a failed second factor 401 `MFA_CODE_INVALID`.
pub async fn login_finish(
    state: &AppState,
    challenge_id: Uuid,
    credential: Value,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    let credential: PublicKeyCredential = serde_json::from_value(credential).map_err(|_| {
        field(
            "credential",
            "is not a WebAuthn assertion (PublicKeyCredential JSON)",
        )
    })?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let ceremony = passkeys::take_ceremony(
        &mut conn,
        challenge_id,
        &[Purpose::Login, Purpose::Mfa],
        None,
    )
    .await?
    .ok_or(AuthError::InvalidCredentials)?;
    let delivery = if ceremony.refresh_delivery == "cookie" {
        Delivery::Cookie
    } else {
        Delivery::Body
    };
    if ceremony.purpose == Purpose::Mfa.as_str() {
        return second_factor(state, conn, ceremony, credential, delivery, meta).await;
    }
    if ceremony.purpose != Purpose::Login.as_str() {
        return Err(AuthError::InvalidCredentials);
    }
    let auth: DiscoverableAuthentication = from_json(&ceremony.state)?;
    let Ok((user_id, credential_id)) = state
        .webauthn
        .identify_discoverable_authentication(&credential)
    else {
        return refuse(&mut conn, None, "passkey_unknown", meta).await;
    };
    // The user (and its epoch) before the passkey: a removal that commits in between moves
    // the epoch, and the session is then not opened.
    let Some(user) = users::find(&mut conn, user_id).await? else {
        return refuse(&mut conn, None, "passkey_unknown", meta).await;
    };
    let Some(row) = passkeys::find_by_credential(&mut conn, credential_id)
        .await?
        .filter(|p| p.user_id == user_id)
    else {
        return refuse(&mut conn, None, "passkey_unknown", meta).await;
    };
    if user.disabled {
        return refuse(&mut conn, Some(user.id), "disabled", meta).await;
    }
    // No account-wide lock here (the start is limited per ip): wrong passwords sprayed at the
    // account must not stop its owner's passkey.
    let passkey: Passkey = from_json(&row.credential)?;
    let result =
        match state
            .webauthn
            .finish_discoverable_authentication_v2(&credential, auth, &passkey)
        {
            Ok(result) => result,
            Err(err) => {
                tracing::info!(error = %err, "a passkey login was refused");
                // Not counted against the account: no one guesses a signature, and counting
                // would let anyone who knows a credential id lock its owner out.
                return refuse(&mut conn, Some(user.id), "passkey_invalid", meta).await;
            }
        };
    if !record_use(&mut conn, &row, passkey, &result).await? {
        return refuse(&mut conn, Some(user.id), "passkey_counter", meta).await;
    }
    if state.settings.auth.require_verified_email && user.email_verified_at.is_none() {
        return Err(AuthError::EmailNotVerified);
    }
    drop(conn);
    crate::service::auth::open_session(state, &user, None, delivery, "pop mfa", meta).await
}

/// A passkey as the second factor of a password login (its challenge named by the ceremony).
async fn second_factor(
    state: &AppState,
    mut conn: shared::db::PgConn,
    ceremony: CeremonyRow,
    credential: PublicKeyCredential,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    let hash = ceremony.mfa_token_hash.ok_or(AuthError::MfaCodeInvalid)?;
    // Its start counted as one of the challenge's tries.
    let challenge = mfa::find_challenge(&mut conn, &hash)
        .await?
        .filter(|c| Some(c.user_id) == ceremony.user_id)
        .ok_or(AuthError::MfaCodeInvalid)?;
    let user = users::find(&mut conn, challenge.user_id)
        .await?
        .filter(|u| !u.disabled && u.auth_epoch == challenge.auth_epoch && u.role == challenge.role)
        .ok_or(AuthError::MfaCodeInvalid)?;
    let account = user.email.trim().to_lowercase();
    throttle::check_login(state, &account, &meta.ip_key).await?;
    let auth: PasskeyAuthentication = from_json(&ceremony.state)?;
    let row = passkeys::find_by_credential(&mut conn, credential.get_credential_id())
        .await?
        .filter(|p| p.user_id == user.id);
    let checked = match &row {
        Some(row) => {
            let passkey: Passkey = from_json(&row.credential)?;
            match state
                .webauthn
                .finish_passkey_authentication(&credential, &auth)
            {
                Ok(result) => Some((passkey, result)),
                Err(err) => {
                    tracing::info!(error = %err, "a passkey second factor was refused");
                    None
                }
            }
        }
        None => None,
    };
    let (Some(row), Some((passkey, result))) = (row, checked) else {
        audit::login_failed(
            &mut conn,
            Some(user.id),
            meta,
            json!({ "reason": "passkey_invalid", "attempt": challenge.attempts }),
        )
        .await?;
        throttle::record_failure(state, throttle::Subject::Account(&account), &meta.ip_key).await;
        return Err(AuthError::MfaCodeInvalid);
    };
    if !record_use(&mut conn, &row, passkey, &result).await? {
        audit::login_failed(
            &mut conn,
            Some(user.id),
            meta,
            json!({ "reason": "passkey_counter", "attempt": challenge.attempts }),
        )
        .await?;
        return Err(AuthError::MfaCodeInvalid);
    }
    if !mfa::spend_challenge(&mut conn, &hash).await? {
        return Err(AuthError::MfaCodeInvalid);
    }
    drop(conn);
    match crate::service::auth::open_session(state, &user, None, delivery, "pwd pop mfa", meta)
        .await
    {
        // The account changed after the passkey was checked: log in again.
        Err(AuthError::InvalidCredentials) => Err(AuthError::MfaCodeInvalid),
        other => other,
    }
}

/// The passkey was used: its signature counter must have moved past the one stored now (not
/// only past the ceremony's copy, which may be minutes old), unless the authenticator keeps
/// none (0: synced passkeys); the row changes only if no other login changed it meanwhile.
/// `false`: a counter that did not move (a cloned authenticator), or a concurrent use.
async fn record_use(
    conn: &mut AsyncPgConnection,
    row: &PasskeyRow,
    mut passkey: Passkey,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<bool, AuthError> {
    // Fails closed: a stored passkey without its counter is an error, not a zero.
    let stored_counter = serde_json::from_str::<Value>(&row.credential)
        .ok()
        .and_then(|v| v.pointer("/cred/counter").and_then(Value::as_u64))
        .ok_or_else(|| internal("reading a passkey's counter", row.id))?;
    let counter = u64::from(result.counter());
    if (counter > 0 || stored_counter > 0) && counter <= stored_counter {
        tracing::warn!(passkey = %row.id, "a passkey's counter did not move: a cloned authenticator?");
        return Ok(false);
    }
    passkey.update_credential(result);
    Ok(passkeys::used(conn, row.id, &row.credential, &to_json(&passkey)?).await?)
}

/// A refused passwordless login: audited, 401.
async fn refuse<T>(
    conn: &mut AsyncPgConnection,
    user: Option<Uuid>,
    reason: &str,
    meta: &RequestMeta,
) -> Result<T, AuthError> {
    audit::login_failed(
        conn,
        user,
        meta,
        json!({ "reason": reason, "method": "passkey" }),
    )
    .await?;
    Err(AuthError::InvalidCredentials)
}

/// What the login challenge offers, for a user with these factors.
pub fn methods(has_app: bool, passkeys: i64) -> Vec<String> {
    let mut methods = Vec::with_capacity(3);
    if has_app {
        methods.push("totp".to_owned());
    }
    if passkeys > 0 {
        methods.push("passkey".to_owned());
    }
    methods.push("recovery_code".to_owned());
    methods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_default() {
        assert_eq!(parse_name(None).unwrap(), "Passkey");
        assert_eq!(parse_name(Some("  Laptop ".into())).unwrap(), "Laptop");
        assert!(parse_name(Some("x".repeat(65))).is_err());
        assert!(parse_name(Some("a\nb".into())).is_err());
        assert_eq!(methods(true, 0), ["totp", "recovery_code"]);
        assert_eq!(methods(false, 2), ["passkey", "recovery_code"]);
    }
}
