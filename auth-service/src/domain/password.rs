use shared::FieldError;
use shared::problem::FieldCode;
use unicode_normalization::UnicodeNormalization;

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 256;
/// From this length on, only the breached list refuses a password.
pub const LONG_CHARS: usize = 64;

/// A password as presented at login: never normalised or trimmed, verified exactly as
/// received. Only bounded, so no one can make us hash a megabyte.
pub struct PasswordInput(String);

impl PasswordInput {
    pub fn parse(field: &str, raw: String) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new(field, FieldCode::Required, "is required"));
        }
        // A bound on bytes generous enough for 256 characters of any script after NFKC.
        if raw.len() > MAX_CHARS * 4 * 4 {
            return Err(FieldError::new(field, FieldCode::TooLong, "is too long"));
        }
        Ok(Self(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A new password, checked NIST 800-63B style: 8 to 256 characters counted after Unicode
/// NFKC, no composition rules, and refused when it is easy to guess: found in zxcvbn's
/// dictionaries of common and breached passwords, or, below 64 characters, built from
/// guessable parts or the user's own email or name (zxcvbn score below 2).
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(field: &str, raw: String, user_inputs: &[&str]) -> Result<Self, FieldError> {
        let chars = raw.nfkc().count();
        if chars < MIN_CHARS {
            return Err(FieldError::new(
                field,
                FieldCode::TooShort,
                format!("must be at least {MIN_CHARS} characters"),
            ));
        }
        if chars > MAX_CHARS {
            return Err(FieldError::new(
                field,
                FieldCode::TooLong,
                format!("must be at most {MAX_CHARS} characters"),
            ));
        }
        // zxcvbn's cost grows with length; past 100 characters a password is not guessable
        // from dictionaries anyway, so only the prefix is scored.
        let scored: String = raw.chars().take(100).collect();
        let estimate = zxcvbn::zxcvbn(&scored, user_inputs);
        if is_breached(&estimate) {
            return Err(FieldError::new(
                field,
                FieldCode::BreachedPassword,
                "appears in lists of passwords exposed in breaches; choose another",
            ));
        }
        // The estimate's verdict on patterns (repeats, sequences, words) holds for shorter
        // passwords; a passphrase of LONG_CHARS or more is refused only when breached.
        if chars < LONG_CHARS && (estimate.score() as u8) < 2 {
            return Err(FieldError::new(
                field,
                FieldCode::CommonPassword,
                "is too common or too easy to guess (it appears in breach corpora or is built from your details); choose a longer phrase",
            ));
        }
        Ok(Self(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The whole password is one entry of zxcvbn's breached-passwords list (possibly with
/// capitals or l33t substitutions), rather than merely built from guessable parts.
fn is_breached(estimate: &zxcvbn::Entropy) -> bool {
    use zxcvbn::matching::patterns::MatchPattern;
    match estimate.sequence() {
        [only] => matches!(
            &only.pattern,
            // `DictionaryType` is not exported; its default is the passwords list.
            MatchPattern::Dictionary(d) if d.dictionary_name == Default::default() && !d.reversed
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pw: &str) -> Result<NewPassword, FieldError> {
        NewPassword::parse("password", pw.to_owned(), &["alice@example.com"])
    }

    #[test]
    fn length_is_counted_after_nfkc() {
        assert_eq!(check("short1!").err().unwrap().code, "TOO_SHORT");
        // U+FB01 (the "fi" ligature) is one char that NFKC turns into two.
        assert!(check("\u{FB01}\u{FB01}\u{FB01}\u{FB01}").is_err());
        assert_eq!(check(&"x".repeat(257)).err().unwrap().code, "TOO_LONG");
    }

    #[test]
    fn breached_passwords_are_refused_as_such() {
        for pw in ["password", "12345678", "P@ssw0rd", "qwertyuiop", "iloveyou"] {
            assert_eq!(
                check(pw).err().map(|e| e.code),
                Some("BREACHED_PASSWORD".into()),
                "{pw}"
            );
        }
    }

    #[test]
    fn guessable_and_personal_passwords_are_refused() {
        for pw in ["alice@example.com", "aaaaaaaaaa", "abcdefghijk"] {
            assert_eq!(
                check(pw).err().map(|e| e.code),
                Some("COMMON_PASSWORD".into()),
                "{pw}"
            );
        }
    }

    #[test]
    fn long_passphrases_and_unicode_are_accepted() {
        assert!(check("correct horse battery staple").is_ok());
        assert!(check("Ünïcödé pässwörd mit Umlauten ✓").is_ok());
        let long: String = "Съешь же ещё этих мягких французских булок, да выпей чаю. "
            .repeat(5)
            .chars()
            .take(256)
            .collect();
        assert!(check(&long).is_ok());
        // The longest allowed, counted in characters, not bytes; and 64 characters of one
        // repeated letter, which is in no breach list.
        assert!(check(&"ü".repeat(256)).is_ok());
        assert!(check(&"x".repeat(64)).is_ok());
        assert_eq!(
            check(&"x".repeat(63)).err().unwrap().code,
            "COMMON_PASSWORD"
        );
    }
}
