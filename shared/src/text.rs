//! Checks shared by the services' text fields.

use crate::problem::FieldError;

/// A one-line human text: trimmed, 1 to `max_chars` characters, no control characters.
pub fn single_line(field: &str, raw: &str, max_chars: usize) -> Result<String, FieldError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(FieldError::new(field, "REQUIRED", "must not be empty"));
    }
    if s.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            "TOO_LONG",
            format!("must be at most {max_chars} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "INVALID_CHARACTERS",
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::single_line;

    #[test]
    fn trims_bounds_and_refuses_control_characters() {
        assert_eq!(single_line("f", "  Ann ", 10).unwrap(), "Ann");
        assert_eq!(single_line("f", "   ", 10).unwrap_err().code, "REQUIRED");
        assert_eq!(
            single_line("f", &"é".repeat(11), 10).unwrap_err().code,
            "TOO_LONG"
        );
        assert!(single_line("f", &"é".repeat(10), 10).is_ok());
        assert_eq!(
            single_line("f", "a\u{7}b", 10).unwrap_err().code,
            "INVALID_CHARACTERS"
        );
        assert_eq!(
            single_line("f", "a\nb", 10).unwrap_err().code,
            "INVALID_CHARACTERS"
        );
    }
}
