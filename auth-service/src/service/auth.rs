//! Signup, login, refresh-token rotation with reuse detection, logout and sessions.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::denylist::Revocation;
use shared::problem::FieldCode;
use shared::ratelimit::Limit;
use shared::tokens::{Role, Scopes};
use uuid::Uuid;

use crate::crypto::hashing::Verified;
use crate::crypto::tokens::{AccessGrant, RefreshToken, hash_token, sign_access_token};
use crate::domain::RequestMeta;
use crate::domain::{DisplayName, Email, NewPassword, PasswordInput};
use crate::error::AuthError;
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::revocations::{self, RevocationRow};
use crate::store::sessions::{self, NewRefresh, NewSession, Revoke, SessionRow};
use crate::store::unique_violation;
use crate::store::users::{self, NewUser, UserRow};

/// How the refresh token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Body,
    Cookie,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Body => "body",
            Delivery::Cookie => "cookie",
        }
    }
}

/// A freshly issued token pair.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    /// The access token's `scope` claim.
    pub scope: String,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub session_id: Uuid,
    pub delivery: Delivery,
}

pub struct SignupInput {
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
}

fn role_of(user: &UserRow) -> Role {
    user.role.parse().unwrap_or(Role::User)
}

/// Sign an access token for a user's session.
pub fn access_token_for(
    state: &AppState,
    user_id: Uuid,
    role: Role,
    session_id: Uuid,
) -> Result<(String, i64, String), AuthError> {
    let signer = state
        .keys
        .signer()
        .ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
    let a = &state.settings.auth;
    let scope: Scopes = role.grantable_scopes().iter().copied().collect();
    let (token, _jti) = sign_access_token(
        &signer,
        AccessGrant {
            issuer: &a.issuer,
            audiences: &a.audiences,
            subject: user_id.to_string(),
            session_id: Some(session_id),
            role: role.as_str(),
            scope: scope.to_claim(),
            client_id: None,
            ttl_secs: a.access_token_ttl_secs,
        },
    )?;
    Ok((token, a.access_token_ttl_secs, scope.to_claim()))
}

pub async fn signup(
    state: &AppState,
    input: SignupInput,
    meta: &RequestMeta,
) -> Result<UserRow, AuthError> {
    throttle::enforce(
        state,
        "signup-ip",
        state.settings.auth.rate_signup_ip,
        &meta.ip_key,
    )
    .await?;
    let mut errors = Vec::new();
    let email = Email::parse(&input.email).map_err(|e| errors.push(e)).ok();
    let display_name = match input.display_name.as_deref() {
        Some(raw) => DisplayName::parse(raw)
            .map_err(|e| errors.push(e))
            .ok()
            .map(DisplayName::into_inner),
        None => None,
    };
    let mut user_inputs: Vec<&str> = vec![input.email.as_str()];
    if let Some(name) = &display_name {
        user_inputs.push(name);
    }
    let password = NewPassword::parse("password", input.password.clone(), &user_inputs)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(email), Some(password)) = (email, password) else {
        return Err(AuthError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(AuthError::Validation(errors));
    }

    let mut conn = shared::db::conn(&state.pool).await?;
    // Cheap check first, so a taken email does not cost a hash; the unique index still
    // decides races.
    if users::find_by_email(&mut conn, &email.normalized())
        .await?
        .is_some()
    {
        return Err(AuthError::EmailTaken);
    }
    // No connection is held while hashing (see `login`).
    drop(conn);
    let hash = state.hashing.hash(password.into_inner()).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let id = Uuid::now_v7();
    let result = conn
        .transaction(async |conn| {
            let user = users::insert(
                conn,
                NewUser {
                    id,
                    email: email.as_str(),
                    password_hash: &hash,
                    display_name: display_name.as_deref(),
                    role: Role::User.as_str(),
                },
            )
            .await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::SIGNUP,
                    actor_id: Some(id),
                    subject_id: Some(id),
                    session_id: None,
                    meta,
                    details: json!({}),
                },
            )
            .await?;
            Ok::<_, diesel::result::Error>(user)
        })
        .await;
    match result {
        Ok(user) => Ok(user),
        Err(err) if unique_violation(&err) == Some("users_email_key") => Err(AuthError::EmailTaken),
        Err(err) => Err(err.into()),
    }
}

