//! Sending the mail outbox over SMTP (lettre), from a background worker on every replica.
//!
//! Rows are claimed with a lease (`store::mail::claim_due`), so replicas share the work and
//! a mail whose worker died is taken over when its lease ends. A failed send is retried with
//! backoff (10 s, doubling, at most an hour) up to `AUTH_MAIL_MAX_ATTEMPTS`; a permanent SMTP
//! refusal (5xx) gives up at once. Delivery is at least once: a worker that dies between the
//! server's acceptance and marking the row sends it again.
//!
//! A mail carrying a link gets its token here, just before it is sent: a fresh 256-bit
//! token whose hash is stored (`email_tokens`) and which appears nowhere but in the mail.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::Settings;
use crate::crypto::tokens::{RefreshToken, hash_token};
use crate::state::AppState;
use crate::store::mail::{self, DueMail, MailKind, Purpose, Settled};
use crate::store::users::{self, UserRow};

/// Mails claimed at once: sent one after another, each within `AUTH_MAIL_SEND_TIMEOUT_SECS`
/// (at most 60 s), so all are settled well within their lease.
const BATCH: i32 = 4;
/// How long a claimed mail is this worker's before another may take it over: more than a
/// batch's worst case (4 x 60 s). A claim that outlived its lease settles nothing (see
/// `store::mail::settle`).
const LEASE_SECS: i32 = 300;
/// How long one pass keeps claiming while batches come back full.
const PASS_BUDGET: Duration = Duration::from_secs(20);
/// One SMTP exchange's bound.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the backlog gauges are read.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

pub struct Mailer {
    /// `None` when `AUTH_SMTP_URL` is unset: mail waits in the outbox.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    app_url: String,
    /// One mail's whole SMTP exchange, at most.
    send_bound: Duration,
    backlog_read: Mutex<Option<Instant>>,
}

impl Mailer {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let a = &settings.auth;
        let url = a.smtp_url.expose_secret();
        let transport = if url.is_empty() {
            None
        } else {
            Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("AUTH_SMTP_URL is not a valid SMTP URL")?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            )
        };
        let from = a
            .mail_from
            .parse()
            .context("AUTH_MAIL_FROM is not a mailbox")?;
        Ok(Self {
            transport,
            from,
            app_url: a.public_app_url.trim_end_matches('/').to_owned(),
            send_bound: Duration::from_secs(a.mail_send_timeout_secs),
            backlog_read: Mutex::new(None),
        })
    }

    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }
}

/// One pass of the worker: claim what is due and settle each. Returns how many were sent.
pub async fn send_due(state: &AppState) -> anyhow::Result<usize> {
    let mut conn = shared::db::conn(&state.pool).await?;
    // Read even when nothing can be sent: the backlog is what tells of a missing mail server.
    read_backlog(state, &mut conn).await;
    let Some(transport) = &state.mail.transport else {
        return Ok(0);
    };
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let due = mail::claim_due(&mut conn, BATCH, LEASE_SECS).await?;
        let full = due.len() == BATCH as usize;
        for row in &due {
            sent += usize::from(send_one(state, transport, &mut conn, row).await?);
        }
        if !full || started.elapsed() > PASS_BUDGET {
            return Ok(sent);
        }
    }
}

