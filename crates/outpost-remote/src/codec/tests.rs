//! The codec's unit tests, run without a server: `numeric` to binary and
//! back (with property tests), malformed buffers refused without a panic,
//! arrays round-tripped, mismatched values named. The tests against a live
//! server are in `tests/codec.rs`.

use super::*;
use outpost_core::types::{USECS_PER_DAY, normalise_numeric};
use proptest::prelude::*;

fn enc(text: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    numeric_to_binary(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
    out.to_vec()
}

fn roundtrip(text: &str) -> String {
    numeric_from_binary(&enc(text)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn numeric_binary_layout() {
    // 12345.678 = 1|2345|6780, weight 1, dscale 3 (what numeric_send gives).
    assert_eq!(
        enc("12345.678"),
        vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1A, 0x7C]
    );
    // Zero keeps its scale, no digits, positive.
    assert_eq!(enc("-0.00"), vec![0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(enc("NaN"), vec![0, 0, 0, 0, 0xC0, 0, 0, 0]);
    assert_eq!(enc("-Infinity"), vec![0, 0, 0, 0, 0xF0, 0, 0, 0]);
    // 0.0001: one digit at weight -1.
    assert_eq!(enc("0.0001"), vec![0, 1, 0xFF, 0xFF, 0, 0, 0, 4, 0, 1]);
    // 10000 = one digit at weight 1; trailing zero groups dropped.
    assert_eq!(enc("10000"), vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn numeric_text() {
    for (input, out) in [
        ("0", "0"),
        ("1.50", "1.50"),
        ("-1.50", "-1.50"),
        ("0.00", "0.00"),
        ("100000000", "100000000"),
        ("0.000000001", "0.000000001"),
        ("1e3", "1000"),
        (
            "-12345678901234567890.123456789",
            "-12345678901234567890.123456789",
        ),
        ("Infinity", "Infinity"),
        ("nan", "NaN"),
    ] {
        assert_eq!(roundtrip(input), out);
    }
}

#[test]
fn numeric_refuses_garbage() {
    let mut out = BytesMut::new();
    assert!(matches!(
        numeric_to_binary("12a", &mut out),
        Err(CodecError::Invalid { .. })
    ));
    assert!(numeric_from_binary(&[0, 1, 0, 0]).is_err());
    assert!(numeric_from_binary(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err()); // digit missing
    assert!(numeric_from_binary(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err()); // 10000
    assert!(numeric_from_binary(&[0, 0, 0, 0, 0x12, 0x34, 0, 0]).is_err()); // sign
    assert!(numeric_from_binary(&[0xFF, 0xFF, 0, 0, 0, 0, 0, 0]).is_err()); // ndigits < 0
}

#[test]
fn malformed_buffers_are_errors_not_panics() {
    for ty in [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::UUID,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::INTERVAL,
        Type::INT4_ARRAY,
        Type::TEXT_ARRAY,
    ] {
        for raw in [&[][..], &[1, 2, 3][..], &[0xFF; 40][..]] {
            assert!(decode(&ty, raw).is_err(), "{ty} {raw:?}");
        }
    }
    assert!(decode(&Type::TEXT, &[0xFF]).is_err());
    assert!(decode(&Type::JSONB, &[2, b'{', b'}']).is_err());
    assert!(decode(&Type::JSONB, &[]).is_err());
    assert!(decode(&Type::TIME, &(USECS_PER_DAY + 1).to_be_bytes()).is_err());
    assert!(decode(&Type::INET, &[0; 8]).is_err());
    for ty in [
        Type::INET,
        Type::MACADDR,
        Type::TIMETZ,
        Type::MONEY,
        Type::VARBIT,
        Type::POINT,
        Type::PATH,
        Type::POLYGON,
        Type::TS_VECTOR,
        Type::TSQUERY,
        Type::INT4_RANGE,
        Type::TSTZ_RANGE,
        Type::INT4MULTI_RANGE,
    ] {
        for raw in [&[1, 2, 3][..], &[0xFF; 40][..]] {
            assert!(decode(&ty, raw).is_err(), "{ty} {raw:?}");
        }
    }
}

#[test]
fn arrays_roundtrip_without_a_server() {
    let v = Value::Array(vec![Value::Int(1), Value::Null, Value::Int(-3)]);
    let mut out = BytesMut::new();
    assert!(matches!(
        encode(&v, &Type::INT4_ARRAY, &mut out),
        Ok(IsNull::No)
    ));
    assert_eq!(decode(&Type::INT4_ARRAY, &out), Ok(v));
    let empty = Value::Array(vec![]);
    let mut out = BytesMut::new();
    let _ = encode(&empty, &Type::TEXT_ARRAY, &mut out);
    assert_eq!(out.to_vec(), vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]);
    assert_eq!(decode(&Type::TEXT_ARRAY, &out), Ok(empty));
    // Multi-dimensional: arrays of arrays, rectangular.
    let grid = Value::Array(vec![
        Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)]),
        Value::Array(vec![Value::Int(4), Value::Int(5), Value::Int(6)]),
    ]);
    let mut out = BytesMut::new();
    assert!(encode(&grid, &Type::INT4_ARRAY, &mut out).is_ok());
    assert_eq!(&out[..12], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 23]);
    assert_eq!(decode(&Type::INT4_ARRAY, &out), Ok(grid));
    let ragged = Value::Array(vec![
        Value::Array(vec![Value::Int(1)]),
        Value::Array(vec![Value::Int(1), Value::Int(2)]),
    ]);
    assert!(matches!(
        encode(&ragged, &Type::INT4_ARRAY, &mut BytesMut::new()),
        Err(CodecError::Ragged { .. })
    ));
    let mixed = Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(1)])]);
    assert!(matches!(
        encode(&mixed, &Type::INT4_ARRAY, &mut BytesMut::new()),
        Err(CodecError::Ragged { .. })
    ));
    let nested_empty = Value::Array(vec![Value::Array(vec![])]);
    let mut out = BytesMut::new();
    assert!(encode(&nested_empty, &Type::INT4_ARRAY, &mut out).is_ok());
    assert_eq!(decode(&Type::INT4_ARRAY, &out), Ok(Value::Array(vec![])));
}

