//! `/v1/auth/*`: signup, login, refresh, logout and sessions.

use std::sync::Arc;

use poem::Request;
use poem::http::header;
use poem::web::cookie::{Cookie, SameSite};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme};
use shared::body::JsonBody;
use shared::error_set;
use shared::page::Page;
use shared::patterned::{Cursor, Patterned};
use shared::problem::ApiErr;
use shared::tokens::{NotAllowed, Principal};
use shared::verify::BearerAuth;
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::dto::{
    Accepted, EmailTokenRequest, LoginRequest, LoginResult, MfaChallenge, MfaRequest,
    PasskeyChallenge, PasskeyLoginFinishRequest, PasskeyLoginRequest, PasswordResetConfirmRequest,
    PasswordResetRequest, RefreshRequest, Session, SignupRequest, TokenPair, User,
};
use crate::api::request_meta;
use crate::error::AuthError;
use crate::service::auth::{self, Delivery, Issued, SessionSelector, SignupInput};
use crate::service::{mfa, passkeys, recovery};
use crate::state::AppState;
use crate::store::audit::event;

pub struct AuthApi {
    pub state: Arc<AppState>,
}

#[derive(ApiResponse)]
pub enum SignupResponse {
    /// The account was created. Log in to get tokens.
    #[oai(status = 201)]
    Created(Json<User>),
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    /// New tokens. With cookie delivery the refresh token is only in `Set-Cookie`.
    #[oai(status = 200)]
    Ok(
        Json<TokenPair>,
        /// The refresh cookie (cookie delivery only).
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// New tokens (with cookie delivery the refresh token is only in `Set-Cookie`); or,
    /// for an account with a second factor, a challenge for `POST /v1/auth/mfa` (no
    /// tokens, no cookie).
    #[oai(status = 200)]
    Ok(
        Json<LoginResult>,
        /// The refresh cookie (cookie delivery only).
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// The session is revoked (or already was). Clears the refresh cookie.
    #[oai(status = 204)]
    Done(#[oai(header = "Set-Cookie")] Option<String>),
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
pub enum AcceptedResponse {
    /// Taken; a mail follows.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

#[derive(ApiResponse)]
pub enum PasskeyChallengeResponse {
    /// A ceremony began: the options for the browser.
    #[oai(status = 200)]
    Ok(Json<PasskeyChallenge>),
}

#[derive(ApiResponse)]
pub enum SessionsResponse {
    /// The caller's live sessions, newest first.
    #[oai(status = 200)]
    Ok(Json<Page<Session>>),
}

error_set!(pub SignupErrors: 409, 413, 415, 422, 429);
error_set!(pub LoginErrors: 401, 413, 415, 422, 429);
error_set!(pub PasskeyLoginErrors: 401, 403, 413, 415, 422, 429);
error_set!(pub RefreshErrors: 401, 403, 413, 415, 422, 429);
error_set!(pub LogoutErrors: 401, 403, 413, 415, 422);
error_set!(pub BearerErrors: 401, 403);
error_set!(pub ListErrors: 401, 403, 422);
error_set!(pub SessionErrors: 401, 403, 404);
error_set!(pub VerifyErrors: 400, 409, 413, 415, 422, 429);
error_set!(pub ResendErrors: 401, 403, 409, 429);
error_set!(pub ResetErrors: 413, 415, 422, 429);
error_set!(pub ResetConfirmErrors: 400, 413, 415, 422, 429);

// Logout accepts a bearer token that is well signed whatever the state of its session:
// logging out of an already revoked session is harmless, not an error.
/// An OAuth 2 bearer access token (RFC 6750), verified.
#[derive(SecurityScheme)]
#[oai(
    rename = "BearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_signed_bearer"
)]
pub struct SignedBearer(Principal);

async fn check_signed_bearer(
    req: &Request,
    bearer: poem_openapi::auth::Bearer,
) -> poem::Result<Principal> {
    let Some(state) = req.data::<Arc<AppState>>() else {
        return Err(shared::ApiError::internal().into());
    };
    let claims = state.verifier.verify(&bearer.token).await.map_err(|err| {
        tracing::info!(reason = ?err, "bearer token refused at logout");
        shared::ApiError::from(err)
    })?;
    // A revoked session is fine (logging out again is harmless); a revoked token is not.
    if auth::token_revoked(state, &claims.jti)
        .await
        .map_err(shared::ApiError::from)?
    {
        tracing::info!("revoked access token refused at logout");
        return Err(shared::ApiError::token_revoked().into());
    }
    Ok(Principal::from_claims(&claims))
}

/// Why logout refused the request's bearer token (it fell back to the refresh token and
/// found none): `TOKEN_EXPIRED` for an expired one and `TOKEN_REVOKED` for a revoked one, as
/// on every other route.
async fn refused_bearer(state: &AppState, req: &Request) -> shared::ApiError {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    match bearer {
        Some(token) => match state.verifier.verify(token.trim()).await {
            Err(err) => shared::ApiError::from(err),
            Ok(claims)
                if auth::token_revoked(state, &claims.jti)
                    .await
                    .unwrap_or(false) =>
            {
                shared::ApiError::token_revoked()
            }
            Ok(_) => shared::ApiError::token_invalid(),
        },
        None => shared::ApiError::token_invalid(),
    }
}

/// Logout takes a bearer token or a refresh token (body or cookie).
#[derive(SecurityScheme)]
pub enum LogoutAuth {
    Bearer(SignedBearer),
    #[oai(fallback)]
    None,
}

/// The refresh cookie, as the login set it (`Set-Cookie`): `HttpOnly`, `SameSite=Strict`,
/// scoped to `/v1/auth`, `Secure` unless configured off for local HTTP.
fn refresh_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let mut cookie = Cookie::new_with_str(&state.settings.auth.cookie_name, value);
    cookie.set_path("/v1/auth");
    cookie.set_max_age(std::time::Duration::from_secs(
        max_age.max(0).unsigned_abs(),
    ));
    cookie.set_http_only(true);
    cookie.set_secure(state.settings.auth.cookie_secure);
    cookie.set_same_site(SameSite::Strict);
    cookie.to_string()
}

/// The refresh cookie's value, if the request carries a non-empty one (the jar is filled by
/// poem's `CookieJarManager`, see `startup::Application::endpoint`).
fn read_cookie(req: &Request, name: &str) -> Option<String> {
    req.cookie()
        .get(name)
        .map(|cookie| cookie.value_str().to_owned())
        .filter(|value| !value.is_empty())
}

/// A cookie-carried request must come from an allowed `Origin` (the cookie is sent by the
/// browser on its own, so this is what stops cross-site use).
fn check_origin(state: &AppState, req: &Request) -> Result<(), AuthError> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    match origin {
        Some(o)
            if state
                .settings
                .csrf_origins()
                .iter()
                .any(|allowed| allowed == o) =>
        {
            Ok(())
        }
        _ => {
            tracing::warn!(origin = ?origin, "cookie use from a disallowed origin");
            Err(AuthError::CsrfFailed)
        }
    }
}

fn token_response(state: &AppState, issued: &Issued) -> TokenResponse {
    let cookie = (issued.delivery == Delivery::Cookie)
        .then(|| refresh_cookie(state, &issued.refresh_token, issued.refresh_expires_in));
    TokenResponse::Ok(Json(TokenPair::from(issued)), cookie)
}

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account.
    ///
    /// Rate limit: per client ip (`AUTH_RATE_SIGNUP_IP`, default 20 per 600 s). Limited
    /// routes send `RateLimit-Policy` and `RateLimit`; a refused request gets 429 with
    /// `Retry-After`.
    #[oai(path = "/signup", method = "post", operation_id = "signup")]
    async fn signup(
        &self,
        req: &Request,
        body: JsonBody<SignupRequest>,
    ) -> Result<SignupResponse, ApiErr<SignupErrors>> {
        let meta = request_meta(req);
        let body = body.0;
        let user = auth::signup(
            &self.state,
            SignupInput {
                email: body.email,
                password: body.password,
                display_name: body.display_name.map(Patterned::into_inner),
            },
            &meta,
        )
        .await?;
        Ok(SignupResponse::Created(Json(user.into())))
    }

