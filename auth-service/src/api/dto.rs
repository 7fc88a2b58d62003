//! Request and response bodies, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Enum, Object, Union};
use shared::patterned::SingleLine;
use shared::tokens::Role;
use uuid::Uuid;

use crate::service::auth::{Delivery, Issued};
use crate::store::sessions::SessionRow;
use crate::store::users::UserRow;

/// An account. Never carries a password or hash.
#[derive(Debug, Clone, Object)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    /// Whether the owner proved the address (a verification link, or a password reset).
    pub email_verified: bool,
    /// 1 to 100 characters, or null.
    #[oai(nullable)]
    pub display_name: Option<String>,
    pub role: Role,
    pub disabled: bool,
    /// Whether a second factor is enrolled (login then asks for it).
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(u: UserRow) -> Self {
        Self {
            id: u.id,
            email: u.email,
            email_verified: u.email_verified_at.is_some(),
            display_name: u.display_name,
            role: u.role.parse().unwrap_or(Role::User),
            disabled: u.disabled,
            mfa_enabled: u.mfa_enabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SignupRequest {
    /// Trimmed; unique regardless of case.
    #[oai(validator(max_length = 254, pattern = r"\S"))]
    pub email: String,
    /// 8 to 256 characters (after Unicode NFKC); common and breached passwords are refused.
    #[oai(validator(min_length = 8, max_length = 256))]
    pub password: String,
    /// 1 to 100 characters, no control characters; null for none.
    #[oai(nullable)]
    pub display_name: Option<SingleLine<100>>,
}

/// Where the refresh token goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
#[oai(rename_all = "lowercase")]
pub enum RefreshDelivery {
    /// In the response body (`refresh_token`).
    #[default]
    Body,
    /// Only in an `HttpOnly; Secure; SameSite=Strict` cookie scoped to `/v1/auth`.
    Cookie,
}

impl From<RefreshDelivery> for Delivery {
    fn from(d: RefreshDelivery) -> Self {
        match d {
            RefreshDelivery::Body => Delivery::Body,
            RefreshDelivery::Cookie => Delivery::Cookie,
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct LoginRequest {
    #[oai(validator(pattern = r"\S"))]
    pub email: String,
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: String,
    /// `body` (default; also when null) or `cookie`.
    #[oai(nullable)]
    pub refresh_delivery: Option<RefreshDelivery>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token; omit it (or null) when it travels in the cookie.
    #[oai(nullable)]
    pub refresh_token: Option<String>,
}

/// A new access token, and the refresh token that replaces the one presented.
#[derive(Debug, Object)]
pub struct TokenPair {
    /// A JWT (`typ: at+jwt`) to send as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Present only when the refresh token is delivered in the body.
    #[oai(skip_serializing_if_is_none)]
    pub refresh_token: Option<String>,
    /// Seconds until the refresh token expires if unused.
    pub refresh_expires_in: i64,
    /// The session (refresh-token family) these tokens belong to.
    pub session_id: Uuid,
}

impl From<&Issued> for TokenPair {
    fn from(i: &Issued) -> Self {
        Self {
            access_token: i.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: i.expires_in,
            refresh_token: (i.delivery == Delivery::Body).then(|| i.refresh_token.clone()),
            refresh_expires_in: i.refresh_expires_in,
            session_id: i.session_id,
        }
    }
}

/// A live session of the caller.
#[derive(Debug, Object)]
pub struct Session {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// When the session ends at the latest (its absolute lifetime).
    pub expires_at: DateTime<Utc>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    #[oai(nullable)]
    pub ip: Option<String>,
    /// Whether this is the session of the token making the request.
    pub current: bool,
}

impl Session {
    pub fn from_row(s: SessionRow, current: Option<Uuid>) -> Self {
        Self {
            current: Some(s.id) == current,
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
            ip: s.ip,
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// A new display name (1 to 100 characters, no control characters), or null to clear
    /// it; absent leaves it as it is.
    #[oai(nullable)]
    pub display_name: MaybeUndefined<SingleLine<100>>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub current_password: String,
    /// 8 to 256 characters (after Unicode NFKC); common and breached passwords are refused.
    #[oai(validator(min_length = 8, max_length = 256))]
    pub new_password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct EmailTokenRequest {
    /// The token from the mailed link (the part after `#verify-email=`).
    #[oai(validator(min_length = 1, max_length = 128))]
    pub token: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[oai(validator(max_length = 254, pattern = r"\S"))]
    pub email: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordResetConfirmRequest {
    /// The token from the mailed link (the part after `#reset-password=`).
    #[oai(validator(min_length = 1, max_length = 128))]
    pub token: String,
    /// 8 to 256 characters (after Unicode NFKC); common and breached passwords are refused.
    #[oai(validator(min_length = 8, max_length = 256))]
    pub new_password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    /// Trimmed; unique regardless of case.
    #[oai(validator(max_length = 254, pattern = r"\S"))]
    pub new_email: String,
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub current_password: String,
}

/// A request taken; what follows goes by mail.
#[derive(Debug, Object)]
pub struct Accepted {
    /// What happens next, for humans.
    pub message: String,
}

/// A login whose password was right, for an account with a second factor: no tokens yet.
/// `POST /v1/auth/mfa` with `mfa_token` and a code completes it.
#[derive(Debug, Object)]
pub struct MfaChallenge {
    /// Always true.
    pub mfa_required: bool,
    /// Good for five minutes and five tries (a code, or a passkey ceremony begun).
    pub mfa_token: String,
    /// What completes it: `totp` (a code from the authenticator app, `POST /v1/auth/mfa`),
    /// `passkey` (`POST /v1/auth/passkey/start` with this `mfa_token`), `recovery_code`.
    pub methods: Vec<String>,
}

/// What a login answers: tokens, or, with a second factor enrolled, a challenge.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum LoginResult {
    Tokens(TokenPair),
    Mfa(MfaChallenge),
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct MfaRequest {
    #[oai(validator(min_length = 1, max_length = 128))]
    pub mfa_token: String,
    /// Six digits from the authenticator app, or a recovery code (`xxxx-xxxx-xxxx-xxxx`).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub code: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct EnrolTotpRequest {
    /// Needed only when the session's login is older than `AUTH_REAUTH_MAX_AGE_SECS`.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub current_password: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct TotpCodeRequest {
    /// Six digits from the authenticator app (removal also takes a recovery code).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub code: String,
}

/// A new authenticator secret, shown once; `confirm` with a first code turns it on.
#[derive(Debug, Object)]
pub struct TotpEnrolment {
    /// `otpauth://totp/...` for authenticator apps (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The secret in base32, to type in by hand.
    pub secret: String,
    /// A QR code of `otpauth_uri`: a PNG, base64.
    pub qr_png: String,
}

/// The ten one-time recovery codes, shown once.
#[derive(Debug, Object)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// The first step of a passkey ceremony: pass `options` to the browser
/// (`navigator.credentials.create` to add a passkey, `.get` to log in, after
/// `PublicKeyCredential.parse{Creation,Request}OptionsFromJSON(options.publicKey)`), then send
/// its answer with `challenge_id` to the matching `finish` within five minutes.
#[derive(Debug, Object)]
pub struct PasskeyChallenge {
    pub challenge_id: Uuid,
    /// WebAuthn's options in their JSON form: `{"publicKey": {...}}` (and, for a passwordless
    /// login, `"mediation": "conditional"`, which a login button may ignore).
    pub options: std::collections::BTreeMap<String, serde_json::Value>,
}

impl From<crate::service::passkeys::Started> for PasskeyChallenge {
    fn from(started: crate::service::passkeys::Started) -> Self {
        Self {
            challenge_id: started.challenge_id,
            options: match started.options {
                serde_json::Value::Object(map) => map.into_iter().collect(),
                _ => Default::default(),
            },
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyRegisterRequest {
    /// Always asked for: a passkey logs in on its own.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub current_password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyRegisterFinishRequest {
    /// From the first step.
    pub challenge_id: Uuid,
    /// What the user calls it (1 to 64 characters); "Passkey" when null or absent.
    #[oai(nullable)]
    pub name: Option<SingleLine<64>>,
    /// The browser's answer: the `PublicKeyCredential`'s JSON form (`credential.toJSON()`).
    pub credential: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A registered passkey (its public key stays on the server).
#[derive(Debug, Object)]
pub struct Passkey {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The last login with it, or null.
    #[oai(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<crate::store::passkeys::PasskeyRow> for Passkey {
    fn from(p: crate::store::passkeys::PasskeyRow) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

/// The caller's passkeys, oldest first (at most ten).
#[derive(Debug, Object)]
pub struct PasskeyList {
    pub items: Vec<Passkey>,
}

/// A passkey added. `recovery_codes`: ten one-time codes, shown once, when the account had
/// none (its first second factor); else null.
#[derive(Debug, Object)]
pub struct PasskeyRegistered {
    pub passkey: Passkey,
    #[oai(nullable)]
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyRemoveRequest {
    /// Always asked for: a passkey logs in on its own.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub current_password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    /// A password login's challenge, to answer it with one of that user's passkeys; absent
    /// for a passwordless login.
    #[oai(validator(min_length = 1, max_length = 128))]
    pub mfa_token: Option<String>,
    /// How the refresh token travels (passwordless only; a second factor keeps the
    /// login's). Default `body` (also when null).
    #[oai(nullable)]
    pub refresh_delivery: Option<RefreshDelivery>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyLoginFinishRequest {
    /// From `POST /v1/auth/passkey/start`.
    pub challenge_id: Uuid,
    /// The browser's answer: the `PublicKeyCredential`'s JSON form (`credential.toJSON()`).
    pub credential: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The caller's second factors.
#[derive(Debug, Object)]
pub struct MfaStatus {
    /// An authenticator app is confirmed.
    pub totp: bool,
    /// How many passkeys.
    pub passkeys: u32,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
}
