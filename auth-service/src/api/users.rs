//! `/v1/users/me`: the caller's own account.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, OpenApi};
use shared::body::JsonBody;
use shared::error_set;
use shared::problem::ApiErr;
use shared::verify::BearerAuth;
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::auth::{AcceptedResponse, NoContent, PasskeyChallengeResponse, user_of};
use crate::api::dto::{
    Accepted, ChangeEmailRequest, ChangePasswordRequest, EnrolTotpRequest, MfaStatus, PasskeyList,
    PasskeyRegisterFinishRequest, PasskeyRegisterRequest, PasskeyRegistered, PasskeyRemoveRequest,
    RecoveryCodes, TotpCodeRequest, TotpEnrolment, UpdateMeRequest, User,
};
use crate::api::request_meta;
use crate::service::{mfa, passkeys, recovery, users};
use crate::state::AppState;

pub struct UsersApi {
    pub state: Arc<AppState>,
}

#[derive(ApiResponse)]
pub enum UserResponse {
    /// The caller's account.
    #[oai(status = 200)]
    Ok(Json<User>),
}

error_set!(pub MeErrors: 401, 403, 404);
error_set!(pub UpdateMeErrors: 401, 403, 404, 413, 415, 422);
error_set!(pub PasswordErrors: 401, 403, 413, 415, 422, 429);
error_set!(pub EmailChangeErrors: 401, 403, 409, 413, 415, 422, 429);
error_set!(pub EnrolErrors: 401, 403, 404, 409, 413, 415, 422, 429);
error_set!(pub TotpCodeErrors: 401, 403, 404, 409, 413, 415, 422, 429);

#[derive(ApiResponse)]
pub enum EnrolResponse {
    /// A new secret, shown once.
    #[oai(status = 200)]
    Created(Json<TotpEnrolment>),
}

#[derive(ApiResponse)]
pub enum RecoveryCodesResponse {
    /// The factor is on; the recovery codes, shown once.
    #[oai(status = 200)]
    Ok(Json<RecoveryCodes>),
}

#[derive(ApiResponse)]
pub enum PasskeyRegisteredResponse {
    /// The passkey is on.
    #[oai(status = 201)]
    Created(Json<PasskeyRegistered>),
}

#[derive(ApiResponse)]
pub enum MfaStatusResponse {
    /// The caller's factors.
    #[oai(status = 200)]
    Ok(Json<MfaStatus>),
}

#[derive(ApiResponse)]
pub enum PasskeyListResponse {
    /// The caller's passkeys.
    #[oai(status = 200)]
    Ok(Json<PasskeyList>),
}

