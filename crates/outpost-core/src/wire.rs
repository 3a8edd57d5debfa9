//! The gateway protocol's JSON form of a [`Value`] (`docs/protocol.md`,
//! "Over HTTP"). Every value crosses tagged with its kind, so text, JSON
//! text and bytes never pass for one another, and a float keeps NaN and
//! the infinities (JSON numbers cannot carry them: serde_json would write
//! `null`, a silent change of the row). The sync types of
//! [`crate::sync`] derive their serde form on top of this one.
//!
//! | value | JSON |
//! |---|---|
//! | `Null` | `"n"` |
//! | `Bool(b)` | `{"b": true}` |
//! | `Int(i)` | `{"i": 7}` |
//! | `Float(f)` | `{"f": 1.5}`, `{"f": "NaN"}`, `{"f": "inf"}`, `{"f": "-inf"}` |
//! | `Text(s)` | `{"s": "…"}` |
//! | `Bytes(b)` | `{"x": "<base64>"}` |
//! | `Json(t)` | `{"j": "<the JSON text as PostgreSQL returned it>"}` |
//! | `Array(a)` | `{"a": [ … ]}` |

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::Value;

#[derive(Serialize, Deserialize)]
enum Wire {
    #[serde(rename = "n")]
    Null,
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "f")]
    Float(WireFloat),
    #[serde(rename = "s")]
    Text(String),
    #[serde(rename = "x")]
    Bytes(String),
    #[serde(rename = "j")]
    Json(String),
    #[serde(rename = "a")]
    Array(Vec<Value>),
}

/// A float as a JSON number when it is finite, else as a word.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WireFloat {
    Finite(f64),
    Word(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Borrowing forms would avoid these clones; the values are small
        // next to the network round trip, and the bulk path (bootstrap)
        // is measured in docs/gateway.md.
        let w = match self {
            Value::Null => Wire::Null,
            Value::Bool(b) => Wire::Bool(*b),
            Value::Int(i) => Wire::Int(*i),
            Value::Float(f) if f.is_finite() => Wire::Float(WireFloat::Finite(*f)),
            Value::Float(f) if f.is_nan() => Wire::Float(WireFloat::Word("NaN".into())),
            Value::Float(f) if *f > 0.0 => Wire::Float(WireFloat::Word("inf".into())),
            Value::Float(_) => Wire::Float(WireFloat::Word("-inf".into())),
            Value::Text(t) => Wire::Text(t.clone()),
            Value::Bytes(b) => Wire::Bytes(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Json(j) => Wire::Json(j.clone()),
            Value::Array(a) => Wire::Array(a.clone()),
        };
        w.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        use serde::de::Error as _;
        Ok(match Wire::deserialize(d)? {
            Wire::Null => Value::Null,
            Wire::Bool(b) => Value::Bool(b),
            Wire::Int(i) => Value::Int(i),
            Wire::Float(WireFloat::Finite(f)) => Value::Float(f),
            Wire::Float(WireFloat::Word(w)) => Value::Float(match w.as_str() {
                "NaN" => f64::NAN,
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                other => {
                    return Err(D::Error::custom(format!("not a float: {other:?}")));
                }
            }),
            Wire::Text(t) => Value::Text(t),
            Wire::Bytes(b) => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| D::Error::custom(format!("bytes are not base64: {e}")))?,
            ),
            Wire::Json(j) => Value::Json(j),
            Wire::Array(a) => Value::Array(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: Value) -> (String, Value) {
        let text = serde_json::to_string(&v).expect("serialize");
        let back: Value = serde_json::from_str(&text).expect("deserialize");
        (text, back)
    }

    #[test]
    fn every_kind_round_trips_with_its_tag() {
        let cases = [
            (Value::Null, r#""n""#),
            (Value::Bool(true), r#"{"b":true}"#),
            (Value::Int(i64::MIN), r#"{"i":-9223372036854775808}"#),
            (Value::Float(1.5), r#"{"f":1.5}"#),
            (Value::Float(f64::INFINITY), r#"{"f":"inf"}"#),
            (Value::Float(f64::NEG_INFINITY), r#"{"f":"-inf"}"#),
            (Value::Text("1".into()), r#"{"s":"1"}"#),
            (Value::Bytes(vec![0, 255]), r#"{"x":"AP8="}"#),
            (Value::Json("{\"a\": 1}".into()), r#"{"j":"{\"a\": 1}"}"#),
            (
                Value::Array(vec![Value::Int(1), Value::Null]),
                r#"{"a":[{"i":1},"n"]}"#,
            ),
        ];
        for (v, text) in cases {
            let (got, back) = round(v.clone());
            assert_eq!(got, text);
            assert_eq!(back, v);
        }
    }

    #[test]
    fn nan_and_negative_zero_survive() {
        let (_, back) = round(Value::Float(f64::NAN));
        assert!(matches!(back, Value::Float(f) if f.is_nan()));
        let (text, back) = round(Value::Float(-0.0));
        assert_eq!(text, r#"{"f":-0.0}"#);
        assert!(matches!(back, Value::Float(f) if f == 0.0 && f.is_sign_negative()));
    }

    #[test]
    fn a_float_word_that_is_not_one_is_refused() {
        assert!(serde_json::from_str::<Value>(r#"{"f":"lots"}"#).is_err());
        assert!(serde_json::from_str::<Value>(r#"{"x":"!!"}"#).is_err());
    }
}