pub async fn login(
    state: &AppState,
    email: String,
    password: String,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    let password = PasswordInput::parse("password", password)?.into_inner();
    if email.trim().is_empty() {
        return Err(AuthError::Validation(vec![shared::FieldError::new(
            "email",
            FieldCode::Required,
            "is required",
        )]));
    }
    let account = email.trim().to_lowercase();
    let subject = throttle::Subject::Account(&account);
    // Rate limits and brute-force throttling, before any hashing or database work: a
    // refused attempt costs no CPU, and answers alike for every account.
    if let Err(limited) = throttle::check_login(state, &account, &meta.ip_key).await {
        if !throttle::audit_refusal(state, subject, &meta.ip_key).await {
            return Err(limited.into());
        }
        let mut conn = shared::db::conn(&state.pool).await?;
        audit::record(
            &mut conn,
            AuditEntry {
                event: event::LOGIN_FAILED,
                actor_id: None,
                subject_id: None,
                session_id: None,
                meta,
                details: throttle::throttled_details(),
            },
        )
        .await?;
        return Err(limited.into());
    }
    // No database connection is held while the password is hashed: a login flood waits in
    // the hashing queue (or is refused at once when it is full), not in the connection
    // pool that every other route needs.
    let mut conn = shared::db::conn(&state.pool).await?;
    // A malformed address is just an unknown account: same work, same answer.
    let user = match Email::parse(&email) {
        Ok(email) => users::find_by_email(&mut conn, &email.normalized()).await?,
        Err(_) => None,
    };
    drop(conn);
    let verified = state
        .hashing
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let (user, rehash) = match (user, verified) {
        (Some(user), Verified::Yes { rehash }) if !user.disabled => (user, rehash),
        (user, verified) => {
            let reason = match (&user, verified) {
                (None, _) => "unknown_account",
                (Some(u), Verified::Yes { .. }) if u.disabled => "disabled",
                (Some(u), _) if u.disabled => "disabled",
                _ => "wrong_password",
            };
            audit::record(
                &mut conn,
                AuditEntry {
                    event: event::LOGIN_FAILED,
                    actor_id: None,
                    subject_id: user.as_ref().map(|u| u.id),
                    session_id: None,
                    meta,
                    details: json!({ "reason": reason }),
                },
            )
            .await?;
            throttle::record_failure(state, subject, &meta.ip_key).await;
            return Err(AuthError::InvalidCredentials);
        }
    };

    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let refresh = RefreshToken::generate();
    let refresh_hash = hash_token(&refresh.0);
    let session_expires = now + state.absolute_ttl();
    let refresh_expires = (now + state.idle_ttl()).min(session_expires);
    let session = NewSession {
        id: session_id,
        user_id: user.id,
        created_at: now,
        last_used_at: now,
        expires_at: session_expires,
        user_agent: meta.user_agent.as_deref(),
        ip: Some(&meta.ip),
        refresh_delivery: delivery.as_str(),
    };
    let first_refresh = NewRefresh {
        id: Uuid::now_v7(),
        session_id,
        parent_id: None,
        token_hash: &refresh_hash,
        issued_at: now,
        expires_at: refresh_expires,
    };
    let entry = AuditEntry {
        event: event::LOGIN_SUCCEEDED,
        actor_id: Some(user.id),
        subject_id: Some(user.id),
        session_id: Some(session_id),
        meta,
        details: json!({ "refresh_delivery": delivery.as_str(), "rehashed": rehash.is_some() }),
    };
    // The session, its first refresh token and the audit row are one statement, written only
    // if the user row still has the epoch, role and enabled state verified above (a password
    // change, demotion, disabling or logout-all that committed meanwhile moved the epoch); a
    // rehash (rare: the parameters changed) joins them in a transaction.
    let verified = sessions::Verified {
        auth_epoch: user.auth_epoch,
        role: &user.role,
    };
    let opened = match &rehash {
        None => sessions::open(&mut conn, &verified, &session, &first_refresh, &entry).await?,
        Some(new_hash) => {
            conn.transaction(async |conn| {
                users::replace_password_hash(conn, user.id, &user.password_hash, new_hash).await?;
                sessions::open(conn, &verified, &session, &first_refresh, &entry).await
            })
            .await?
        }
    };
    if !opened {
        // What the password was checked against changed while it was checked.
        audit::record(
            &mut conn,
            AuditEntry {
                event: event::LOGIN_FAILED,
                actor_id: None,
                subject_id: Some(user.id),
                session_id: None,
                meta,
                details: json!({ "reason": "account_changed" }),
            },
        )
        .await?;
        return Err(AuthError::InvalidCredentials);
    }
    throttle::record_success(state, subject, &meta.ip_key).await;

    // At most `max_sessions_per_user` live sessions: the oldest beyond go (rarely any).
    let cap = state.settings.auth.max_sessions_per_user;
    let over =
        sessions::live_beyond(&mut conn, user.id, now, state.idle_ttl(), i64::from(cap)).await?;
    drop(conn);
    // The session is open: a failure here must not fail the login (the next login, or a
    // retry, ends the extra sessions).
    if !over.is_empty()
        && let Err(err) = revoke_sessions(
            state,
            user.id,
            SessionSelector::Beyond(cap),
            event::SESSION_REVOKED,
            meta,
        )
        .await
    {
        tracing::warn!(error = %err, "ending sessions beyond the cap failed");
    }

    // Signed with the role the session was opened under: the statement above checked it.
    let (access_token, expires_in, scope) =
        access_token_for(state, user.id, role_of(&user), session_id)?;
    Ok(Issued {
        access_token,
        expires_in,
        scope,
        refresh_token: refresh.0,
        refresh_expires_in: (refresh_expires - now).num_seconds(),
        session_id,
        delivery,
    })
}

