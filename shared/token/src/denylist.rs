//! The revocation denylist in Redis: its key names and formats, shared by the auth service
//! (which writes it) and every verifier (which reads it).
//!
//! - `{prefix}denylist` is a sorted set; each member is one revocation and its score the
//!   unix time after which it can match no live token (so expired members are trimmed by
//!   score):
//!   - `sid:<session id>`: every token of that session;
//!   - `jti:<token id>`: one token;
//!   - `user:<user id>:<unix time>`: every token of that user issued at or before that time.
//! - `{prefix}revocations` is a pub/sub channel; each message is `<member>|<expiry>`,
//!   published in the same `MULTI` as the `ZADD`.
//! - `{prefix}denylist:synced` is the writers' word that the set holds every revocation:
//!   a lease of a few seconds that an auth service renews only while Redis holds every
//!   published revocation (replayed after any loss) and nothing it has recorded has waited
//!   more than a second to be published. A writer cut off from Redis, or one whose writes
//!   Redis refuses, cannot renew it, so it lapses; a verifier that finds it missing treats
//!   its view as stale and, past its bound, fails closed. The last writer to stop cleanly
//!   leaves it without expiry (nothing can be revoked while no writer runs).
//!
//! Redis must not evict these keys (`maxmemory-policy noeviction`); a writer that finds
//! fewer members than it published replays them all.

use std::collections::HashMap;

use crate::tokens::AccessClaims;

/// Redis names under one prefix.
#[derive(Debug, Clone)]
pub struct DenylistKeys {
    pub set: String,
    pub channel: String,
    pub synced: String,
}

impl DenylistKeys {
    pub fn new(prefix: &str) -> Self {
        Self {
            set: format!("{prefix}denylist"),
            channel: format!("{prefix}revocations"),
            synced: format!("{prefix}denylist:synced"),
        }
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Session(String),
    Token(String),
    /// Tokens of `user` issued at or before `before` (unix seconds).
    User {
        user: String,
        before: i64,
    },
}

impl Revocation {
    /// From the auth service's durable record (`kind`, `value`, revoked at).
    pub fn from_record(kind: &str, value: &str, revoked_at: i64) -> Option<Self> {
        match kind {
            "sid" => Some(Revocation::Session(value.to_owned())),
            "jti" => Some(Revocation::Token(value.to_owned())),
            "user" => Some(Revocation::User {
                user: value.to_owned(),
                before: revoked_at,
            }),
            _ => None,
        }
    }

    pub fn member(&self) -> String {
        match self {
            Revocation::Session(sid) => format!("sid:{sid}"),
            Revocation::Token(jti) => format!("jti:{jti}"),
            Revocation::User { user, before } => format!("user:{user}:{before}"),
        }
    }

    pub fn parse_member(member: &str) -> Option<Self> {
        let (kind, rest) = member.split_once(':')?;
        match kind {
            "sid" if !rest.is_empty() => Some(Revocation::Session(rest.to_owned())),
            "jti" if !rest.is_empty() => Some(Revocation::Token(rest.to_owned())),
            "user" => {
                let (user, before) = rest.rsplit_once(':')?;
                Some(Revocation::User {
                    user: user.to_owned(),
                    before: before.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

/// A pub/sub message: the member and its expiry.
pub fn message(revocation: &Revocation, expires_at: i64) -> String {
    format!("{}|{expires_at}", revocation.member())
}

pub fn parse_message(msg: &str) -> Option<(Revocation, i64)> {
    let (member, exp) = msg.rsplit_once('|')?;
    Some((Revocation::parse_member(member)?, exp.parse().ok()?))
}

/// A process-local copy of the denylist, checked without a network round trip.
#[derive(Debug, Default, Clone)]
pub struct DenylistView {
    sessions: HashMap<String, i64>,
    tokens: HashMap<String, i64>,
    /// user -> (latest `before`, expiry)
    users: HashMap<String, (i64, i64)>,
}

impl DenylistView {
    pub fn insert(&mut self, revocation: Revocation, expires_at: i64) {
        match revocation {
            Revocation::Session(sid) => {
                let e = self.sessions.entry(sid).or_insert(expires_at);
                *e = (*e).max(expires_at);
            }
            Revocation::Token(jti) => {
                let e = self.tokens.entry(jti).or_insert(expires_at);
                *e = (*e).max(expires_at);
            }
            Revocation::User { user, before } => {
                let e = self.users.entry(user).or_insert((before, expires_at));
                *e = (e.0.max(before), e.1.max(expires_at));
            }
        }
    }

    /// Whether verified `claims` are revoked.
    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        if self.tokens.contains_key(&claims.jti) {
            return true;
        }
        if let Some(sid) = &claims.sid
            && self.sessions.contains_key(sid)
        {
            return true;
        }
        matches!(self.users.get(&claims.sub), Some((before, _)) if claims.iat <= *before)
    }

    /// Drop entries that can no longer match a live token.
    pub fn prune(&mut self, now: i64) {
        self.sessions.retain(|_, exp| *exp > now);
        self.tokens.retain(|_, exp| *exp > now);
        self.users.retain(|_, (_, exp)| *exp > now);
    }

    pub fn len(&self) -> usize {
        self.sessions.len() + self.tokens.len() + self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Audience;

    fn claims(sid: &str, jti: &str, sub: &str, iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: Audience::One("a".into()),
            sub: sub.into(),
            exp: iat + 900,
            iat,
            nbf: None,
            jti: jti.into(),
            sid: Some(sid.into()),
            role: "user".into(),
            scope: String::new(),
            client_id: None,
            email_verified: None,
            amr: None,
        }
    }

    #[test]
    fn members_and_messages_round_trip() {
        for r in [
            Revocation::Session("s1".into()),
            Revocation::Token("j1".into()),
            Revocation::User {
                user: "u:1".into(),
                before: 42,
            },
        ] {
            assert_eq!(Revocation::parse_member(&r.member()), Some(r.clone()));
            assert_eq!(parse_message(&message(&r, 99)), Some((r, 99)));
        }
        assert_eq!(parse_message("garbage"), None);
        assert_eq!(Revocation::parse_member("sid:"), None);
    }

    #[test]
    fn view_matches_session_token_and_user_cutoff() {
        let mut view = DenylistView::default();
        view.insert(Revocation::Session("s1".into()), 100);
        view.insert(Revocation::Token("j2".into()), 100);
        view.insert(
            Revocation::User {
                user: "u3".into(),
                before: 50,
            },
            100,
        );
        assert!(view.is_revoked(&claims("s1", "x", "u", 10)));
        assert!(view.is_revoked(&claims("s", "j2", "u", 10)));
        assert!(view.is_revoked(&claims("s", "x", "u3", 50)));
        assert!(
            !view.is_revoked(&claims("s", "x", "u3", 51)),
            "issued after the cutoff"
        );
        assert!(!view.is_revoked(&claims("s", "x", "u", 10)));
        view.prune(100);
        assert!(view.is_empty());
    }
}
