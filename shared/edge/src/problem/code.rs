//! The stable words clients switch on: `Problem.code` and `FieldError.code`. On the wire they
//! are strings (a client must accept words it does not know yet); in the code, enums, so a
//! typo does not compile and `docs/api.md` can list them all from here.

use std::fmt;

macro_rules! codes {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The word on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

codes! {
    /// What went wrong with a request, as `Problem.code`.
    pub enum Code {
        ValidationFailed = "VALIDATION_FAILED",
        TokenInvalid = "TOKEN_INVALID",
        TokenExpired = "TOKEN_EXPIRED",
        TokenRevoked = "TOKEN_REVOKED",
        InvalidCredentials = "INVALID_CREDENTIALS",
        RefreshTokenInvalid = "REFRESH_TOKEN_INVALID",
        RefreshTokenReused = "REFRESH_TOKEN_REUSED",
        ResetTokenInvalid = "RESET_TOKEN_INVALID",
        VerifyTokenInvalid = "VERIFY_TOKEN_INVALID",
        EmailNotVerified = "EMAIL_NOT_VERIFIED",
        MfaCodeInvalid = "MFA_CODE_INVALID",
        Forbidden = "FORBIDDEN",
        CsrfFailed = "CSRF_FAILED",
        NotFound = "NOT_FOUND",
        MethodNotAllowed = "METHOD_NOT_ALLOWED",
        RequestTimeout = "REQUEST_TIMEOUT",
        Conflict = "CONFLICT",
        EmailTaken = "EMAIL_TAKEN",
        PreconditionFailed = "PRECONDITION_FAILED",
        PayloadTooLarge = "PAYLOAD_TOO_LARGE",
        UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE",
        RateLimited = "RATE_LIMITED",
        Internal = "INTERNAL",
        ServiceUnavailable = "SERVICE_UNAVAILABLE",
    }
}

codes! {
    /// What is wrong with one field, as `FieldError.code`.
    pub enum FieldCode {
        Required = "REQUIRED",
        UnknownField = "UNKNOWN_FIELD",
        DuplicateField = "DUPLICATE_FIELD",
        InvalidType = "INVALID_TYPE",
        InvalidValue = "INVALID_VALUE",
        InvalidFormat = "INVALID_FORMAT",
        InvalidCharacters = "INVALID_CHARACTERS",
        /// A rule the schema does not carry.
        Invalid = "INVALID",
        TooShort = "TOO_SHORT",
        TooLong = "TOO_LONG",
        OutOfRange = "OUT_OF_RANGE",
        DuplicateItem = "DUPLICATE_ITEM",
        CommonPassword = "COMMON_PASSWORD",
        BreachedPassword = "BREACHED_PASSWORD",
        ReusedWithDifferentBody = "REUSED_WITH_DIFFERENT_BODY",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_unique_upper_snake() {
        let words: Vec<&str> = Code::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(FieldCode::ALL.iter().map(|c| c.as_str()))
            .collect();
        for word in &words {
            assert!(
                word.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{word}"
            );
        }
        let mut sorted = words.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), words.len(), "a word is used twice");
    }
}