#[test]
fn mismatches_are_clear() {
    let err = encode(&Value::Text("x".into()), &Type::INT4, &mut BytesMut::new());
    assert_eq!(
        err.err().map(|e| e.to_string()),
        Some("a Text value cannot be sent as type int4".to_string())
    );
    let err = encode(&Value::Int(70_000), &Type::INT2, &mut BytesMut::new());
    assert_eq!(
        err.err().map(|e| e.to_string()),
        Some("\"70000\" is not a valid int2: out of range".to_string())
    );
    let err = encode(
        &Value::Text("nope".into()),
        &Type::UUID,
        &mut BytesMut::new(),
    );
    assert!(err.is_err());
    assert!(encode(&Value::Int(i64::MAX), &Type::FLOAT8, &mut BytesMut::new()).is_err());
    assert!(encode(&Value::Float(1e300), &Type::FLOAT4, &mut BytesMut::new()).is_err());
    assert!(matches!(
        encode(&Value::Null, &Type::INT4, &mut BytesMut::new()),
        Ok(IsNull::Yes)
    ));
}

proptest! {
    #[test]
    fn numeric_roundtrips(int in "[0-9]{0,40}", frac in "[0-9]{0,40}", neg: bool, point: bool) {
        prop_assume!(!int.is_empty() || (point && !frac.is_empty()));
        let text = format!(
            "{}{}{}{}",
            if neg { "-" } else { "" },
            int,
            if point { "." } else { "" },
            if point { frac.as_str() } else { "" },
        );
        let Some(norm) = normalise_numeric(&text) else {
            return Err(TestCaseError::fail(format!("{text} did not normalise")));
        };
        let bytes = enc(&norm);
        prop_assert_eq!(numeric_from_binary(&bytes), Ok(norm.clone()));
        // Canonical binary: encoding the decoded text gives the same bytes.
        prop_assert_eq!(enc(&roundtrip(&norm)), bytes);
    }

    #[test]
    fn numeric_decoder_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = numeric_from_binary(&raw);
    }
}