enum RefreshOutcome {
    Rotated {
        user: UserRow,
        session_id: Uuid,
        refresh_expires: DateTime<Utc>,
    },
    Reused(Vec<RevocationRow>),
    Invalid,
}

/// Spend a refresh token and issue its successor, in one transaction. The token row is
/// locked, so of concurrent refreshes with one token exactly one finds it unspent; the
/// others see it spent, which is reuse: the whole session is revoked (RFC 9700 4.14).
pub async fn refresh(
    state: &AppState,
    presented: &str,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    if presented.is_empty() || presented.len() > 512 {
        return Err(AuthError::RefreshInvalid);
    }
    let hash = hash_token(presented);
    let mut conn = shared::db::conn(&state.pool).await?;
    // Limited per ip and per session (one Redis round trip; unknown tokens count together).
    // The session is read here unlocked, and the token row read again under the lock below:
    // the limit must be known before the transaction, and no row lock may be held across a
    // Redis call.
    let known = sessions::find_refresh(&mut conn, &hash)
        .await?
        .map(|(_, s)| s.id);
    let session_key = known.map_or_else(|| "unknown".to_owned(), |id| id.to_string());
    let a = &state.settings.auth;
    state
        .limiter
        .enforce(&[
            Limit::new("refresh-ip", a.rate_refresh_ip, meta.ip_key.as_str()),
            Limit::new("refresh-session", a.rate_refresh_session, session_key),
        ])
        .await?;
    let now = Utc::now();
    let idle = state.idle_ttl();
    let successor = RefreshToken::generate();
    let successor_hash = hash_token(&successor.0);
    let outcome = conn
        .transaction(async |conn| {
            // Rows are locked in the order every transaction here takes them: the session,
            // then its token (then, at the end, the audit head); a revocation or a deletion
            // takes the session before the tokens, so the two can never wait on each other.
            let Some(session_id) = known else {
                return Ok::<_, diesel::result::Error>(RefreshOutcome::Invalid);
            };
            sessions::lock(conn, session_id).await?;
            let Some((token, session)) = sessions::find_refresh_for_update(conn, &hash).await?
            else {
                return Ok(RefreshOutcome::Invalid);
            };
            if token.used_at.is_some() {
                let newly = !sessions::revoke(
                    conn,
                    Revoke::These(&[session.id]),
                    "refresh_token_reuse",
                    now,
                )
                .await?
                .is_empty();
                let rows = if newly {
                    state
                        .revocations
                        .record(conn, &[Revocation::Session(session.id.to_string())], now)
                        .await?
                } else {
                    Vec::new()
                };
                audit::record(
                    conn,
                    AuditEntry {
                        event: event::REFRESH_REUSE_DETECTED,
                        actor_id: None,
                        subject_id: Some(session.user_id),
                        session_id: Some(session.id),
                        meta,
                        details: json!({ "token_id": token.id, "session_was_live": newly }),
                    },
                )
                .await?;
                return Ok(RefreshOutcome::Reused(rows));
            }
            if !session_usable(&session, now, idle) || token.expires_at <= now {
                return Ok(RefreshOutcome::Invalid);
            }
            let Some(user) = users::find(conn, session.user_id).await? else {
                return Ok(RefreshOutcome::Invalid);
            };
            if user.disabled {
                return Ok(RefreshOutcome::Invalid);
            }
            let refresh_expires = (now + idle).min(session.expires_at);
            sessions::mark_refresh_used(conn, token.id, now).await?;
            sessions::insert_refresh(
                conn,
                NewRefresh {
                    id: Uuid::now_v7(),
                    session_id: session.id,
                    parent_id: Some(token.id),
                    token_hash: &successor_hash,
                    issued_at: now,
                    expires_at: refresh_expires,
                },
            )
            .await?;
            sessions::touch(conn, session.id, now).await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::REFRESH,
                    actor_id: Some(user.id),
                    subject_id: Some(user.id),
                    session_id: Some(session.id),
                    meta,
                    details: json!({}),
                },
            )
            .await?;
            Ok(RefreshOutcome::Rotated {
                user,
                session_id: session.id,
                refresh_expires,
            })
        })
        .await?;

    match outcome {
        RefreshOutcome::Invalid => Err(AuthError::RefreshInvalid),
        RefreshOutcome::Reused(rows) => {
            tracing::warn!("refresh token reuse detected; session revoked");
            state.revocations.publish(&mut conn, rows).await;
            Err(AuthError::RefreshReused)
        }
        RefreshOutcome::Rotated {
            user,
            session_id,
            refresh_expires,
        } => {
            let (access_token, expires_in, scope) =
                access_token_for(state, user.id, role_of(&user), session_id)?;
            Ok(Issued {
                access_token,
                expires_in,
                scope,
                refresh_token: successor.0,
                refresh_expires_in: (refresh_expires - now).num_seconds(),
                session_id,
                delivery,
            })
        }
    }
}

