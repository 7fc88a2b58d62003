//! Strings the OpenAPI document constrains by a `pattern` (and a `maxLength`), checked with
//! the pattern compiled once.
//!
//! poem-openapi's `validator(pattern = ...)` compiles its regex again on every check, which
//! a profile of `POST /v1/todos` showed costing about 7 % of the service's CPU (the bounded
//! repetitions in the cursor and `Idempotency-Key` patterns compile to large automata). A
//! [`Patterned`] field or parameter is documented exactly as `String` with those validators
//! (the same `type`, `pattern` and `maxLength`, merged with the field's description), and
//! checks the same rules, but its regex is built once per pattern.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{LazyLock, RwLock};

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

/// What a [`Patterned`] string must match, as the OpenAPI document says it.
pub trait Rule: Send + Sync + 'static {
    /// The regex (Rust `regex` syntax, which the document publishes as it is).
    const PATTERN: &'static str;
    /// At most this many characters (Unicode scalar values), if bounded.
    const MAX_LENGTH: Option<usize> = None;
}

/// Whether `s` matches `pattern`, compiled once per pattern. A pattern that does not
/// compile matches nothing: a bug in the document, not the caller's.
pub fn matches(pattern: &str, s: &str) -> bool {
    static COMPILED: LazyLock<RwLock<HashMap<String, Option<regex::Regex>>>> =
        LazyLock::new(Default::default);
    if let Some(re) = COMPILED.read().ok().and_then(|m| m.get(pattern).cloned()) {
        return re.is_some_and(|re| re.is_match(s));
    }
    let re = regex::Regex::new(pattern).ok();
    let matched = re.as_ref().is_some_and(|re| re.is_match(s));
    if let Ok(mut map) = COMPILED.write() {
        map.insert(pattern.to_owned(), re);
    }
    matched
}

/// A string that satisfies `R`.
pub struct Patterned<R> {
    value: String,
    rule: PhantomData<fn() -> R>,
}

impl<R: Rule> Patterned<R> {
    /// `value` if it satisfies `R`; why not otherwise.
    pub fn new(value: String) -> Result<Self, String> {
        if R::MAX_LENGTH.is_some_and(|max| value.chars().nth(max).is_some()) {
            return Err(format!(
                "must be at most {} characters",
                R::MAX_LENGTH.unwrap_or(0)
            ));
        }
        if !matches(R::PATTERN, &value) {
            return Err(format!("must match the pattern {}", R::PATTERN));
        }
        Ok(Self {
            value,
            rule: PhantomData,
        })
    }

    pub fn into_inner(self) -> String {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl<R> Deref for Patterned<R> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.value
    }
}

impl<R> Clone for Patterned<R> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            rule: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Patterned<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

impl<R> PartialEq for Patterned<R> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<R> serde::Serialize for Patterned<R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<R: Rule> Type for Patterned<R> {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            max_length: R::MAX_LENGTH,
            pattern: Some(R::PATTERN.to_owned()),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }

    fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl<R: Rule> ParseFromJSON for Patterned<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Self::new(s).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<R: Rule> ParseFromParameter for Patterned<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::new(value.to_owned()).map_err(ParseError::custom)
    }
}

impl<R: Rule> ToJSON for Patterned<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.value.clone()))
    }
}

/// `next_cursor` of a list's previous page, as a query parameter.
pub struct CursorRule;

impl Rule for CursorRule {
    const PATTERN: &'static str = r"^[A-Za-z0-9_-]{1,512}$";
}

pub type Cursor = Patterned<CursorRule>;

/// A free-text filter of a list (anything but NUL, which PostgreSQL cannot store).
pub struct FilterRule;

impl Rule for FilterRule {
    const PATTERN: &'static str = r"^[^\u0000]*$";
}

pub type Filter = Patterned<FilterRule>;

/// A one-line human text of at most `MAX` characters: no control character, not blank
/// ([`crate::text::SINGLE_LINE_PATTERN`]; the services trim it with
/// [`crate::text::single_line`]).
pub struct SingleLineRule<const MAX: usize>;

impl<const MAX: usize> Rule for SingleLineRule<MAX> {
    const PATTERN: &'static str = crate::text::SINGLE_LINE_PATTERN;
    const MAX_LENGTH: Option<usize> = Some(MAX);
}

pub type SingleLine<const MAX: usize> = Patterned<SingleLineRule<MAX>>;

#[cfg(test)]
mod tests {
    use super::*;

    struct Short;

    impl Rule for Short {
        const PATTERN: &'static str = r"^[a-z]+$";
        const MAX_LENGTH: Option<usize> = Some(3);
    }

    #[test]
    fn checks_the_pattern_and_the_length_in_characters() {
        assert_eq!(
            Patterned::<Short>::new("abc".into()).unwrap().as_str(),
            "abc"
        );
        assert!(Patterned::<Short>::new("abcd".into()).is_err());
        assert!(Patterned::<Short>::new("aB".into()).is_err());
        assert!(Patterned::<Short>::new(String::new()).is_err());
        assert!(Cursor::new("a".repeat(512)).is_ok());
        assert!(Cursor::new("a".repeat(513)).is_err());
        assert!(Cursor::new("a=".into()).is_err());
        assert!(Filter::new("é x".into()).is_ok());
        assert!(Filter::new("a\0".into()).is_err());
        assert!(SingleLine::<3>::new(" ab".into()).is_ok());
        assert!(SingleLine::<3>::new("   ".into()).is_err());
        assert!(SingleLine::<3>::new("a\tb".into()).is_err());
        assert!(SingleLine::<3>::new("abcd".into()).is_err());
    }

    #[test]
    fn parses_only_strings_from_json() {
        assert!(Patterned::<Short>::parse_from_json(Some(Value::from("ab"))).is_ok());
        assert!(Patterned::<Short>::parse_from_json(Some(Value::from(12))).is_err());
        assert!(Patterned::<Short>::parse_from_json(None).is_err());
    }

    #[test]
    fn is_documented_as_a_string_with_the_pattern_and_length() {
        let MetaSchemaRef::Inline(schema) = Patterned::<Short>::schema_ref() else {
            panic!("inline");
        };
        assert_eq!(schema.ty, "string");
        assert_eq!(schema.pattern.as_deref(), Some(r"^[a-z]+$"));
        assert_eq!(schema.max_length, Some(3));
    }
}
