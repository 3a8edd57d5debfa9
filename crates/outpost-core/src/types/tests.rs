//! Unit and property tests of the value mapping: numerics, timestamps,
//! intervals, the JSON forms per type, and the date and time texts against
//! their binary counts.

use super::datetime::{PG_EPOCH_DAYS, civil_from_days};
use super::*;
use proptest::prelude::*;

fn ty(s: ScalarType) -> ColumnType {
    ColumnType::scalar(s, "t")
}

#[test]
fn numerics_normalise() {
    assert_eq!(normalise_numeric("1.50").as_deref(), Some("1.50"));
    assert_eq!(normalise_numeric("+001.5").as_deref(), Some("1.5"));
    assert_eq!(normalise_numeric("-0.00").as_deref(), Some("0.00"));
    assert_eq!(normalise_numeric("1.5e3").as_deref(), Some("1500"));
    assert_eq!(normalise_numeric("15e-3").as_deref(), Some("0.015"));
    assert_eq!(normalise_numeric(".5").as_deref(), Some("0.5"));
    assert_eq!(normalise_numeric("nan").as_deref(), Some("NaN"));
    assert_eq!(normalise_numeric("1.2.3"), None);
    assert_eq!(normalise_numeric("abc"), None);
    assert_eq!(normalise_numeric(""), None);
    assert_eq!(normalise_numeric("-"), None);
}

#[test]
fn timestamps() {
    assert_eq!(format_timestamptz(0), "2000-01-01T00:00:00.000000Z");
    assert_eq!(parse_timestamptz("2000-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(
        parse_timestamptz("1999-12-31 23:00:00.5-01:00"),
        Some(500_000)
    );
    assert_eq!(format_timestamp(-1), "1999-12-31T23:59:59.999999");
    for us in [TIMESTAMP_TEXT_RANGE.start, TIMESTAMP_TEXT_RANGE.end - 1] {
        assert_eq!(parse_timestamptz(&format_timestamptz(us)), Some(us));
        assert_eq!(parse_timestamp(&format_timestamp(us)), Some(us));
    }
    assert_eq!(
        format_timestamptz(TIMESTAMP_TEXT_RANGE.start),
        "-4713-11-24T00:00:00.000000Z"
    );
    assert_eq!(format_date(-730_485), "0000-01-01");
    assert_eq!(
        parse_date("-0044-03-15").map(format_date).as_deref(),
        Some("-0044-03-15")
    );
    assert_eq!(format_time(USECS_PER_DAY), "24:00:00.000000");
    assert_eq!(parse_time("24:00:00"), Some(USECS_PER_DAY));
    assert_eq!(parse_time("24:00:01"), None);
    assert_eq!(parse_timestamptz("2024-01-01"), None);
    assert_eq!(parse_time("12:00:00.0000005"), Some(43_200_000_001));
}

#[test]
fn intervals() {
    let i = Interval {
        months: -14,
        days: 3,
        micros: -3_723_000_005,
    };
    assert_eq!(i.to_string(), "P-14M3DT-3723.000005S");
    assert_eq!(parse_interval(&i.to_string()), Some(i));
}

#[test]
fn json_forms() {
    let int8 = ty(ScalarType::Int8);
    assert_eq!(
        Value::Int(i64::MAX).to_json(&int8),
        Json::String(i64::MAX.to_string())
    );
    assert_eq!(Value::Int(42).to_json(&int8), Json::from(42));
    assert_eq!(
        Value::from_json(&Json::String(i64::MIN.to_string()), &int8, None),
        Ok(Value::Int(i64::MIN))
    );
    let int2 = ty(ScalarType::Int2);
    assert!(Value::from_json(&Json::from(40_000), &int2, None).is_err());
    let f = ty(ScalarType::Float8);
    assert_eq!(
        Value::Float(f64::NAN).to_json(&f),
        Json::String("NaN".into())
    );
    assert_eq!(
        Value::from_json(&Json::String("-Infinity".into()), &f, None),
        Ok(Value::Float(f64::NEG_INFINITY))
    );
    let u = ty(ScalarType::Uuid);
    assert_eq!(
        Value::from_json(
            &Json::String("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".into()),
            &u,
            None
        ),
        Ok(Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()))
    );
    let e = ty(ScalarType::Enum("Role".into()));
    let labels = vec!["USER".to_string(), "ADMIN".to_string()];
    assert!(Value::from_json(&Json::String("ROOT".into()), &e, Some(&labels)).is_err());
    let b = ty(ScalarType::Bytea);
    assert_eq!(
        Value::Bytes(vec![0, 255]).to_json(&b),
        Json::String("AP8=".into())
    );
    let arr = ColumnType {
        scalar: ScalarType::Text,
        array: true,
        pg_name: "text[]".into(),
        domain: None,
    };
    let v = Value::from_json(&serde_json::json!(["a", null]), &arr, None);
    assert_eq!(
        v,
        Ok(Value::Array(vec![Value::Text("a".into()), Value::Null]))
    );
    let err = Value::from_json(&serde_json::json!("x"), &ty(ScalarType::Bool), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected true or false, got a string (type t)"
    );
}

