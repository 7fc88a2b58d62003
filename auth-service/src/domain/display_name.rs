use shared::FieldError;

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::new(
                "display_name",
                "REQUIRED",
                "must not be empty",
            ));
        }
        if s.chars().count() > 100 {
            return Err(FieldError::new(
                "display_name",
                "TOO_LONG",
                "must be at most 100 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new(
                "display_name",
                "INVALID_CHARACTERS",
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        assert_eq!(DisplayName::parse("  Ann ").unwrap().into_inner(), "Ann");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
    }
}
