//! The second factor: TOTP secrets (sealed), recovery codes and login challenges (hashed).
//! See the migration `2026-12-04-000011_mfa_totp`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{mfa_challenges, mfa_failures, mfa_recovery_codes, mfa_totp, users};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mfa_totp)]
pub struct TotpRow {
    pub user_id: Uuid,
    /// Sealed (see `crypto::keys::KeyCipher`).
    pub secret: Vec<u8>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_step: i64,
}

pub async fn find_totp(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<Option<TotpRow>> {
    mfa_totp::table
        .find(user_id)
        .select(TotpRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A new, unconfirmed secret, replacing an unconfirmed one; nothing when a confirmed one
/// exists. Returns whether it was stored.
pub async fn start_totp(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    sealed: &[u8],
) -> QueryResult<bool> {
    diesel::sql_query(
        "INSERT INTO mfa_totp (user_id, secret) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, last_step = 0, \
             created_at = now(), updated_at = now() \
         WHERE mfa_totp.confirmed_at IS NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(user_id)
    .bind::<diesel::sql_types::Bytea, _>(sealed)
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Take a code's time step: only if it is later than the last one taken (a code is good
/// once, and an older one never after a newer). Returns whether it was taken.
pub async fn take_step(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    step: i64,
) -> QueryResult<bool> {
    diesel::update(
        mfa_totp::table
            .find(user_id)
            .filter(mfa_totp::last_step.lt(step)),
    )
    .set((
        mfa_totp::last_step.eq(step),
        mfa_totp::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Confirm the enrolment of `secret` (the sealed secret the code was checked against) and
/// mark the user as having a second factor.
pub async fn confirm_totp(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    secret: &[u8],
) -> QueryResult<bool> {
    let now = Utc::now();
    let n = diesel::update(
        mfa_totp::table
            .find(user_id)
            .filter(mfa_totp::confirmed_at.is_null())
            .filter(mfa_totp::secret.eq(secret)),
    )
    .set((mfa_totp::confirmed_at.eq(now), mfa_totp::updated_at.eq(now)))
    .execute(conn)
    .await?;
    if n == 0 {
        return Ok(false);
    }
    set_enabled(conn, user_id, true).await?;
    Ok(true)
}

/// Remove the authenticator app; the recovery codes go too when no passkey is left.
pub async fn remove_totp(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<bool> {
    let n = diesel::delete(mfa_totp::table.find(user_id))
        .execute(conn)
        .await?;
    crate::store::passkeys::sync_enabled(conn, user_id).await?;
    Ok(n > 0)
}

/// Remove every factor of the user (the app, passkeys and the recovery codes).
pub async fn remove_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<bool> {
    let n = diesel::delete(mfa_totp::table.find(user_id))
        .execute(conn)
        .await?
        + crate::store::passkeys::delete_all(conn, user_id).await?;
    crate::store::passkeys::forget_ceremonies(conn, user_id).await?;
    forget_wrong_codes(conn, user_id).await?;
    diesel::delete(mfa_recovery_codes::table.filter(mfa_recovery_codes::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    diesel::delete(mfa_challenges::table.filter(mfa_challenges::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    set_enabled(conn, user_id, false).await?;
    Ok(n > 0)
}

async fn set_enabled(conn: &mut AsyncPgConnection, user_id: Uuid, on: bool) -> QueryResult<()> {
    diesel::update(users::table.find(user_id))
        .set((users::mfa_enabled.eq(on), users::updated_at.eq(Utc::now())))
        .execute(conn)
        .await
        .map(drop)
}

/// Replace the user's recovery codes with these hashes.
pub async fn replace_recovery_codes(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hashes: &[Vec<u8>],
) -> QueryResult<()> {
    diesel::delete(mfa_recovery_codes::table.filter(mfa_recovery_codes::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    let rows: Vec<_> = hashes
        .iter()
        .map(|h| {
            (
                mfa_recovery_codes::code_hash.eq(h.as_slice()),
                mfa_recovery_codes::user_id.eq(user_id),
            )
        })
        .collect();
    diesel::insert_into(mfa_recovery_codes::table)
        .values(rows)
        .execute(conn)
        .await
        .map(drop)
}

/// Spend one of the user's recovery codes. Returns whether it was one, unspent.
pub async fn spend_recovery_code(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hash: &[u8],
) -> QueryResult<bool> {
    diesel::update(
        mfa_recovery_codes::table
            .find(hash)
            .filter(mfa_recovery_codes::user_id.eq(user_id))
            .filter(mfa_recovery_codes::used_at.is_null()),
    )
    .set(mfa_recovery_codes::used_at.eq(Utc::now()))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

pub struct NewChallenge<'a> {
    pub hash: &'a [u8],
    pub user_id: Uuid,
    pub auth_epoch: i64,
    pub role: &'a str,
    pub refresh_delivery: &'a str,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_challenge(
    conn: &mut AsyncPgConnection,
    c: NewChallenge<'_>,
) -> QueryResult<()> {
    diesel::insert_into(mfa_challenges::table)
        .values((
            mfa_challenges::token_hash.eq(c.hash),
            mfa_challenges::user_id.eq(c.user_id),
            mfa_challenges::auth_epoch.eq(c.auth_epoch),
            mfa_challenges::role.eq(c.role),
            mfa_challenges::refresh_delivery.eq(c.refresh_delivery),
            mfa_challenges::expires_at.eq(c.expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mfa_challenges)]
pub struct ChallengeRow {
    pub user_id: Uuid,
    pub auth_epoch: i64,
    pub role: String,
    pub refresh_delivery: String,
    pub attempts: i32,
}

/// Count an attempt at a usable challenge (unspent, unexpired, fewer than `max_attempts`
/// tried): the challenge as it is after counting, or `None`.
pub async fn attempt_challenge(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    max_attempts: i32,
) -> QueryResult<Option<ChallengeRow>> {
    diesel::update(
        mfa_challenges::table
            .find(hash)
            .filter(mfa_challenges::used_at.is_null())
            .filter(mfa_challenges::expires_at.gt(Utc::now()))
            .filter(mfa_challenges::attempts.lt(max_attempts)),
    )
    .set(mfa_challenges::attempts.eq(mfa_challenges::attempts + 1))
    .returning(ChallengeRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// A usable challenge (unspent, unexpired), without counting a try.
pub async fn find_challenge(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<ChallengeRow>> {
    mfa_challenges::table
        .find(hash)
        .filter(mfa_challenges::used_at.is_null())
        .filter(mfa_challenges::expires_at.gt(Utc::now()))
        .select(ChallengeRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Spend a challenge: of concurrent completions exactly one gets `true`.
pub async fn spend_challenge(conn: &mut AsyncPgConnection, hash: &[u8]) -> QueryResult<bool> {
    diesel::update(
        mfa_challenges::table
            .find(hash)
            .filter(mfa_challenges::used_at.is_null()),
    )
    .set(mfa_challenges::used_at.eq(Utc::now()))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// The account's wrong codes in the current day's window, and the seconds left of it.
pub async fn wrong_codes(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<(i32, i64)> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        failed: i32,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        left: i64,
    }
    let row: Option<Count> = diesel::sql_query(
        "SELECT failed_codes AS failed, \
             ceil(extract(epoch FROM failures_since + interval '1 day' - now()))::int8 AS left \
         FROM mfa_failures WHERE user_id = $1 AND failures_since > now() - interval '1 day'",
    )
    .bind::<diesel::sql_types::Uuid, _>(user_id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map_or((0, 0), |r| (r.failed, r.left)))
}

/// Count a wrong code (a day's window from the first); the count in the window now.
pub async fn count_wrong_code(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i32> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        failed_codes: i32,
    }
    let row: Option<Count> = diesel::sql_query(
        "INSERT INTO mfa_failures AS f (user_id, failed_codes, failures_since) \
         VALUES ($1, 1, now()) ON CONFLICT (user_id) DO UPDATE SET \
             failed_codes = CASE WHEN f.failures_since > now() - interval '1 day' \
                 THEN f.failed_codes + 1 ELSE 1 END, \
             failures_since = CASE WHEN f.failures_since > now() - interval '1 day' \
                 THEN f.failures_since ELSE now() END \
         RETURNING failed_codes",
    )
    .bind::<diesel::sql_types::Uuid, _>(user_id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map_or(0, |r| r.failed_codes))
}

/// Forget the account's wrong codes (its password or factors changed).
pub async fn forget_wrong_codes(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<()> {
    diesel::delete(mfa_failures::table.find(user_id))
        .execute(conn)
        .await
        .map(drop)
}