    /// Log in with email and password. Unknown email and wrong password get the same 401
    /// in the same time.
    ///
    /// Rate limits: per client ip (`AUTH_RATE_LOGIN_IP`, default 30 per 60 s) and per account
    /// (`AUTH_RATE_LOGIN_ACCOUNT`, 10 per 60 s). Repeated failures for an account make the
    /// failing ip (after 5) or every unknown ip (after 20) wait, 1 s doubling up to 15 min;
    /// never a permanent lockout, and never for the owner's known ip. Refused: 429 with
    /// `Retry-After`.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        req: &Request,
        body: JsonBody<LoginRequest>,
    ) -> Result<LoginResponse, ApiErr<LoginErrors>> {
        let meta = request_meta(req);
        let body = body.0;
        let delivery = body.refresh_delivery.unwrap_or_default().into();
        match auth::login(&self.state, body.email, body.password, delivery, &meta).await? {
            auth::LoginOutcome::Tokens(issued) => {
                let TokenResponse::Ok(Json(pair), cookie) = token_response(&self.state, &issued);
                Ok(LoginResponse::Ok(Json(LoginResult::Tokens(pair)), cookie))
            }
            auth::LoginOutcome::MfaRequired { mfa_token, methods } => Ok(LoginResponse::Ok(
                Json(LoginResult::Mfa(MfaChallenge {
                    mfa_required: true,
                    mfa_token,
                    methods,
                })),
                None,
            )),
        }
    }

    /// Complete a login that answered `mfa_required` with a code from the authenticator app
    /// or a recovery code: tokens, delivered as the login asked, with `amr`
    /// `["pwd","otp","mfa"]` (or `["pwd","mfa"]` for a recovery code). A wrong or used code, or a challenge that
    /// expired (5 minutes) or took 5 codes, is 401 `MFA_CODE_INVALID`. Each code is good
    /// once.
    ///
    /// Rate limits and throttling: as for login, per ip and per account; and an account
    /// takes at most 10 wrong codes a day (logins and removals together), then 429.
    #[oai(path = "/mfa", method = "post", operation_id = "completeMfa")]
    async fn mfa(
        &self,
        req: &Request,
        body: JsonBody<MfaRequest>,
    ) -> Result<TokenResponse, ApiErr<LoginErrors>> {
        let meta = request_meta(req);
        let issued = mfa::complete(&self.state, &body.0.mfa_token, &body.0.code, &meta).await?;
        Ok(token_response(&self.state, &issued))
    }

    /// Begin a login with a passkey. Without `mfa_token`: passwordless, with any passkey
    /// of this site the browser holds (the answer names the user). With the `mfa_token` of a
    /// login that answered `mfa_required` (with `passkey` among its `methods`): that user's
    /// passkeys, as the second factor (counts as one of the challenge's five tries; an unknown
    /// or spent one is 401 `MFA_CODE_INVALID`). Answers the browser's options; send its
    /// answer to `POST /v1/auth/passkey/finish` within five minutes.
    ///
    /// Rate limit: per client ip (`AUTH_RATE_LOGIN_IP`, as login).
    #[oai(
        path = "/passkey/start",
        method = "post",
        operation_id = "startPasskeyLogin"
    )]
    async fn passkey_start(
        &self,
        req: &Request,
        body: JsonBody<Option<PasskeyLoginRequest>>,
    ) -> Result<PasskeyChallengeResponse, ApiErr<LoginErrors>> {
        let meta = request_meta(req);
        let body = body.0;
        let mfa_token = body.as_ref().and_then(|b| b.mfa_token.clone());
        let delivery = body
            .and_then(|b| b.refresh_delivery)
            .unwrap_or_default()
            .into();
        let started =
            passkeys::login_start(&self.state, mfa_token.as_deref(), delivery, &meta).await?;
        Ok(PasskeyChallengeResponse::Ok(Json(started.into())))
    }

    /// Finish a passkey login with the browser's answer: tokens, delivered as the start
    /// asked (or, for a second factor, as the password login asked), with `amr`
    /// `["pop","mfa"]` (passwordless) or `["pwd","pop","mfa"]`. The ceremony is good once.
    /// Refused: 401 `INVALID_CREDENTIALS` (passwordless: unknown passkey, wrong signature,
    /// spent or expired ceremony, disabled account), 401 `MFA_CODE_INVALID` (second factor),
    /// 403 `EMAIL_NOT_VERIFIED` when logins need a verified address; 422 when `credential`
    /// is not a WebAuthn assertion.
    #[oai(
        path = "/passkey/finish",
        method = "post",
        operation_id = "finishPasskeyLogin"
    )]
    async fn passkey_finish(
        &self,
        req: &Request,
        body: JsonBody<PasskeyLoginFinishRequest>,
    ) -> Result<TokenResponse, ApiErr<PasskeyLoginErrors>> {
        let meta = request_meta(req);
        let body = body.0;
        let issued = passkeys::login_finish(
            &self.state,
            body.challenge_id,
            serde_json::Value::Object(body.credential.into_iter().collect()),
            &meta,
        )
        .await?;
        Ok(token_response(&self.state, &issued))
    }

    /// Exchange a refresh token for a new pair. The token is single use: presenting it again
    /// revokes the whole session. The new refresh token travels the way the old one came.
    ///
    /// Rate limits: per client ip (`AUTH_RATE_REFRESH_IP`, default 120 per 60 s) and per
    /// session (`AUTH_RATE_REFRESH_SESSION`, 30 per 60 s). Refused: 429 with `Retry-After`.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        req: &Request,
        body: JsonBody<Option<RefreshRequest>>,
    ) -> Result<TokenResponse, ApiErr<RefreshErrors>> {
        let meta = request_meta(req);
        let from_body = body
            .0
            .and_then(|b| b.refresh_token)
            .filter(|t| !t.is_empty());
        let (token, delivery) = match from_body {
            Some(token) => (token, Delivery::Body),
            None => {
                let token = read_cookie(req, &self.state.settings.auth.cookie_name)
                    .ok_or(AuthError::RefreshInvalid)?;
                check_origin(&self.state, req)?;
                (token, Delivery::Cookie)
            }
        };
        let issued = auth::refresh(&self.state, &token, delivery, &meta).await?;
        Ok(token_response(&self.state, &issued))
    }

    /// Revoke the current session, named by the bearer token or by a refresh token (body or
    /// cookie). Repeating it is harmless.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        req: &Request,
        auth_: LogoutAuth,
        body: JsonBody<Option<RefreshRequest>>,
    ) -> Result<LogoutResponse, ApiErr<LogoutErrors>> {
        let meta = request_meta(req);
        let cookie_name = &self.state.settings.auth.cookie_name;
        let had_cookie = read_cookie(req, cookie_name).is_some();
        let clear = had_cookie.then(|| refresh_cookie(&self.state, "", 0));
        if let LogoutAuth::Bearer(SignedBearer(principal)) = auth_ {
            if let (Some(user_id), Some(sid)) = (principal.user_id(), principal.session_id) {
                auth::revoke_sessions(
                    &self.state,
                    user_id,
                    SessionSelector::One(sid),
                    event::LOGOUT,
                    &meta,
                )
                .await?;
                return Ok(LogoutResponse::Done(clear));
            }
            return Err(shared::ApiError::forbidden("Only user sessions can log out.").into());
        }
        let from_body = body
            .0
            .and_then(|b| b.refresh_token)
            .filter(|t| !t.is_empty());
        let token = match from_body {
            Some(token) => token,
            None => match read_cookie(req, cookie_name) {
                Some(token) => {
                    check_origin(&self.state, req)?;
                    token
                }
                None => return Err(refused_bearer(&self.state, req).await.into()),
            },
        };
        auth::logout_with_refresh(&self.state, &token, &meta).await?;
        Ok(LogoutResponse::Done(clear))
    }

    /// Revoke every session of the caller, this one included.
    #[oai(path = "/logout-all", method = "post", operation_id = "logoutAll")]
    async fn logout_all(
        &self,
        req: &Request,
        auth_: BearerAuth,
    ) -> Result<NoContent, ApiErr<BearerErrors>> {
        let meta = request_meta(req);
        let user_id = user_of(&auth_.0)?;
        auth::revoke_sessions(
            &self.state,
            user_id,
            SessionSelector::AllExcept(None),
            event::LOGOUT_ALL,
            &meta,
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// Follow a verification link: the token from `<app>/#verify-email=<token>` verifies the
    /// account's address, or, for a link sent by an email change, makes the new address
    /// the account's (409 `EMAIL_TAKEN` if another account took it meanwhile). A token is
    /// single use; an unknown, used or expired one is 400 `VERIFY_TOKEN_INVALID`.
    ///
    /// Rate limit: per client ip (`AUTH_RATE_VERIFY_IP`, default 30 per 900 s).
    #[oai(path = "/verify-email", method = "post", operation_id = "verifyEmail")]
    async fn verify_email(
        &self,
        req: &Request,
        body: JsonBody<EmailTokenRequest>,
    ) -> Result<NoContent, ApiErr<VerifyErrors>> {
        let meta = request_meta(req);
        recovery::verify_email(&self.state, &body.0.token, &meta).await?;
        Ok(NoContent::Done)
    }

    /// Mail the caller's address a new verification link. 409 `CONFLICT` when it is
    /// verified already.
    ///
    /// Rate limit: per user (`AUTH_RATE_VERIFY_RESEND`, default 3 per 900 s).
    #[oai(
        path = "/verify-email/resend",
        method = "post",
        operation_id = "resendVerification"
    )]
    async fn resend_verification(
        &self,
        auth_: BearerAuth,
    ) -> Result<AcceptedResponse, ApiErr<ResendErrors>> {
        let user_id = user_of(&auth_.0)?;
        recovery::resend_verification(&self.state, user_id).await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            message: "A new verification link is on its way.".into(),
        })))
    }

    /// Ask for a password reset link. The answer is the same 202, in the same time, whether
    /// or not an account has the address; when one does, it is mailed a link
    /// (`<app>/#reset-password=<token>`) that works once, for `AUTH_RESET_TOKEN_TTL_SECS`
    /// (30 minutes), and stops working when the password changes or a newer link is sent.
    ///
    /// Rate limits: per client ip (`AUTH_RATE_RESET_IP`, default 10 per 900 s) and per
    /// address (`AUTH_RATE_RESET_ACCOUNT`, 3 per 900 s; an ip the account logged in from
    /// has a budget of its own).
    #[oai(
        path = "/password-reset",
        method = "post",
        operation_id = "requestPasswordReset"
    )]
    async fn password_reset(
        &self,
        req: &Request,
        body: JsonBody<PasswordResetRequest>,
    ) -> Result<AcceptedResponse, ApiErr<ResetErrors>> {
        let meta = request_meta(req);
        recovery::request_password_reset(&self.state, &body.0.email, &meta).await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            message: "If an account has this address, a reset link is on its way.".into(),
        })))
    }

    /// Set a new password with the token of a reset link. Every session of the account is
    /// revoked, and every other reset link; the address counts as verified, and a notice
    /// is mailed. An unknown, used, expired or replaced token is 400 `RESET_TOKEN_INVALID`;
    /// a password the rules refuse is 422 and leaves the token usable.
    ///
    /// Rate limits: per client ip (`AUTH_RATE_RESET_CONFIRM_IP`, default 20 per 900 s) and
    /// per account (`AUTH_RATE_PASSWORD_CHANGE`).
    #[oai(
        path = "/password-reset/confirm",
        method = "post",
        operation_id = "confirmPasswordReset"
    )]
    async fn password_reset_confirm(
        &self,
        req: &Request,
        body: JsonBody<PasswordResetConfirmRequest>,
    ) -> Result<NoContent, ApiErr<ResetConfirmErrors>> {
        let meta = request_meta(req);
        let body = body.0;
        recovery::confirm_password_reset(&self.state, &body.token, body.new_password, &meta)
            .await?;
        Ok(NoContent::Done)
    }

    /// The caller's live sessions, newest first, in cursor pages.
    #[oai(path = "/sessions", method = "get", operation_id = "listSessions")]
    async fn sessions(
        &self,
        auth_: BearerAuth,
        /// 1 to 100, default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<Cursor>>,
    ) -> Result<SessionsResponse, ApiErr<ListErrors>> {
        let user_id = user_of(&auth_.0)?;
        let limit = shared::cursor::page_limit(limit.0)?;
        let (rows, next_cursor) =
            auth::list_sessions(&self.state, user_id, cursor.0.as_deref(), limit).await?;
        let current = auth_.0.session_id;
        Ok(SessionsResponse::Ok(Json(Page::of(
            rows,
            next_cursor,
            |s| Session::from_row(s, current),
        ))))
    }

    /// Revoke one of the caller's sessions. Someone else's session is 404.
    #[oai(
        path = "/sessions/:id",
        method = "delete",
        operation_id = "deleteSession"
    )]
    async fn delete_session(
        &self,
        req: &Request,
        auth_: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiErr<SessionErrors>> {
        let meta = request_meta(req);
        let user_id = user_of(&auth_.0)?;
        auth::delete_session(&self.state, user_id, id.0, &meta).await?;
        Ok(NoContent::Done)
    }
}

/// The user behind a user or admin token; service tokens have no account here.
pub fn user_of(principal: &Principal) -> Result<Uuid, AuthError> {
    principal
        .user_id()
        .ok_or_else(|| NotAllowed("This needs a user's token.".into()).into())
}