proptest! {
    #[test]
    fn timestamp_text_roundtrips(us in TIMESTAMP_TEXT_RANGE) {
        prop_assert_eq!(parse_timestamptz(&format_timestamptz(us)), Some(us));
        prop_assert_eq!(parse_timestamp(&format_timestamp(us)), Some(us));
    }

    #[test]
    fn timestamp_text_order_is_time_order(a in -63_000_000_000_000_000i64..250_000_000_000_000_000i64,
                                          b in -63_000_000_000_000_000i64..250_000_000_000_000_000i64) {
        // Years 0000..=9999.
        prop_assert_eq!(a.cmp(&b), format_timestamptz(a).cmp(&format_timestamptz(b)));
    }

    #[test]
    fn timestamp_text_is_the_padded_fields(us in TIMESTAMP_TEXT_RANGE) {
        // The digit-by-digit writer against the obvious `format!`.
        let (days, tod) = (us.div_euclid(USECS_PER_DAY), us.rem_euclid(USECS_PER_DAY));
        let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
        let date = if (0..=9999).contains(&y) {
            format!("{y:04}-{m:02}-{d:02}")
        } else {
            format!("{y:+05}-{m:02}-{d:02}")
        };
        let time = format!(
            "{:02}:{:02}:{:02}.{:06}",
            tod / 3_600_000_000,
            tod / 60_000_000 % 60,
            tod / 1_000_000 % 60,
            tod % 1_000_000
        );
        prop_assert_eq!(format_timestamptz(us), format!("{date}T{time}Z"));
        prop_assert_eq!(format_timestamp(us), format!("{date}T{time}"));
        prop_assert_eq!(format_time(tod), time);
    }

    #[test]
    fn date_and_time_roundtrip(d in -2_451_545i32..2_147_483_494, t in 0i64..=USECS_PER_DAY) {
        prop_assert_eq!(parse_date(&format_date(d)), Some(d));
        prop_assert_eq!(parse_time(&format_time(t)), Some(t));
    }

    #[test]
    fn interval_roundtrips(months: i32, days: i32, micros: i64) {
        let i = Interval { months, days, micros };
        prop_assert_eq!(parse_interval(&i.to_string()), Some(i));
    }

    #[test]
    fn numeric_normalisation_is_idempotent(int in "[0-9]{1,30}", frac in "[0-9]{0,20}", neg: bool) {
        let s = format!("{}{}.{}", if neg { "-" } else { "" }, int, frac);
        let once = normalise_numeric(&s).unwrap_or_default();
        prop_assert_eq!(normalise_numeric(&once), Some(once.clone()));
    }
}