/// Render, send and settle one claimed mail. Returns whether it was sent.
async fn send_one(
    state: &AppState,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    conn: &mut diesel_async::AsyncPgConnection,
    row: &DueMail,
) -> anyhow::Result<bool> {
    let Some(kind) = MailKind::parse(&row.kind) else {
        metrics::counter!("mail_given_up_total", "kind" => "unknown").increment(1);
        mail::settle(conn, row, Settled::Failed("unknown kind")).await?;
        return Ok(false);
    };
    let Some(message) = render(state, conn, kind, row).await? else {
        mail::settle(conn, row, Settled::Skipped("nothing to send")).await?;
        return Ok(false);
    };
    let kind = kind.as_str();
    // lettre's own timeout bounds the connect and each command, not the exchange: a server
    // that accepts and then goes quiet must not hold the worker (and its lease) for ever.
    let bound = state.mail.send_bound;
    let failure = match tokio::time::timeout(bound, transport.send(message)).await {
        Ok(Ok(_)) => {
            mail::settle(conn, row, Settled::Sent).await?;
            metrics::counter!("mail_sent_total", "kind" => kind).increment(1);
            tracing::info!(mail_id = row.id, kind, "mail sent");
            return Ok(true);
        }
        // lettre's errors name the server's answer, never the message.
        Ok(Err(err)) => (refused_for_good(&err), format!("{err}")),
        Err(_) => (false, format!("no answer within {} s", bound.as_secs())),
    };
    let (permanent, why) = failure;
    metrics::counter!(
        "mail_send_failures_total",
        "kind" => kind,
        "permanent" => if permanent { "true" } else { "false" }
    )
    .increment(1);
    let give_up = permanent || row.attempts >= state.settings.auth.mail_max_attempts as i32;
    tracing::warn!(mail_id = row.id, kind, attempts = row.attempts, give_up, error = %why, "sending mail failed");
    let settled = if give_up {
        metrics::counter!("mail_given_up_total", "kind" => kind).increment(1);
        Settled::Failed(&why)
    } else {
        Settled::Retry(Utc::now() + backoff(row.attempts), &why)
    };
    mail::settle(conn, row, settled).await?;
    Ok(false)
}

/// Whether the server refused this mail for good: a permanent answer about the recipient
/// or the message (550, 551, 552, 553, 501). Other permanent answers
/// (authentication required or failed, relaying denied as configured, 5xx of a relay in
/// trouble) are about the setup, which an operator fixes: those mails are retried.
fn refused_for_good(err: &lettre::transport::smtp::Error) -> bool {
    if !err.is_permanent() {
        return false;
    }
    let code = err.status().map(|c| c.to_string()).unwrap_or_default();
    matches!(code.as_str(), "550" | "551" | "552" | "553" | "501")
}

/// The wait before attempt `attempts + 1`: 10 s doubling, at most an hour.
fn backoff(attempts: i32) -> chrono::Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    chrono::Duration::seconds((10i64 << exp.min(9)).min(3600))
}

