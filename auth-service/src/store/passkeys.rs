//! Passkeys (WebAuthn credentials) and the ceremonies in progress. See the migration
//! `2026-12-04-000013_passkeys`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{mfa_recovery_codes, mfa_totp, passkeys, users, webauthn_challenges};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = passkeys)]
pub struct PasskeyRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential_id: Vec<u8>,
    pub name: String,
    /// webauthn-rs's `Passkey`, as JSON.
    pub credential: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The user's passkeys, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<PasskeyRow>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .order((passkeys::created_at.asc(), passkeys::id.asc()))
        .select(PasskeyRow::as_select())
        .load(conn)
        .await
}

pub async fn find_by_credential(
    conn: &mut AsyncPgConnection,
    credential_id: &[u8],
) -> QueryResult<Option<PasskeyRow>> {
    passkeys::table
        .filter(passkeys::credential_id.eq(credential_id))
        .select(PasskeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Store a new passkey; `None` when its credential is registered already (to anyone).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user_id: Uuid,
    credential_id: &[u8],
    name: &str,
    credential: &str,
) -> QueryResult<Option<PasskeyRow>> {
    diesel::insert_into(passkeys::table)
        .values((
            passkeys::id.eq(id),
            passkeys::user_id.eq(user_id),
            passkeys::credential_id.eq(credential_id),
            passkeys::name.eq(name),
            passkeys::credential.eq(credential),
        ))
        .on_conflict(passkeys::credential_id)
        .do_nothing()
        .returning(PasskeyRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// A login used the passkey: its credential (counter) as now, if it is still `old`, and the
/// time. Whether it was still `old` (and there).
pub async fn used(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    old: &str,
    credential: &str,
) -> QueryResult<bool> {
    diesel::update(
        passkeys::table
            .find(id)
            .filter(passkeys::credential.eq(old)),
    )
    .set((
        passkeys::credential.eq(credential),
        passkeys::last_used_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Remove one of the user's passkeys; whether it was there.
pub async fn delete(conn: &mut AsyncPgConnection, user_id: Uuid, id: Uuid) -> QueryResult<bool> {
    diesel::delete(
        passkeys::table
            .find(id)
            .filter(passkeys::user_id.eq(user_id)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Remove all of the user's passkeys; how many there were.
pub async fn delete_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// Move the user's epoch, only from `epoch` (the account as a ceremony saw it); whether it
/// was still that.
pub async fn bump_epoch_from(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    epoch: i64,
) -> QueryResult<bool> {
    diesel::update(
        users::table
            .find(user_id)
            .filter(users::auth_epoch.eq(epoch)),
    )
    .set((
        users::auth_epoch.eq(users::auth_epoch + 1),
        users::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// The user's factors: whether an authenticator app is confirmed, and how many passkeys.
pub async fn factors(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<(bool, i64)> {
    let app: i64 = mfa_totp::table
        .filter(mfa_totp::user_id.eq(user_id))
        .filter(mfa_totp::confirmed_at.is_not_null())
        .count()
        .get_result(conn)
        .await?;
    let keys: i64 = passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await?;
    Ok((app > 0, keys))
}

/// Whether the user has any second factor left (a confirmed app or a passkey); `mfa_enabled`
/// follows it, and the recovery codes go with the last factor.
pub async fn sync_enabled(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<bool> {
    let (app, keys) = factors(conn, user_id).await?;
    let on = app || keys > 0;
    if !on {
        diesel::delete(mfa_recovery_codes::table.filter(mfa_recovery_codes::user_id.eq(user_id)))
            .execute(conn)
            .await?;
    }
    diesel::update(users::table.find(user_id))
        .set((users::mfa_enabled.eq(on), users::updated_at.eq(Utc::now())))
        .execute(conn)
        .await?;
    Ok(on)
}

/// The user's unused recovery codes, counted.
pub async fn recovery_codes_left(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    mfa_recovery_codes::table
        .filter(mfa_recovery_codes::user_id.eq(user_id))
        .filter(mfa_recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Register,
    Login,
    Mfa,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Login => "login",
            Purpose::Mfa => "mfa",
        }
    }
}

pub struct NewCeremony<'a> {
    pub purpose: Purpose,
    pub user_id: Option<Uuid>,
    pub auth_epoch: Option<i64>,
    pub mfa_token_hash: Option<&'a [u8]>,
    pub refresh_delivery: &'a str,
    pub state: &'a str,
    pub expires_at: DateTime<Utc>,
}

pub async fn start_ceremony(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    c: NewCeremony<'_>,
) -> QueryResult<()> {
    diesel::insert_into(webauthn_challenges::table)
        .values((
            webauthn_challenges::id.eq(id),
            webauthn_challenges::purpose.eq(c.purpose.as_str()),
            webauthn_challenges::user_id.eq(c.user_id),
            webauthn_challenges::auth_epoch.eq(c.auth_epoch),
            webauthn_challenges::mfa_token_hash.eq(c.mfa_token_hash),
            webauthn_challenges::refresh_delivery.eq(c.refresh_delivery),
            webauthn_challenges::state.eq(c.state),
            webauthn_challenges::expires_at.eq(c.expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webauthn_challenges)]
pub struct CeremonyRow {
    pub purpose: String,
    pub user_id: Option<Uuid>,
    pub auth_epoch: Option<i64>,
    pub mfa_token_hash: Option<Vec<u8>>,
    pub refresh_delivery: String,
    pub state: String,
}

/// Take an unexpired ceremony of one of `purposes` (and of `user`, when given), once: of
/// concurrent finishes exactly one gets it; any other is left alone.
pub async fn take_ceremony(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    purposes: &[Purpose],
    user: Option<Uuid>,
) -> QueryResult<Option<CeremonyRow>> {
    let purposes: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
    let mut query = diesel::delete(webauthn_challenges::table)
        .filter(webauthn_challenges::id.eq(id))
        .filter(webauthn_challenges::expires_at.gt(Utc::now()))
        .filter(webauthn_challenges::purpose.eq_any(purposes))
        .into_boxed();
    if let Some(user) = user {
        query = query.filter(webauthn_challenges::user_id.eq(user));
    }
    query
        .returning(CeremonyRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Forget the user's ceremonies in progress (a factor or the password changed).
pub async fn forget_ceremonies(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<()> {
    diesel::delete(webauthn_challenges::table.filter(webauthn_challenges::user_id.eq(user_id)))
        .execute(conn)
        .await
        .map(drop)
}