#[OpenApi(prefix_path = "/v1/users/me", tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's account.
    #[oai(path = "/", method = "get", operation_id = "getMe")]
    async fn get_me(&self, auth_: BearerAuth) -> Result<UserResponse, ApiErr<MeErrors>> {
        let user = users::me(&self.state, user_of(&auth_.0)?).await?;
        Ok(UserResponse::Ok(Json(user.into())))
    }

    /// Change the caller's `display_name` (null clears it). Other fields cannot be changed
    /// here.
    #[oai(path = "/", method = "patch", operation_id = "updateMe")]
    async fn update_me(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<UpdateMeRequest>,
    ) -> Result<UserResponse, ApiErr<UpdateMeErrors>> {
        let meta = request_meta(req);
        let user_id = user_of(&auth_.0)?;
        let user = match body.0.display_name {
            MaybeUndefined::Undefined => users::me(&self.state, user_id).await?,
            MaybeUndefined::Null => {
                users::update_display_name(&self.state, user_id, None, &meta).await?
            }
            MaybeUndefined::Value(name) => {
                users::update_display_name(&self.state, user_id, Some(name.into_inner()), &meta)
                    .await?
            }
        };
        Ok(UserResponse::Ok(Json(user.into())))
    }

    /// Change the password. Every other session of the caller is revoked; this one stays.
    /// A wrong `current_password` is 401 `INVALID_CREDENTIALS`.
    ///
    /// Rate limit: per user (`AUTH_RATE_PASSWORD_CHANGE`, default 5 per 900 s).
    #[oai(path = "/password", method = "post", operation_id = "changePassword")]
    async fn change_password(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<ChangePasswordRequest>,
    ) -> Result<NoContent, ApiErr<PasswordErrors>> {
        let meta = request_meta(req);
        let user_id = user_of(&auth_.0)?;
        let body = body.0;
        users::change_password(
            &self.state,
            user_id,
            auth_.0.session_id,
            body.current_password,
            body.new_password,
            &meta,
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// Change the account's email address. The new address is mailed a verification link;
    /// the change applies, verified, when it is followed (until then the account keeps
    /// its address). The current address is told at once. A wrong `current_password` is
    /// 401 `INVALID_CREDENTIALS`; an address another account has is 409 `EMAIL_TAKEN`.
    ///
    /// Rate limit: per user (`AUTH_RATE_EMAIL_CHANGE`, default 5 per 900 s).
    #[oai(path = "/email", method = "post", operation_id = "changeEmail")]
    async fn change_email(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<ChangeEmailRequest>,
    ) -> Result<AcceptedResponse, ApiErr<EmailChangeErrors>> {
        let meta = request_meta(req);
        let user_id = user_of(&auth_.0)?;
        let body = body.0;
        recovery::change_email(
            &self.state,
            user_id,
            auth_.0.session_id,
            &body.new_email,
            body.current_password,
            &meta,
        )
        .await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            message: "A verification link is on its way to the new address.".into(),
        })))
    }

    /// Enrol an authenticator app (TOTP, RFC 6238): a new secret, shown once as an otpauth
    /// URI, in base32 and as a QR code. It is not used until `confirm`; enrolling again
    /// before that replaces it. Needs a recent login (the session opened within
    /// `AUTH_REAUTH_MAX_AGE_SECS`, 15 minutes), else 403 `FORBIDDEN`; or the body
    /// `{current_password}` (a wrong one is 401 `INVALID_CREDENTIALS`). 409 `CONFLICT` when
    /// one is confirmed already.
    ///
    /// Rate limit: per user (`AUTH_RATE_MFA_CHANGE`, default 10 per 900 s).
    #[oai(path = "/mfa/totp", method = "post", operation_id = "enrolTotp")]
    async fn enrol_totp(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<Option<EnrolTotpRequest>>,
    ) -> Result<EnrolResponse, ApiErr<EnrolErrors>> {
        let user_id = user_of(&auth_.0)?;
        let password = body.0.and_then(|b| b.current_password);
        let meta = request_meta(req);
        let e = mfa::enrol(&self.state, user_id, auth_.0.session_id, password, &meta).await?;
        Ok(EnrolResponse::Created(Json(TotpEnrolment {
            otpauth_uri: e.otpauth_uri,
            secret: e.secret,
            qr_png: e.qr_png_base64,
        })))
    }

    /// Turn the enrolled authenticator on with a first code: from now on login asks for a
    /// code. Answers the ten one-time recovery codes, once. Every other session of the
    /// caller is revoked and a notice mailed. A wrong code is 422 (`code`).
    #[oai(
        path = "/mfa/totp/confirm",
        method = "post",
        operation_id = "confirmTotp"
    )]
    async fn confirm_totp(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<TotpCodeRequest>,
    ) -> Result<RecoveryCodesResponse, ApiErr<TotpCodeErrors>> {
        let user_id = user_of(&auth_.0)?;
        let codes = mfa::confirm(
            &self.state,
            user_id,
            auth_.0.session_id,
            &body.0.code,
            &request_meta(req),
        )
        .await?;
        Ok(RecoveryCodesResponse::Ok(Json(RecoveryCodes {
            recovery_codes: codes,
        })))
    }

    /// Begin adding a passkey, with `current_password` (checked as a login attempt: a wrong
    /// one is 401 `INVALID_CREDENTIALS` and counts toward the login limits). Answers the options for `navigator.credentials.create`; send the
    /// browser's answer to `.../passkeys/register/finish` within five minutes. At most ten
    /// passkeys (409 beyond).
    ///
    /// Rate limit: per user (`AUTH_RATE_MFA_CHANGE`).
    #[oai(
        path = "/passkeys/register/start",
        method = "post",
        operation_id = "startPasskeyRegistration"
    )]
    async fn passkey_register_start(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<PasskeyRegisterRequest>,
    ) -> Result<PasskeyChallengeResponse, ApiErr<EnrolErrors>> {
        let user_id = user_of(&auth_.0)?;
        let meta = request_meta(req);
        let started =
            passkeys::register_start(&self.state, user_id, body.0.current_password, &meta).await?;
        Ok(PasskeyChallengeResponse::Ok(Json(started.into())))
    }

    /// Finish adding a passkey with the browser's answer. From now on a password login asks
    /// for a second factor (this passkey does), and the passkey also logs in on its own.
    /// Every other session of the caller is revoked and a notice mailed. With no second
    /// factor before, answers ten one-time recovery codes, once. 422 when the ceremony is
    /// unknown, spent, expired or another's, when the password or a factor changed since it
    /// began, or when the answer does not prove its challenge; 409 when the passkey is
    /// registered already.
    #[oai(
        path = "/passkeys/register/finish",
        method = "post",
        operation_id = "finishPasskeyRegistration"
    )]
    async fn passkey_register_finish(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<PasskeyRegisterFinishRequest>,
    ) -> Result<PasskeyRegisteredResponse, ApiErr<EnrolErrors>> {
        let user_id = user_of(&auth_.0)?;
        let body = body.0;
        let done = passkeys::register_finish(
            &self.state,
            user_id,
            auth_.0.session_id,
            body.challenge_id,
            body.name.map(|n| n.into_inner()),
            serde_json::Value::Object(body.credential.into_iter().collect()),
            &request_meta(req),
        )
        .await?;
        Ok(PasskeyRegisteredResponse::Created(Json(
            PasskeyRegistered {
                passkey: done.passkey.into(),
                recovery_codes: done.recovery_codes,
            },
        )))
    }

    /// The caller's second factors: whether an authenticator app is on, how many passkeys,
    /// how many unused recovery codes.
    #[oai(path = "/mfa", method = "get", operation_id = "getMfaStatus")]
    async fn mfa_status(&self, auth_: BearerAuth) -> Result<MfaStatusResponse, ApiErr<MeErrors>> {
        let user_id = user_of(&auth_.0)?;
        let (totp, keys, codes) = passkeys::status(&self.state, user_id).await?;
        Ok(MfaStatusResponse::Ok(Json(MfaStatus {
            totp,
            passkeys: u32::try_from(keys).unwrap_or(u32::MAX),
            recovery_codes_left: u32::try_from(codes).unwrap_or(u32::MAX),
        })))
    }

    /// The caller's passkeys, oldest first.
    #[oai(path = "/passkeys", method = "get", operation_id = "listPasskeys")]
    async fn list_passkeys(
        &self,
        auth_: BearerAuth,
    ) -> Result<PasskeyListResponse, ApiErr<MeErrors>> {
        let user_id = user_of(&auth_.0)?;
        let items = passkeys::list(&self.state, user_id).await?;
        Ok(PasskeyListResponse::Ok(Json(PasskeyList {
            items: items.into_iter().map(Into::into).collect(),
        })))
    }

    /// Remove one of the caller's passkeys, with `current_password` (as for adding one).
    /// Every other session of the caller is revoked and a notice mailed; with no second
    /// factor left, login asks for none again and the recovery codes go. 404 when it is not
    /// one of the caller's.
    #[oai(
        path = "/passkeys/:id",
        method = "delete",
        operation_id = "removePasskey"
    )]
    async fn remove_passkey(
        &self,
        req: &Request,
        auth_: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<PasskeyRemoveRequest>,
    ) -> Result<NoContent, ApiErr<EnrolErrors>> {
        let user_id = user_of(&auth_.0)?;
        let password = body.0.current_password;
        passkeys::remove(
            &self.state,
            user_id,
            auth_.0.session_id,
            id.0,
            password,
            &request_meta(req),
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// Remove the authenticator, with a fresh code from it or an unused recovery code. The
    /// recovery codes go with it; every other session of the caller is revoked and a
    /// notice mailed. A wrong code is 422 (`code`); none enrolled is 404.
    #[oai(path = "/mfa/totp", method = "delete", operation_id = "removeTotp")]
    async fn remove_totp(
        &self,
        req: &Request,
        auth_: BearerAuth,
        body: JsonBody<TotpCodeRequest>,
    ) -> Result<NoContent, ApiErr<TotpCodeErrors>> {
        let user_id = user_of(&auth_.0)?;
        mfa::disable(
            &self.state,
            user_id,
            auth_.0.session_id,
            &body.0.code,
            &request_meta(req),
        )
        .await?;
        Ok(NoContent::Done)
    }
}