async fn read_backlog(state: &AppState, conn: &mut diesel_async::AsyncPgConnection) {
    let mut last = state.mail.backlog_read.lock().await;
    if last.is_some_and(|at| at.elapsed() < BACKLOG_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    match mail::backlog(conn).await {
        Ok((waiting, oldest)) => {
            metrics::gauge!("mail_outbox_waiting").set(waiting as f64);
            metrics::gauge!("mail_outbox_oldest_seconds").set(oldest);
        }
        Err(err) => tracing::warn!(error = %err, "reading the mail backlog failed"),
    }
}

/// The message for a claimed row, as the account is now; `None` when there is nothing to
/// send (no such account, a disabled one, an address that changed or is verified already).
async fn render(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    kind: MailKind,
    row: &DueMail,
) -> anyhow::Result<Option<Message>> {
    let user = match row.user_id {
        Some(id) => users::find(conn, id).await?,
        None => None,
    };
    let Some(user) = user.filter(|u| !u.disabled) else {
        return Ok(None);
    };
    let a = &state.settings.auth;
    let (to, subject, body) = match kind {
        MailKind::VerifyEmail => {
            if user.email_verified_at.is_some() || !same_address(&user.email, &row.recipient) {
                return Ok(None);
            }
            let Some(token) = new_token(
                conn,
                &user,
                Purpose::VerifyEmail,
                &user.email,
                None,
                a.verify_token_ttl_secs,
            )
            .await?
            else {
                return Ok(None);
            };
            (
                user.email.clone(),
                "Confirm your email address",
                format!(
                    "Hello,\n\nplease confirm that this is your email address by opening this link:\n\n\
                     {}/#verify-email={token}\n\n\
                     The link works once, for {}. If you did not create an account, ignore this mail.\n",
                    state.mail.app_url,
                    duration_words(a.verify_token_ttl_secs),
                ),
            )
        }
        MailKind::EmailChange => {
            // Not once the account changed since it was asked for (see `auth_epoch`).
            if row.auth_epoch != Some(user.auth_epoch) {
                return Ok(None);
            }
            let Some(token) = new_token(
                conn,
                &user,
                Purpose::EmailChange,
                &row.recipient,
                row.auth_epoch,
                a.verify_token_ttl_secs,
            )
            .await?
            else {
                return Ok(None);
            };
            (
                row.recipient.clone(),
                "Confirm your new email address",
                format!(
                    "Hello,\n\nyou asked to change your account's email address to this one. \
                     To confirm it, open this link:\n\n\
                     {}/#verify-email={token}\n\n\
                     The link works once, for {}. Until it is opened, the account keeps its \
                     old address. If you did not ask for this, ignore this mail.\n",
                    state.mail.app_url,
                    duration_words(a.verify_token_ttl_secs),
                ),
            )
        }
        // Notices go to the address the account had when they were written: a change of
        // address that completes before a retry must not send them to the new one.
        MailKind::EmailChangeNotice => (
            row.recipient.clone(),
            "Your email address is being changed",
            format!(
                "Hello,\n\na change of your account's email address to {} was asked for at {} UTC. \
                 It takes effect only when the new address is confirmed.\n\n\
                 If this was not you, change your password now and log out of your other \
                 sessions.\n",
                payload_str(&row.payload, "new_email"),
                payload_str(&row.payload, "at"),
            ),
        ),
        MailKind::PasswordReset => {
            // Not after a password change, logout everywhere, ... since it was asked for,
            // nor to an address the account no longer has.
            if row.auth_epoch != Some(user.auth_epoch) || !same_address(&user.email, &row.recipient)
            {
                return Ok(None);
            }
            let Some(token) = new_token(
                conn,
                &user,
                Purpose::PasswordReset,
                &user.email,
                row.auth_epoch,
                a.reset_token_ttl_secs,
            )
            .await?
            else {
                return Ok(None);
            };
            (
                user.email.clone(),
                "Reset your password",
                format!(
                    "Hello,\n\nsomeone, hopefully you, asked to reset the password of the account \
                     with this email address. To choose a new password, open this link:\n\n\
                     {}/#reset-password={token}\n\n\
                     The link works once, for {}, and stops working when the password is changed \
                     another way or a newer link is asked for. If this was not you, ignore this \
                     mail: your password stays as it is.\n",
                    state.mail.app_url,
                    duration_words(a.reset_token_ttl_secs),
                ),
            )
        }
        MailKind::PasswordChanged => (
            row.recipient.clone(),
            "Your password was changed",
            format!(
                "Hello,\n\nthe password of your account was {} at {} UTC{}.\n\n\
                 If this was not you, reset your password now from the login page ({}/) and \
                 review your sessions.\n",
                if payload_str(&row.payload, "how") == "reset" {
                    "reset"
                } else {
                    "changed"
                },
                payload_str(&row.payload, "at"),
                if payload_str(&row.payload, "how") == "reset" {
                    ", and every session was logged out"
                } else {
                    ", and your other sessions were logged out"
                },
                state.mail.app_url,
            ),
        ),
        MailKind::FactorChanged => (
            row.recipient.clone(),
            "Your sign-in settings changed",
            format!(
                "Hello,\n\n{} at {} UTC, and your other sessions were logged out.\n\n\
                 If this was not you, reset your password now from the login page ({}/) and \
                 review your sessions.\n",
                payload_str(&row.payload, "what"),
                payload_str(&row.payload, "at"),
                state.mail.app_url,
            ),
        ),
        MailKind::WrongCodes => (
            row.recipient.clone(),
            "Someone tried to log in to your account",
            format!(
                "Hello,\n\nat {} UTC someone logged in to your account with your password, and \
                 then gave wrong codes for your second factor several times.\n\n\
                 If this was not you, your password is known to someone else: change it now \
                 from the login page ({}/). Your second factor kept them out.\n",
                payload_str(&row.payload, "at"),
                state.mail.app_url,
            ),
        ),
    };
    let to: Mailbox = match to.parse() {
        Ok(to) => to,
        Err(_) => return Ok(None),
    };
    let message = Message::builder()
        .from(state.mail.from.clone())
        .to(to)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            body.clone(),
            html_of(&body),
        ))
        .context("building a mail")?;
    Ok(Some(message))
}

