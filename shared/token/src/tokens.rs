//! The access token's claims, and the one definition of roles, scopes and which role grants
//! which scopes. Both services use this module; docs/api.md prints the same table.
//!
//! | role | scopes |
//! |---|---|
//! | `user` | `todos:read todos:write` |
//! | `admin` | `todos:read todos:write todos:admin` |
//! | `service` | exactly the scopes its client was created with (`tokens:introspect` only here) |
//!
//! Unknown roles and scopes in a token grant nothing (deny by default).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `typ` header of every access token (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum Role {
    User,
    Admin,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// The scopes a token of this role may carry. A service's scopes are its client's, so
    /// any known scope.
    pub fn grantable_scopes(self) -> &'static [Scope] {
        match self {
            Role::User => &[Scope::TodosRead, Scope::TodosWrite],
            Role::Admin => &[Scope::TodosRead, Scope::TodosWrite, Scope::TodosAdmin],
            Role::Service => Scope::ALL,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            _ => Err(UnknownValue),
        }
    }
}

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
pub enum Scope {
    /// Read one's own todos.
    #[serde(rename = "todos:read")]
    #[cfg_attr(feature = "openapi", oai(rename = "todos:read"))]
    TodosRead,
    /// Create, change and delete one's own todos.
    #[serde(rename = "todos:write")]
    #[cfg_attr(feature = "openapi", oai(rename = "todos:write"))]
    TodosWrite,
    /// Read and delete anyone's todos.
    #[serde(rename = "todos:admin")]
    #[cfg_attr(feature = "openapi", oai(rename = "todos:admin"))]
    TodosAdmin,
    /// For service clients: revoke and introspect tokens not issued to them (RFC 7009 2.1,
    /// RFC 7662 2.1), such as users' tokens.
    #[serde(rename = "tokens:introspect")]
    #[cfg_attr(feature = "openapi", oai(rename = "tokens:introspect"))]
    TokensIntrospect,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::TodosRead,
        Scope::TodosWrite,
        Scope::TodosAdmin,
        Scope::TokensIntrospect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TodosRead => "todos:read",
            Scope::TodosWrite => "todos:write",
            Scope::TodosAdmin => "todos:admin",
            Scope::TokensIntrospect => "tokens:introspect",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::TodosRead => 1,
            Scope::TodosWrite => 2,
            Scope::TodosAdmin => 4,
            Scope::TokensIntrospect => 8,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == s)
            .ok_or(UnknownValue)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownValue;

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown value")
    }
}

/// A set of scopes, cheap to copy and check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }

    /// The space-separated form used in the `scope` claim.
    pub fn to_claim(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Parse a `scope` claim, keeping only known scopes.
    pub fn from_claim(claim: &str) -> Self {
        let mut scopes = Scopes::default();
        for scope in claim.split(' ').filter_map(|s| s.parse::<Scope>().ok()) {
            scopes.insert(scope);
        }
        scopes
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Scopes::default();
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

/// The claims of an access token, as signed. Every field but `sid`, `nbf` and `client_id`
/// is required.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: Audience,
    /// The user id, or the client id for a service.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The session; absent for a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub role: String,
    pub scope: String,
    /// The OAuth client, for service tokens (RFC 9068).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Whether the user proved their email address (OpenID Connect's claim): absent for a
    /// service. Resource services may require it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// How the user authenticated (RFC 8176: `pwd`, and `otp` or `mfa` with a second
    /// factor); absent for a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

/// `aud` is a string or an array of strings (RFC 7519).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// A verified caller, as handlers see it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub`: a user id, or a client id for a service.
    pub subject: String,
    pub role: Option<Role>,
    pub scopes: Scopes,
    pub session_id: Option<Uuid>,
    pub token_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub client_id: Option<String>,
    /// `amr`: how the user authenticated (empty for a service).
    pub amr: Vec<String>,
}

/// The caller lacks the role, scope or kind of token an operation needs (403 `FORBIDDEN` at
/// the edge); the text says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);

impl Principal {
    /// The effective rights of verified claims: an unknown role grants nothing, unknown
    /// scopes are dropped, and a user or admin token cannot claim more than its role grants.
    pub fn from_claims(claims: &AccessClaims) -> Self {
        let role = claims.role.parse::<Role>().ok();
        let claimed = Scopes::from_claim(&claims.scope);
        let scopes = match role {
            Some(role) => role
                .grantable_scopes()
                .iter()
                .copied()
                .filter(|s| claimed.contains(*s))
                .collect(),
            None => Scopes::default(),
        };
        Self {
            subject: claims.sub.clone(),
            role,
            scopes,
            session_id: claims.sid.as_deref().and_then(|s| s.parse().ok()),
            token_id: claims.jti.clone(),
            issued_at: claims.iat,
            expires_at: claims.exp,
            client_id: claims.client_id.clone(),
            amr: claims.amr.clone().unwrap_or_default(),
        }
    }

    /// Whether a user's login used a second factor (`amr` names `otp`, `mfa`, `hwk` or
    /// `swk`).
    pub fn second_factor(&self) -> bool {
        self.amr
            .iter()
            .any(|m| matches!(m.as_str(), "otp" | "mfa" | "hwk" | "swk"))
    }

    /// Refused unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), NotAllowed> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(NotAllowed(format!("This needs the `{scope}` scope.")))
        }
    }

    /// Refused unless the caller has `role`.
    pub fn require_role(&self, role: Role) -> Result<(), NotAllowed> {
        if self.role == Some(role) {
            Ok(())
        } else {
            Err(NotAllowed(format!("This needs the `{role}` role.")))
        }
    }

    /// The user id, for user and admin tokens.
    pub fn user_id(&self) -> Option<Uuid> {
        match self.role {
            Some(Role::User | Role::Admin) => self.subject.parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: &str, scope: &str) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: Audience::One("a".into()),
            sub: Uuid::nil().to_string(),
            exp: 2,
            iat: 1,
            nbf: None,
            jti: "j".into(),
            sid: None,
            role: role.into(),
            scope: scope.into(),
            client_id: None,
            email_verified: None,
            amr: None,
        }
    }

    #[test]
    fn unknown_role_grants_nothing() {
        let p = Principal::from_claims(&claims("root", "todos:read todos:admin"));
        assert_eq!(p.role, None);
        assert!(p.require(Scope::TodosRead).is_err());
    }

    #[test]
    fn unknown_scopes_are_dropped() {
        let p = Principal::from_claims(&claims("service", "todos:read everything"));
        assert!(p.require(Scope::TodosRead).is_ok());
        assert_eq!(p.scopes.to_claim(), "todos:read");
    }

    #[test]
    fn user_cannot_claim_admin_scope() {
        let p = Principal::from_claims(&claims("user", "todos:read todos:admin"));
        assert!(p.require(Scope::TodosAdmin).is_err());
        assert!(p.require(Scope::TodosRead).is_ok());
    }

    #[test]
    fn admin_gets_admin_scope_when_claimed() {
        let p = Principal::from_claims(&claims("admin", "todos:read todos:write todos:admin"));
        assert!(p.require(Scope::TodosAdmin).is_ok());
        assert!(p.require_role(Role::Admin).is_ok());
    }

    #[test]
    fn audience_accepts_string_or_list() {
        let one: Audience = serde_json::from_str(r#""x""#).unwrap();
        let many: Audience = serde_json::from_str(r#"["y","x"]"#).unwrap();
        assert!(one.contains("x") && many.contains("x") && !many.contains("z"));
    }
}
