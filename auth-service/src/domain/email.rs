use shared::FieldError;
use shared::problem::FieldCode;

/// An email address: trimmed, one `@`, a plausible domain, at most 254 characters. Case is
/// kept as given for display; uniqueness and lookups ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |msg: &str| FieldError::new("email", FieldCode::InvalidFormat, msg);
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::new("email", FieldCode::Required, "is required"));
        }
        if s.chars().count() > 254 {
            return Err(FieldError::new(
                "email",
                FieldCode::TooLong,
                "must be at most 254 characters",
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces or control characters"));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(bad("must be an address like name@example.com"));
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad("must be an address like name@example.com"));
        }
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !domain.contains('.') || !labels_ok {
            return Err(bad("must have a domain like example.com"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness and lookups use.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_trims_ordinary_addresses() {
        let e = Email::parse("  Alice.Smith+tag@Example.co.uk ").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith+tag@Example.co.uk");
        assert_eq!(e.normalized(), "alice.smith+tag@example.co.uk");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@@example.com",
            "a@-x.com",
            "a@x..com",
            "a@exa mple.com",
            "a\n@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err().code, "TOO_LONG");
    }
}
