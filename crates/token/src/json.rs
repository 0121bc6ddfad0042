//! JSON objects as a JWS carries them, read with one rule: no member name twice, at any depth.
//!
//! RFC 7515 section 4 and RFC 7519 section 4 let a parser either reject duplicate member names
//! or keep the last one. Keeping the last one means two readers of the same token can disagree
//! on what it says (a gateway that keeps the first `sub`, sessiongate the last), so sessiongate
//! rejects them, in the header and in the payload, and inside every nested object (`cnf`, a
//! SET's `events` and `sub_id`) alike. Names compare after JSON unescaping, so `"sub"` and
//! `"\u0073ub"` are the same member.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text is not one object with unique member names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectError {
    /// Not JSON, or JSON but not an object.
    NotAnObject,
    /// Some object in it names a member twice.
    DuplicateMember,
}

/// Parses `bytes` as one JSON object whose objects, at every depth, name each member once.
/// serde_json's own limits (nesting depth 128) still apply.
pub(crate) fn object_with_unique_members(bytes: &[u8]) -> Result<Map<String, Value>, ObjectError> {
    let duplicate = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = UniqueMembers {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(Value::Object(object)) => Ok(object),
        _ if duplicate.get() => Err(ObjectError::DuplicateMember),
        _ => Err(ObjectError::NotAnObject),
    }
}

/// Builds a [`Value`] exactly as serde_json would, except that an object naming a member twice
/// fails (and says so in `duplicate`, since serde errors carry no kind of our own).
#[derive(Clone, Copy)]
struct UniqueMembers<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for UniqueMembers<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueMembers<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut list = Vec::with_capacity(items.size_hint().unwrap_or(0).min(64));
        while let Some(item) = items.next_element_seed(self)? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = members.next_key::<String>()? {
            let value = members.next_value_seed(self)?;
            if object.insert(name, value).is_some() {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Map<String, Value>, ObjectError> {
        object_with_unique_members(text.as_bytes())
    }

    #[test]
    fn an_object_reads_as_serde_json_reads_it() {
        let text = r#"{"s":"x\u00e9","n":-1,"u":18446744073709551615,"f":1.5,"b":true,
            "z":null,"a":[1,{"k":"v"}],"o":{"p":{"q":[]}}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Value::Object(parse(text).unwrap()), expected);
    }

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"sub":"alice","\u0073ub":"admin"}"#,
            r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#,
            r#"{"events":{"e":{"subject":{"format":"email","format":"opaque"}}}}"#,
            r#"{"list":[{"k":1,"k":2}]}"#,
        ] {
            assert_eq!(parse(text), Err(ObjectError::DuplicateMember), "{text}");
        }
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        assert!(parse(r#"{"a":{"k":1},"b":{"k":2},"c":[{"k":3},{"k":4}]}"#).is_ok());
    }

    #[test]
    fn anything_but_one_object_is_not_an_object() {
        for text in [
            "",
            "[]",
            "1",
            "null",
            r#"{"a":1} {}"#,
            r#"{"a":1"#,
            "{\"a\":1,}",
        ] {
            assert_eq!(parse(text), Err(ObjectError::NotAnObject), "{text}");
        }
    }

    #[test]
    fn nesting_stays_bounded_by_serde_jsons_recursion_limit() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse(&deep), Err(ObjectError::NotAnObject));
    }
}
