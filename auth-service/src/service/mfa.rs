//! A second factor: TOTP (RFC 6238, `totp-rs`) with ten one-time recovery codes.
//!
//! Enrolment stores a new secret (sealed with the key-encryption key) and shows it once as
//! an otpauth URI and a QR code; a first code confirms it and returns the recovery codes
//! once. From then on a login with the right password gets a challenge (`mfa_token`, five
//! minutes, five tries) instead of tokens, and `POST /v1/auth/mfa` with a code completes it.
//! A TOTP code is good once: its time step must be later than the last one accepted. Every
//! factor change moves the user's epoch, revokes the other sessions and mails a notice.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rand::RngCore;
use rand::rngs::OsRng;
use serde_json::json;
use shared::problem::FieldCode;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

use crate::crypto::tokens::{RefreshToken, hash_token};
use crate::domain::{PasswordInput, RequestMeta};
use crate::error::AuthError;
use crate::service::auth::{Delivery, Issued};
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::mail::{self, MailKind};
use crate::store::mfa::{self, NewChallenge};
use crate::store::revocations::RevocationRow;
use crate::store::users::{self, UserRow};

/// Seconds per TOTP step, digits per code, and steps either side accepted (clock drift).
const STEP: u64 = 30;
const DIGITS: usize = 6;
const SKEW: i64 = 1;
/// How long a login challenge lasts, and how many codes it takes before it is spent.
const CHALLENGE_SECS: i64 = 300;
pub(crate) const CHALLENGE_ATTEMPTS: i32 = 5;
const RECOVERY_CODES: usize = 10;
/// Wrong second-factor codes an account takes in a day (from anywhere: logins, confirmations
/// and removals together; counted in PostgreSQL per user, so passkey-only accounts count too) before no code is tried
/// at all until the day is out. Only someone with the
/// password (or a session) can spend them: with six digits, guessing stays hopeless.
const FAILURE_CAP: i64 = 10;

/// What enrolment shows, once.
pub struct Enrolment {
    pub otpauth_uri: String,
    pub secret: String,
    pub qr_png_base64: String,
}

fn totp(state: &AppState, secret: Vec<u8>, account: &str) -> Result<TOTP, AuthError> {
    // otpauth labels may not hold ':' (issuer:account).
    let issuer = state.settings.auth.totp_issuer.replace(':', " ");
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP,
        secret,
        Some(issuer),
        account.replace(':', " "),
    )
    .map_err(|err| AuthError::Internal(anyhow::anyhow!("building a TOTP: {err:?}")))
}

fn aad(user_id: Uuid) -> String {
    format!("totp:{user_id}")
}

fn open_secret(state: &AppState, user_id: Uuid, sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
    Ok(state.secrets.open(&aad(user_id), sealed)?)
}