/// The HTML part of a mail, made from its text: each paragraph a `<p>` (lines kept), a
/// paragraph that is only a link an `<a>`; everything escaped.
fn html_of(text: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    };
    let paragraphs: String = text
        .trim_end()
        .split("\n\n")
        .map(|p| {
            let p = p.trim();
            let link = (p.starts_with("https://") || p.starts_with("http://"))
                && !p.contains(char::is_whitespace);
            if link {
                format!("<p><a href=\"{0}\">{0}</a></p>\n", escape(p))
            } else {
                format!("<p>{}</p>\n", escape(p).replace('\n', "<br>\n"))
            }
        })
        .collect();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family: sans-serif; line-height: 1.4\">\n{paragraphs}</body></html>\n"
    )
}

fn same_address(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn payload_str<'a>(payload: &'a Value, key: &str) -> &'a str {
    payload.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A new token for a link, its hash stored; a newer reset or email-change link spends the
/// older ones (under the user's row lock: two workers cannot leave two good links).
async fn new_token(
    conn: &mut diesel_async::AsyncPgConnection,
    user: &UserRow,
    purpose: Purpose,
    email: &str,
    auth_epoch: Option<i64>,
    ttl_secs: i64,
) -> anyhow::Result<Option<String>> {
    use diesel_async::AsyncConnection;
    let token = RefreshToken::generate().0;
    let expires: DateTime<Utc> = Utc::now() + chrono::Duration::seconds(ttl_secs);
    let supersede = purpose != Purpose::VerifyEmail;
    let hash = hash_token(&token);
    let issued = conn
        .transaction(async |conn| {
            users::lock(conn, user.id).await?;
            // Under the lock, the account as it is now: a change since the mail was rendered
            // (a password change, another address, disabling) means no link at all.
            let now = users::find(conn, user.id).await?;
            let still = now.is_some_and(|u| {
                !u.disabled
                    && u.email == user.email
                    && auth_epoch.is_none_or(|epoch| epoch == u.auth_epoch)
            });
            if !still {
                return Ok::<_, diesel::result::Error>(false);
            }
            mail::insert_token(
                conn,
                mail::NewToken {
                    hash: &hash,
                    purpose,
                    user_id: user.id,
                    email,
                    auth_epoch,
                    expires_at: expires,
                },
                supersede,
            )
            .await?;
            Ok(true)
        })
        .await?;
    if !issued {
        return Ok(None);
    }
    Ok(Some(token))
}

fn duration_words(secs: i64) -> String {
    match secs {
        s if s % 3600 == 0 && s >= 3600 => {
            let h = s / 3600;
            format!("{h} hour{}", if h == 1 { "" } else { "s" })
        }
        s if s % 60 == 0 => {
            let m = s / 60;
            format!("{m} minute{}", if m == 1 { "" } else { "s" })
        }
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_an_hour() {
        let secs: Vec<i64> = (1..=12).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(
            secs,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
        );
    }

    #[test]
    fn html_parts_escape_and_link() {
        let html = html_of(
            "Hello <you>,\n\nopen this:\n\nhttps://app.example/#reset-password=abc&x\n\nBye,\nus\n",
        );
        assert!(html.contains("<p>Hello &lt;you&gt;,</p>"), "{html}");
        assert!(
            html.contains("<a href=\"https://app.example/#reset-password=abc&amp;x\">"),
            "{html}"
        );
        assert!(html.contains("<p>Bye,<br>\nus</p>"), "{html}");
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration_words(1800), "30 minutes");
        assert_eq!(duration_words(86400), "24 hours");
        assert_eq!(duration_words(3600), "1 hour");
        assert_eq!(duration_words(90), "90 seconds");
    }
}
