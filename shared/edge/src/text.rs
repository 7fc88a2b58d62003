//! Checks shared by the services' text fields.

use crate::problem::FieldCode;
use crate::problem::FieldError;

/// A one-line human text: at most `max_chars` characters as sent, no control characters
/// anywhere, not blank; kept trimmed. (What the OpenAPI document says of it, exactly:
/// [`SINGLE_LINE_PATTERN`] and `maxLength`.)
pub fn single_line(field: &str, raw: &str, max_chars: usize) -> Result<String, FieldError> {
    if raw.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            FieldCode::TooLong,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            FieldCode::InvalidCharacters,
            "must not contain control characters",
        ));
    }
    let s = raw.trim();
    if s.is_empty() {
        return Err(FieldError::new(
            field,
            FieldCode::Required,
            "must not be empty",
        ));
    }
    Ok(s.to_owned())
}

/// The OpenAPI pattern of a [`single_line`] text: no control character (Unicode `Cc`), and
/// at least one that is not white space.
pub const SINGLE_LINE_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

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
        assert_eq!(
            single_line("f", "\tAnn\n", 10).unwrap_err().code,
            "INVALID_CHARACTERS",
            "control characters are refused at the edges too, as the document says"
        );
        assert_eq!(
            single_line("f", &format!("  {}  ", "é".repeat(8)), 10)
                .unwrap_err()
                .code,
            "TOO_LONG",
            "the length is of the text as sent"
        );
    }
}