/// The time step of `code` if it is the user's code now (one step of drift either way).
fn matching_step(totp: &TOTP, code: &str) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = Utc::now().timestamp();
    let current = now / STEP as i64;
    let mut found = None;
    // Every candidate is computed and compared in constant time.
    for step in current - SKEW..=current + SKEW {
        let expected = totp.generate((step as u64) * STEP);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// A recovery code as shown: 16 base32 characters (80 random bits) in groups of four.
fn new_recovery_code() -> String {
    let mut bytes = [0u8; 10];
    OsRng.fill_bytes(&mut bytes);
    let raw = Secret::Raw(bytes.to_vec())
        .to_encoded()
        .to_string()
        .to_lowercase();
    raw.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A presented recovery code, normalised (case, dashes and spaces do not matter).
fn recovery_hash(code: &str) -> Option<Vec<u8>> {
    let clean: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .collect::<String>()
        .to_lowercase();
    (clean.len() == 16 && clean.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| hash_token(&clean))
}

fn code_field_error() -> AuthError {
    AuthError::Validation(vec![shared::FieldError::new(
        "code",
        FieldCode::Invalid,
        "is not the current code of the authenticator app (or an unused recovery code)",
    )])
}

/// Refused (429) while the account's wrong codes are at the day's cap.
async fn check_failures(conn: &mut AsyncPgConnection, user_id: Uuid) -> Result<(), AuthError> {
    let (failed, left) = mfa::wrong_codes(conn, user_id).await?;
    if i64::from(failed) >= FAILURE_CAP {
        tracing::warn!(%user_id, "second-factor codes refused: too many wrong ones today");
        return Err(AuthError::RateLimited(shared::ratelimit::RateLimited(
            shared::ratelimit::Decision {
                allowed: false,
                retry_after_secs: left.max(1).unsigned_abs(),
                states: Vec::new(),
            },
        )));
    }
    Ok(())
}

/// Count a wrong code against the account; the count today.
async fn record_wrong_code(conn: &mut AsyncPgConnection, user_id: Uuid) -> Result<i64, AuthError> {
    metrics::counter!("mfa_code_failures_total").increment(1);
    Ok(i64::from(mfa::count_wrong_code(conn, user_id).await?))
}

/// Wrong codes at a login after which the owner is told someone has their password.
pub(crate) const WARN_AT: i64 = 3;

/// A factor change needs a recent login (the caller's live session opened within
/// `AUTH_REAUTH_MAX_AGE_SECS`) or the current password (`purpose` names it in the audit
/// of a wrong one): an access token stolen from an older session cannot change factors.
pub(crate) async fn require_recent_auth(
    state: &AppState,
    user: &UserRow,
    session_id: Option<Uuid>,
    current_password: Option<String>,
    purpose: &'static str,
    meta: &RequestMeta,
    what: &str,
) -> Result<(), AuthError> {
    if let Some(password) = current_password {
        let password = PasswordInput::parse("current_password", password)?;
        return crate::service::users::check_current_password(state, user, password, purpose, meta)
            .await;
    }
    let mut conn = shared::db::conn(&state.pool).await?;
    let opened = match session_id {
        Some(sid) => crate::store::sessions::find(&mut conn, sid)
            .await?
            .filter(|s| s.user_id == user.id && s.revoked_at.is_none())
            .map(|s| s.created_at),
        None => None,
    };
    let recent = Utc::now() - chrono::Duration::seconds(state.settings.auth.reauth_max_age_secs);
    if opened.is_none_or(|at| at <= recent) {
        return Err(shared::tokens::NotAllowed(format!(
            "{what} needs a recent login: log in again, or send `current_password`."
        ))
        .into());
    }
    Ok(())
}

/// Ten new recovery codes (shown once) and their hashes (stored).
pub(crate) fn new_recovery_codes() -> (Vec<String>, Vec<Vec<u8>>) {
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes = codes.iter().filter_map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// The user changing their factors, within `AUTH_RATE_MFA_CHANGE`.
pub(crate) async fn changing(state: &AppState, user_id: Uuid) -> Result<UserRow, AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(state, "mfa-change", a.rate_mfa_change, &user_id.to_string()).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound)
}

/// Start (or restart) enrolment: a new secret, shown once.
/// Needs a recent login (the caller's session opened within `AUTH_REAUTH_MAX_AGE_SECS`) or
/// the current password: an access token stolen from an older session cannot put an
/// attacker's authenticator on the account.
pub async fn enrol(
    state: &AppState,
    user_id: Uuid,
    session_id: Option<Uuid>,
    current_password: Option<String>,
    meta: &RequestMeta,
) -> Result<Enrolment, AuthError> {
    let user = changing(state, user_id).await?;
    require_recent_auth(
        state,
        &user,
        session_id,
        current_password,
        "mfa_enrol",
        meta,
        "Adding a second factor",
    )
    .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let mut secret = vec![0u8; 20];
    OsRng.fill_bytes(&mut secret);
    let sealed = state.secrets.seal(&aad(user_id), &secret)?;
    if !mfa::start_totp(&mut conn, user_id, &sealed).await? {
        return Err(AuthError::Conflict(
            "An authenticator app is enrolled already; remove it first.".into(),
        ));
    }
    let totp = totp(state, secret, &user.email)?;
    let qr = totp
        .get_qr_base64()
        .map_err(|err| AuthError::Internal(anyhow::anyhow!("drawing the QR code: {err}")))?;
    Ok(Enrolment {
        otpauth_uri: totp.get_url(),
        secret: totp.get_secret_base32(),
        qr_png_base64: qr,
    })
}

/// Confirm enrolment with a first code: the factor is on, the other sessions end, and the
/// recovery codes are returned, once.
pub async fn confirm(
    state: &AppState,
    user_id: Uuid,
    session_id: Option<Uuid>,
    code: &str,
    meta: &RequestMeta,
) -> Result<Vec<String>, AuthError> {
    let user = changing(state, user_id).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let row = mfa::find_totp(&mut conn, user_id)
        .await?
        .filter(|r| r.confirmed_at.is_none())
        .ok_or_else(|| AuthError::Conflict("Nothing to confirm: enrol first.".into()))?;
    check_failures(&mut conn, user_id).await?;
    let totp = totp(
        state,
        open_secret(state, user_id, &row.secret)?,
        &user.email,
    )?;
    let Some(step) = matching_step(&totp, code) else {
        record_wrong_code(&mut conn, user_id).await?;
        return Err(code_field_error());
    };
    let (codes, hashes) = new_recovery_codes();
    let rows = conn
        .transaction(async |conn| {
            users::bump_epoch(conn, user_id).await?;
            // The secret the code was checked against, still: an enrolment that replaced it
            // meanwhile turns nothing on.
            if !mfa::take_step(conn, user_id, step).await?
                || !mfa::confirm_totp(conn, user_id, &row.secret).await?
            {
                return Err(code_field_error());
            }
            mfa::replace_recovery_codes(conn, user_id, &hashes).await?;
            mfa::forget_wrong_codes(conn, user_id).await?;
            let rows = factor_changed(
                state,
                conn,
                &user,
                session_id,
                event::MFA_ENABLED,
                "An authenticator app was added",
                None,
                meta,
            )
            .await?;
            Ok::<_, AuthError>(rows)
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    // An address that logged in with the password alone before keeps no budget of its own.
    throttle::forget_known_ips(state, &user.email.trim().to_lowercase()).await;
    Ok(codes)
}

/// Remove the factor with a fresh code (from the app, or a recovery code).
pub async fn disable(
    state: &AppState,
    user_id: Uuid,
    session_id: Option<Uuid>,
    code: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let user = changing(state, user_id).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let row = mfa::find_totp(&mut conn, user_id)
        .await?
        .filter(|r| r.confirmed_at.is_some())
        .ok_or(AuthError::NotFound)?;
    check_failures(&mut conn, user_id).await?;
    let totp = totp(
        state,
        open_secret(state, user_id, &row.secret)?,
        &user.email,
    )?;
    let step = matching_step(&totp, code);
    let recovery = recovery_hash(code);
    if step.is_none() && recovery.is_none() {
        record_wrong_code(&mut conn, user_id).await?;
        return Err(code_field_error());
    }
    let result = conn
        .transaction(async |conn| {
            users::bump_epoch(conn, user_id).await?;
            let good = match (step, &recovery) {
                (Some(step), _) => mfa::take_step(conn, user_id, step).await?,
                (None, Some(hash)) => mfa::spend_recovery_code(conn, user_id, hash).await?,
                (None, None) => false,
            };
            if !good {
                return Err(code_field_error());
            }
            mfa::remove_totp(conn, user_id).await?;
            factor_changed(
                state,
                conn,
                &user,
                session_id,
                event::MFA_DISABLED,
                "The authenticator app was removed",
                None,
                meta,
            )
            .await
        })
        .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(AuthError::Validation(errors)) => {
            record_wrong_code(&mut conn, user_id).await?;
            return Err(AuthError::Validation(errors));
        }
        Err(err) => return Err(err),
    };
    state.revocations.publish(&mut conn, rows).await;
    Ok(())
}

/// An admin removes a user's factors (the user lost them): every session of the user ends.
pub async fn admin_reset(
    state: &AppState,
    admin_id: Uuid,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let user = users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound)?;
    let rows = conn
        .transaction(async |conn| {
            users::bump_epoch(conn, user_id).await?;
            if !mfa::remove_all(conn, user_id).await? {
                return Err(AuthError::NotFound);
            }
            factor_changed(
                state,
                conn,
                &user,
                None,
                event::MFA_RESET,
                "An administrator removed your second factor",
                Some(admin_id),
                meta,
            )
            .await
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    Ok(())
}

/// In a factor change's transaction (the epoch already moved): revoke the user's sessions
/// but `keep`, audit, and queue the notice.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn factor_changed(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    keep: Option<Uuid>,
    event: &'static str,
    what: &str,
    admin: Option<Uuid>,
    meta: &RequestMeta,
) -> Result<Vec<RevocationRow>, AuthError> {
    let now = Utc::now();
    let (revoked, rows) =
        crate::service::users::end_sessions(state, conn, user.id, keep, "factor_changed", now)
            .await?;
    audit::record(
        conn,
        AuditEntry {
            event,
            actor_id: Some(admin.unwrap_or(user.id)),
            subject_id: Some(user.id),
            session_id: keep,
            meta,
            details: json!({ "sessions_revoked": revoked.len() }),
        },
    )
    .await?;
    mail::enqueue(
        conn,
        MailKind::FactorChanged,
        user.id,
        &user.email,
        &json!({ "what": what, "at": now.format("%Y-%m-%d %H:%M").to_string() }),
        None,
    )
    .await?;
    Ok(rows)
}

/// A login's challenge: its token (shown once), stored by hash with what the password check
/// saw.
pub async fn open_challenge(
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<String, AuthError> {
    let token = RefreshToken::generate().0;
    mfa::insert_challenge(
        conn,
        NewChallenge {
            hash: &hash_token(&token),
            user_id: user.id,
            auth_epoch: user.auth_epoch,
            role: &user.role,
            refresh_delivery: delivery.as_str(),
            expires_at: Utc::now() + chrono::Duration::seconds(CHALLENGE_SECS),
        },
    )
    .await?;
    audit::record(
        conn,
        AuditEntry {
            event: event::MFA_CHALLENGED,
            actor_id: Some(user.id),
            subject_id: Some(user.id),
            session_id: None,
            meta,
            details: json!({}),
        },
    )
    .await?;
    Ok(token)
}

/// Complete a login with its challenge and a code: tokens, with `amr` naming the factor.
pub async fn complete(
    state: &AppState,
    mfa_token: &str,
    code: &str,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    let token = mfa_token.trim();
    if token.is_empty() || token.len() > 128 {
        return Err(AuthError::MfaCodeInvalid);
    }
    let hash = hash_token(token);
    let mut conn = shared::db::conn(&state.pool).await?;
    let challenge = mfa::attempt_challenge(&mut conn, &hash, CHALLENGE_ATTEMPTS)
        .await?
        .ok_or(AuthError::MfaCodeInvalid)?;
    let user = users::find(&mut conn, challenge.user_id)
        .await?
        .filter(|u| !u.disabled && u.auth_epoch == challenge.auth_epoch && u.role == challenge.role)
        .ok_or(AuthError::MfaCodeInvalid)?;
    let account = user.email.trim().to_lowercase();
    let subject = throttle::Subject::Account(&account);
    throttle::check_login(state, &account, &meta.ip_key).await?;
    check_failures(&mut conn, user.id).await?;
    // With passkeys only, a recovery code is the one code there is.
    let step = match mfa::find_totp(&mut conn, user.id)
        .await?
        .filter(|r| r.confirmed_at.is_some())
    {
        Some(row) => matching_step(
            &totp(
                state,
                open_secret(state, user.id, &row.secret)?,
                &user.email,
            )?,
            code,
        ),
        None => None,
    };
    let accepted = match (step, recovery_hash(code)) {
        (Some(step), _) => mfa::take_step(&mut conn, user.id, step)
            .await?
            .then_some("pwd otp mfa"),
        (None, Some(hash)) => mfa::spend_recovery_code(&mut conn, user.id, &hash)
            .await?
            .then_some("pwd mfa"),
        (None, None) => None,
    };
    let Some(amr) = accepted else {
        audit::login_failed(
            &mut conn,
            Some(user.id),
            meta,
            json!({ "reason": "mfa_code_invalid", "attempt": challenge.attempts }),
        )
        .await?;
        throttle::record_failure(state, subject, &meta.ip_key).await;
        if record_wrong_code(&mut conn, user.id).await? == WARN_AT {
            // The password was right each time: tell the owner, once a day.
            mail::enqueue(
                &mut conn,
                MailKind::WrongCodes,
                user.id,
                &user.email,
                &json!({ "at": Utc::now().format("%Y-%m-%d %H:%M").to_string() }),
                None,
            )
            .await?;
        }
        return Err(AuthError::MfaCodeInvalid);
    };
    if !mfa::spend_challenge(&mut conn, &hash).await? {
        return Err(AuthError::MfaCodeInvalid);
    }
    drop(conn);
    let delivery = if challenge.refresh_delivery == "cookie" {
        Delivery::Cookie
    } else {
        Delivery::Body
    };
    match crate::service::auth::open_session(state, &user, None, delivery, amr, meta).await {
        // The account changed after the code was checked: log in again.
        Err(AuthError::InvalidCredentials) => Err(AuthError::MfaCodeInvalid),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_80_bits_in_groups_and_normalise() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3);
        let hash = recovery_hash(&code).unwrap();
        assert_eq!(
            recovery_hash(&code.to_uppercase().replace('-', " ")),
            Some(hash)
        );
        assert_ne!(new_recovery_code(), code);
        assert!(recovery_hash("123456").is_none());
    }
}