fn session_usable(session: &SessionRow, now: DateTime<Utc>, idle: chrono::Duration) -> bool {
    session.revoked_at.is_none() && session.expires_at > now && session.last_used_at + idle > now
}

/// Revoke sessions (of `user_id`) with their durable denylist record and an audit row, in
/// one transaction; then publish. Returns the sessions revoked.
pub async fn revoke_sessions(
    state: &AppState,
    user_id: Uuid,
    which: SessionSelector,
    audit_event: &'static str,
    meta: &RequestMeta,
) -> Result<Vec<Uuid>, AuthError> {
    let now = Utc::now();
    let mut conn = shared::db::conn(&state.pool).await?;
    let (revoked, rows) = conn
        .transaction(async |conn| {
            let revoked = match which {
                SessionSelector::One(id) => {
                    sessions::revoke(conn, Revoke::These(&[id]), audit_event, now).await?
                }
                SessionSelector::AllExcept(keep) => {
                    // Logins in flight for this user open no session after this commits.
                    users::bump_epoch(conn, user_id).await?;
                    let all = Revoke::AllOf {
                        user_id,
                        except: keep,
                    };
                    sessions::revoke(conn, all, audit_event, now).await?
                }
                SessionSelector::Beyond(cap) => {
                    users::lock(conn, user_id).await?;
                    let idle = state.idle_ttl();
                    let over =
                        sessions::live_beyond(conn, user_id, now, idle, i64::from(cap)).await?;
                    sessions::revoke(conn, Revoke::These(&over), "session_limit", now).await?
                }
            };
            let revocations: Vec<Revocation> = revoked
                .iter()
                .map(|sid| Revocation::Session(sid.to_string()))
                .collect();
            let rows = state.revocations.record(conn, &revocations, now).await?;
            let session_id = match which {
                SessionSelector::One(id) => Some(id),
                SessionSelector::AllExcept(keep) => keep,
                SessionSelector::Beyond(_) => None,
            };
            let mut details = json!({ "sessions_revoked": revoked.len() });
            if let SessionSelector::Beyond(cap) = which {
                details["reason"] = json!("session_limit");
                details["max_sessions"] = json!(cap);
            }
            audit::record(
                conn,
                AuditEntry {
                    event: audit_event,
                    actor_id: Some(user_id),
                    subject_id: Some(user_id),
                    session_id,
                    meta,
                    details,
                },
            )
            .await?;
            Ok::<_, diesel::result::Error>((revoked, rows))
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    Ok(revoked)
}

#[derive(Debug, Clone, Copy)]
pub enum SessionSelector {
    One(Uuid),
    AllExcept(Option<Uuid>),
    /// The live sessions beyond the newest `n` (the per-user cap).
    Beyond(u32),
}

/// Whether an access token was revoked by its `jti` (`/oauth/revoke`).
pub async fn token_revoked(state: &AppState, jti: &str) -> Result<bool, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    Ok(revocations::token_revoked(&mut conn, jti, Utc::now()).await?)
}

/// Logout with a refresh token (body or cookie): revoke its session. Unknown or already
/// revoked tokens are fine: logging out twice is harmless.
pub async fn logout_with_refresh(
    state: &AppState,
    presented: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    if presented.is_empty() || presented.len() > 512 {
        return Ok(());
    }
    let hash = hash_token(presented);
    let mut conn = shared::db::conn(&state.pool).await?;
    let found = sessions::find_refresh(&mut conn, &hash).await?;
    drop(conn);
    if let Some((_, session)) = found {
        revoke_sessions(
            state,
            session.user_id,
            SessionSelector::One(session.id),
            event::LOGOUT,
            meta,
        )
        .await?;
    }
    Ok(())
}

/// One page of the caller's live sessions, newest first, and the cursor of the next.
pub async fn list_sessions(
    state: &AppState,
    user_id: Uuid,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<SessionRow>, Option<String>), AuthError> {
    let before: Option<Uuid> = cursor
        .map(|c| shared::cursor::decode(c).ok_or_else(shared::cursor::invalid))
        .transpose()?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = sessions::list_live(
        &mut conn,
        user_id,
        Utc::now(),
        state.idle_ttl(),
        before,
        i64::from(limit) + 1,
    )
    .await?;
    Ok(shared::cursor::split_page(rows, limit as usize, |s| {
        shared::cursor::encode(&s.id)
    }))
}

/// Revoke one of the caller's sessions; someone else's (or an unknown id) is 404.
pub async fn delete_session(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let session = sessions::find(&mut conn, session_id).await?;
    drop(conn);
    match session {
        Some(s) if s.user_id == user_id => {
            revoke_sessions(
                state,
                user_id,
                SessionSelector::One(session_id),
                event::SESSION_REVOKED,
                meta,
            )
            .await?;
            Ok(())
        }
        _ => Err(AuthError::NotFound),
    }
}
