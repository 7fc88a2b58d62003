//! Duplicate member names in JSON objects. RFC 8259 leaves their meaning to the parser, so
//! `{"email":"a@x","email":"b@x"}` could mean either address depending on who reads it; such
//! a body is refused rather than guessed at.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The path (`email`, `items.0.title`) of the first member that appears twice in one object,
/// if any. `data` is expected to be valid JSON; anything else reports no duplicate.
pub fn first_duplicate(data: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(data);
    let _ = Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de);
    found.into_inner()
}

struct Walk<'a> {
    path: String,
    found: &'a RefCell<Option<String>>,
}

impl Walk<'_> {
    fn child(&self, name: &str) -> Self {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        };
        Walk {
            path,
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = self.child(&key);
            if !seen.insert(key) {
                *self.found.borrow_mut() = Some(child.path);
                return Err(de::Error::custom("duplicate member"));
            }
            map.next_value_seed(child)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq.next_element_seed(self.child(&i.to_string()))?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::first_duplicate;

    #[test]
    fn the_first_repeated_member_is_named_by_its_path() {
        let cases = [
            (r#"{"email":"a@x","email":"b@x"}"#, Some("email")),
            (r#"{"a":{"b":1,"c":2,"b":3}}"#, Some("a.b")),
            (r#"{"items":[{"t":1},{"t":1,"t":2}]}"#, Some("items.1.t")),
            (r#"{"e\u006dail":"a","email":"b"}"#, Some("email")),
            (r#"{"a":1,"b":{"a":2}}"#, None),
            (r#"[1,2,{"x":null}]"#, None),
            ("not json", None),
            ("", None),
        ];
        for (body, expected) in cases {
            assert_eq!(
                first_duplicate(body.as_bytes()).as_deref(),
                expected,
                "{body}"
            );
        }
    }
}
