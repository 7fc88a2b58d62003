//! The mail outbox and the single-use tokens its links carry (see the migration
//! `2026-12-04-000010_mail_recovery`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::schema::{email_tokens, mail_outbox, users};

diesel::define_sql_function!(fn lower(x: Text) -> Text);

/// What a mail is for; the worker renders each kind from the user's row as it is then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// A link proving the account's address (signup, resend).
    VerifyEmail,
    /// A link to the new address of a requested change; the change applies when it is used.
    EmailChange,
    /// To the old address: a change to another was requested.
    EmailChangeNotice,
    /// A password reset link (the row's `user_id` is null when no account has the address).
    PasswordReset,
    /// The password was changed or reset.
    PasswordChanged,
    /// A second factor was added or removed.
    FactorChanged,
    /// Logins with the right password keep failing at the second factor.
    WrongCodes,
}

impl MailKind {
    pub const ALL: [MailKind; 7] = [
        MailKind::VerifyEmail,
        MailKind::EmailChange,
        MailKind::EmailChangeNotice,
        MailKind::PasswordReset,
        MailKind::PasswordChanged,
        MailKind::FactorChanged,
        MailKind::WrongCodes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::VerifyEmail => "verify_email",
            MailKind::EmailChange => "email_change",
            MailKind::EmailChangeNotice => "email_change_notice",
            MailKind::PasswordReset => "password_reset",
            MailKind::PasswordChanged => "password_changed",
            MailKind::FactorChanged => "factor_changed",
            MailKind::WrongCodes => "wrong_codes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Queue a mail to a user (in the caller's transaction). `auth_epoch`: for a link that must
/// not be sent once the user's epoch moved (resets, email changes).
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    kind: MailKind,
    user_id: Uuid,
    recipient: &str,
    payload: &Value,
    auth_epoch: Option<i64>,
) -> QueryResult<()> {
    diesel::insert_into(mail_outbox::table)
        .values((
            mail_outbox::kind.eq(kind.as_str()),
            mail_outbox::user_id.eq(Some(user_id)),
            mail_outbox::recipient.eq(recipient),
            mail_outbox::payload.eq(payload),
            mail_outbox::auth_epoch.eq(auth_epoch),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Queue a reset request for an address, with the account that has it if any: one row
/// either way, in one statement, so that an address with an account and one without cost
/// the same (and commit the same way).
pub async fn enqueue_reset_request(
    conn: &mut AsyncPgConnection,
    normalized_email: &str,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO mail_outbox (kind, user_id, auth_epoch, recipient) \
         SELECT $1, u.id, u.auth_epoch, $2 FROM (SELECT 1) AS one \
         LEFT JOIN users u ON lower(u.email) = $2",
    )
    .bind::<Text, _>(MailKind::PasswordReset.as_str())
    .bind::<Text, _>(normalized_email)
    .execute(conn)
    .await
    .map(drop)
}

#[derive(Debug, Clone, QueryableByName)]
pub struct DueMail {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub user_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    pub recipient: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: Value,
    #[diesel(sql_type = Nullable<diesel::sql_types::BigInt>)]
    pub auth_epoch: Option<i64>,
    /// Including this one; also what fences this claim (see [`settle`]).
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Claim up to `limit` mails that are due: each is leased to this worker for `lease_secs`
/// (its next attempt moves that far ahead, so another replica's worker skips it until then,
/// and takes it over if this one dies before it is settled).
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i32,
    lease_secs: i32,
) -> QueryResult<Vec<DueMail>> {
    diesel::sql_query(
        "UPDATE mail_outbox SET attempts = attempts + 1, updated_at = now(), \
             next_attempt_at = now() + make_interval(secs => $2) \
         WHERE id IN (SELECT id FROM mail_outbox \
             WHERE status = 'pending' AND next_attempt_at <= now() \
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, kind, user_id, recipient, payload, auth_epoch, attempts",
    )
    .bind::<Integer, _>(limit)
    .bind::<Integer, _>(lease_secs)
    .load(conn)
    .await
}

/// How a claimed mail ended.
pub enum Settled<'a> {
    Sent,
    /// Nothing to send (no account, or the account changed since).
    Skipped(&'a str),
    /// Try again at this time.
    Retry(DateTime<Utc>, &'a str),
    /// Given up.
    Failed(&'a str),
}

/// Settle a claimed mail, only if the claim is still this one (`attempts` as claimed): a
/// worker whose lease ran out, and whose mail another worker took over, changes nothing.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    mail: &DueMail,
    how: Settled<'_>,
) -> QueryResult<()> {
    let now = Utc::now();
    let (status, error, next) = match how {
        Settled::Sent => ("sent", None, now),
        Settled::Skipped(why) => ("skipped", Some(why), now),
        Settled::Retry(at, why) => ("pending", Some(why), at),
        Settled::Failed(why) => ("failed", Some(why), now),
    };
    diesel::update(
        mail_outbox::table
            .find(mail.id)
            .filter(mail_outbox::attempts.eq(mail.attempts))
            .filter(mail_outbox::status.eq("pending")),
    )
    .set((
        mail_outbox::status.eq(status),
        mail_outbox::last_error.eq(error),
        mail_outbox::next_attempt_at.eq(next),
        mail_outbox::updated_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Mails waiting, and the age in seconds of the oldest (0 when none).
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<(i64, f64)> {
    #[derive(QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        waiting: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        oldest: f64,
    }
    let row: Backlog = diesel::sql_query(
        "SELECT count(*) AS waiting, \
             coalesce(extract(epoch FROM now() - min(created_at))::float8, 0) AS oldest \
         FROM mail_outbox WHERE status = 'pending'",
    )
    .get_result(conn)
    .await?;
    Ok((row.waiting, row.oldest))
}

/// What a mailed token is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    EmailChange,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::EmailChange => "email_change",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

/// A link's token, by its hash.
pub struct NewToken<'a> {
    pub hash: &'a [u8],
    pub purpose: Purpose,
    pub user_id: Uuid,
    /// The address the link goes to.
    pub email: &'a str,
    pub auth_epoch: Option<i64>,
    pub expires_at: DateTime<Utc>,
}

/// Store a new token's hash. With `supersede`, the user's outstanding tokens of the same
/// purpose are spent first (a newer reset link invalidates the older ones).
pub async fn insert_token(
    conn: &mut AsyncPgConnection,
    t: NewToken<'_>,
    supersede: bool,
) -> QueryResult<()> {
    if supersede {
        spend_outstanding(conn, t.user_id, t.purpose).await?;
    }
    diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::token_hash.eq(t.hash),
            email_tokens::purpose.eq(t.purpose.as_str()),
            email_tokens::user_id.eq(t.user_id),
            email_tokens::email.eq(t.email),
            email_tokens::auth_epoch.eq(t.auth_epoch),
            email_tokens::expires_at.eq(t.expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Spend every outstanding token of a purpose for a user (a password change ends its
/// resets). Returns how many.
pub async fn spend_outstanding(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    purpose: Purpose,
) -> QueryResult<usize> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(Utc::now()))
    .execute(conn)
    .await
}

/// A usable token, without spending it: its user, address and epoch.
pub type Usable = (Uuid, String, Option<i64>);

/// A usable token (not spent, not expired) of any of `purposes`, without spending it.
pub async fn find_usable(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    purposes: &[Purpose],
) -> QueryResult<Option<Usable>> {
    let purposes: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
    email_tokens::table
        .find(hash)
        .filter(email_tokens::purpose.eq_any(purposes))
        .filter(email_tokens::used_at.is_null())
        .filter(email_tokens::expires_at.gt(Utc::now()))
        .select((
            email_tokens::user_id,
            email_tokens::email,
            email_tokens::auth_epoch,
        ))
        .first(conn)
        .await
        .optional()
}

/// Spend a usable token: of concurrent attempts exactly one gets it.
pub async fn spend(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    purpose: Purpose,
) -> QueryResult<Option<Usable>> {
    let now = Utc::now();
    diesel::update(
        email_tokens::table
            .find(hash)
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::expires_at.gt(now)),
    )
    .set(email_tokens::used_at.eq(now))
    .returning((
        email_tokens::user_id,
        email_tokens::email,
        email_tokens::auth_epoch,
    ))
    .get_result(conn)
    .await
    .optional()
}

/// Mark the user's address verified if it is still `email` (a link to an address the
/// account no longer has proves nothing). Returns whether it was.
pub async fn mark_verified(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    email: &str,
) -> QueryResult<bool> {
    let now = Utc::now();
    diesel::update(
        users::table
            .find(user_id)
            .filter(users::disabled.eq(false))
            .filter(lower(users::email).eq(email.to_lowercase())),
    )
    .set((
        users::email_verified_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(email_verified_at, now())")),
        users::updated_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}
