//! Todo fields, parsed before anything touches the database.

use chrono::{DateTime, Utc};
use shared::FieldError;
use shared::problem::FieldCode;

/// 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoTitle(String);

impl TodoTitle {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        shared::text::single_line("title", raw, 200).map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Up to 2000 characters; kept as written (line breaks are fine), but no other control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > 2000 {
            return Err(FieldError::new(
                "description",
                FieldCode::TooLong,
                "must be at most 2000 characters",
            ));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(FieldError::new(
                "description",
                FieldCode::InvalidCharacters,
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A validated merge patch of a todo: `None` leaves a field alone, `Some(None)` clears a
/// nullable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TodoPatch {
    pub title: Option<TodoTitle>,
    pub description: Option<Option<Description>>,
    pub done: Option<bool>,
    pub due_at: Option<Option<DateTime<Utc>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(
            TodoTitle::parse("  Buy milk ").unwrap().into_inner(),
            "Buy milk"
        );
        assert_eq!(TodoTitle::parse("   ").unwrap_err().code, "REQUIRED");
        assert_eq!(
            TodoTitle::parse(&"é".repeat(201)).unwrap_err().code,
            "TOO_LONG"
        );
        assert!(TodoTitle::parse(&"é".repeat(200)).is_ok());
        assert_eq!(
            TodoTitle::parse("a\u{0}b").unwrap_err().code,
            "INVALID_CHARACTERS"
        );
        assert_eq!(
            TodoTitle::parse("a\nb").unwrap_err().code,
            "INVALID_CHARACTERS"
        );
    }

    #[test]
    fn descriptions_allow_line_breaks_up_to_2000_chars() {
        assert!(Description::parse("line one\nline two").is_ok());
        assert!(Description::parse(&"x".repeat(2000)).is_ok());
        assert_eq!(
            Description::parse(&"x".repeat(2001)).unwrap_err().code,
            "TOO_LONG"
        );
        assert!(Description::parse("bell\u{7}").is_err());
    }
}
