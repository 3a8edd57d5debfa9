//! Unit tests of configuration: defaults and timeouts, the variables read
//! and bad values refused by name, `sslmode`/`sslrootcert`, passwords
//! redacted in every libpq form (with a property test), and a gateway node's
//! settings.

use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn timeouts_default_and_are_configurable_in_milliseconds() {
    let c = config(&[]).expect("defaults");
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.timeouts.statement, Duration::from_secs(30));
    assert_eq!(c.timeouts.check_interval, Duration::from_secs(2));
    let c = config(&[
        ("OUTPOST_STATEMENT_TIMEOUT", "1500"),
        ("OUTPOST_LOCK_TIMEOUT", " 250 "),
        ("OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT", "4000"),
        ("OUTPOST_REQUEST_TIMEOUT", "7000"),
        ("OUTPOST_CHECK_INTERVAL", "500"),
        ("OUTPOST_CHECK_TIMEOUT", "800"),
    ])
    .expect("valid");
    assert_eq!(
        c.timeouts,
        Timeouts {
            statement: Duration::from_millis(1500),
            lock: Duration::from_millis(250),
            idle_in_transaction: Duration::from_millis(4000),
            request: Duration::from_millis(7000),
            check_interval: Duration::from_millis(500),
            check_timeout: Duration::from_millis(800),
        }
    );
    for bad in ["0", "-5", "1.5", "soon", "86400001"] {
        let e = config(&[("OUTPOST_CHECK_TIMEOUT", bad)]).expect_err(bad);
        assert!(
            e.to_string()
                .starts_with(&format!("OUTPOST_CHECK_TIMEOUT={bad:?} is invalid")),
            "{e}"
        );
    }
}

#[test]
fn defaults_follow_the_seed() {
    let c = config(&[]).expect("defaults");
    assert!(c.enable_local_database && c.enable_offline_mode);
    assert_eq!(c.local_database_path, PathBuf::from("./local.db"));
    assert_eq!(c.sync_interval, Some(Duration::from_millis(300_000)));
    assert_eq!(c.tables, TableSelection::default());
    assert!(c.database_url.is_none());
}

#[test]
fn seed_values_are_read() {
    let c = config(&[
        ("ENABLE_LOCAL_DATABASE", "TRUE"),
        (
            "LOCAL_DATABASE_URL",
            "file:./data/dev.db?connection_limit=1",
        ),
        ("LOCAL_DATABASE_SYNC_INTERVAL", "1500"),
        ("ENABLE_OFFLINE_MODE", "off"),
        ("DATABASE_URL", "postgresql://app:s3cret@db.local:5432/app"),
        ("OUTPOST_TABLES", "User, Post"),
        ("OUTPOST_EXCLUDE_TABLES", "Audit"),
    ])
    .expect("valid");
    assert_eq!(c.local_database_path, PathBuf::from("./data/dev.db"));
    assert_eq!(c.sync_interval, Some(Duration::from_millis(1500)));
    assert!(!c.enable_offline_mode);
    assert_eq!(
        c.tables.include,
        Some(vec!["User".to_string(), "Post".to_string()])
    );
    assert_eq!(c.tables.exclude, vec!["_prisma_migrations", "Audit"]);
    let url = c.database_url.expect("url");
    assert_eq!(url.to_string(), "postgresql://app:***@db.local:5432/app");
    assert!(!format!("{url:?}").contains("s3cret"));
    assert_eq!(
        config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "0")]).map(|c| c.sync_interval),
        Ok(None)
    );
}

#[test]
fn bad_values_name_variable_and_value() {
    let e = config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "5 minutes")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "LOCAL_DATABASE_SYNC_INTERVAL=\"5 minutes\" is invalid: expected a whole number of milliseconds"
    );
    let e = config(&[("ENABLE_OFFLINE_MODE", "maybe")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ENABLE_OFFLINE_MODE=\"maybe\" is invalid: expected true or false"
    );
    let e = config(&[("LOCAL_DATABASE_URL", "postgres://x/y")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("LOCAL_DATABASE_URL=\"postgres://x/y\"")
    );
    let e = config(&[("LOCAL_DATABASE_URL", "file:")]).unwrap_err();
    assert!(e.to_string().contains("no file path"));
    let e = config(&[("DATABASE_URL", "mysql://root:hunter2@h/db")]).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("DATABASE_URL="), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let e = config(&[("DATABASE_URL", "postgres://u:pw@[bad/db")]).unwrap_err();
    assert!(!e.to_string().contains("pw@"), "{e}");
    let e = config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "-1")]).unwrap_err();
    assert!(
        e.to_string()
            .contains("LOCAL_DATABASE_SYNC_INTERVAL=\"-1\"")
    );
}

#[test]
fn sslmode_and_sslrootcert_are_read_and_kept_from_the_driver() {
    let u = DatabaseUrl::parse("postgres://u:p@h/db").expect("plain");
    assert_eq!(u.tls(), &TlsParams::default());
    assert_eq!(u.driver_conninfo(), "postgres://u:p@h/db");
    let u = DatabaseUrl::parse(
        "postgres://u:p@h:5433/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
    )
    .expect("url");
    assert_eq!(u.tls().mode, SslMode::VerifyFull);
    assert_eq!(u.tls().root_cert.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(
        u.driver_conninfo(),
        "postgres://u:p@h:5433/db?application_name=x&sslmode=require"
    );
    let u =
        DatabaseUrl::parse("host=h user=u password='a b\\'c' sslmode=require sslrootcert=/ca.pem")
            .expect("pairs");
    assert_eq!(
        u.tls().mode,
        SslMode::VerifyCa,
        "require + root cert = verify-ca"
    );
    assert_eq!(
        u.driver_conninfo(),
        "host='h' user='u' password='a b\\'c' sslmode=require"
    );
    assert_eq!(
        DatabaseUrl::parse("host=h sslmode=disable").map(|u| u.tls().mode),
        Ok(SslMode::Disable)
    );
    let e = DatabaseUrl::parse("host=h sslmode=verify").unwrap_err();
    assert!(e.contains("not one of disable, prefer"), "{e}");
    let e = DatabaseUrl::parse("postgres://h/db?sslcert=/c.pem").unwrap_err();
    assert!(e.contains("sslcert is not supported"), "{e}");
    assert!(DatabaseUrl::parse("host=h password='unterminated").is_err());
    assert!(DatabaseUrl::parse("just words").is_err());
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(redact("postgres://u:p@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        redact("host=h password=secret user=u"),
        "host=h password=*** user=u"
    );
    assert_eq!(
        redact("postgres://h/db?user=u&password=secret&sslmode=require"),
        "postgres://h/db?user=u&password=***&sslmode=require"
    );
    assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
}

#[test]
fn every_libpq_password_form_is_redacted() {
    let cases = [
        (
            "host=127.0.0.1 port=5498 user=postgres password = S3cretPW! dbname=app",
            "host=127.0.0.1 port=5498 user=postgres password = *** dbname=app",
        ),
        ("host=h password= S3cret", "host=h password= ***"),
        (
            "host=h PASSWORD=S3cret user=u",
            "host=h PASSWORD=*** user=u",
        ),
        (
            "host=h password='a b\\'c' user=u",
            "host=h password=*** user=u",
        ),
        ("host=h password='unterminated rest", "host=h password=***"),
        (
            "host=h password S3cret user=u",
            "host=h password *** user=u",
        ),
        ("sslpassword=S3cret host=h", "sslpassword=*** host=h"),
        (
            "postgres://u:p%40ss/w@h1:5432,h2:5433/db",
            "postgres://u:***@h1:5432,h2:5433/db",
        ),
        (
            "postgresql://h/db?user=u&PASSWORD=S3cret",
            "postgresql://h/db?user=u&PASSWORD=***",
        ),
        (
            "postgres://h/db?pass%77ord=S3cret&x=1",
            "postgres://h/db?pass%77ord=***&x=1",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(redact(raw), want, "{raw}");
    }
}

#[test]
fn scrub_hides_the_password_in_any_text() {
    let u = DatabaseUrl::parse("host=h user=u password = 'S3 cret'").expect("pairs");
    assert_eq!(
        u.scrub("password authentication failed: S3 cret"),
        "password authentication failed: ***"
    );
    let u = DatabaseUrl::parse("postgres://u:S3%2Fcret@h/db").expect("url");
    assert_eq!(u.scrub("x S3/cret y S3%2Fcret"), "x *** y ***");
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    /// A password with a prefix no other part of the string has, so a
    /// match is the password and nothing else.
    fn password() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#%&()*+,./:;<>?@^_{|}~ '\\=-]{1,12}".prop_map(|s| format!("Zq{s}"))
    }

    fn quote(p: &str) -> String {
        format!("'{}'", p.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    /// For a query value (`+` is a space there).
    fn encode(p: &str) -> String {
        url::form_urlencoded::byte_serialize(p.as_bytes()).collect()
    }

    /// For a URL's userinfo: every byte but letters and digits escaped.
    fn encode_userinfo(p: &str) -> String {
        p.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// Connection strings in every form libpq takes, some malformed.
    fn conninfo() -> impl Strategy<Value = (String, String)> {
        (
            password(),
            0usize..8,
            prop::sample::select(vec!["password", "PASSWORD", "Password"]),
            prop::sample::select(vec!["=", " = ", "= ", " ="]),
            prop::sample::select(vec!["", " junk", " 'open", " =", " host"]),
        )
            .prop_map(|(pw, form, key, eq, tail)| {
                let s = match form {
                    0 => format!("host=127.0.0.1 user=app {key}{eq}{} dbname=app", quote(&pw)),
                    1 if !pw.contains([' ', '\'', '\\']) => {
                        format!("host=h {key}{eq}{pw} port=5432")
                    }
                    1 => format!("{key}{eq}{} host=h", quote(&pw)),
                    2 => format!(
                        "postgres://app:{}@db.example:5432/app",
                        encode_userinfo(&pw)
                    ),
                    3 => format!(
                        "postgresql://app:{}@h1:5432,h2:5433/app",
                        encode_userinfo(&pw)
                    ),
                    4 => format!(
                        "postgres://h/app?user=u&{key}={}&sslmode=disable",
                        encode(&pw)
                    ),
                    5 => format!("host=h {key} {}", quote(&pw)),
                    6 => format!("mysql://root:{}@h/db", encode_userinfo(&pw)),
                    _ => format!("user=u {key}{eq}{}", quote(&pw)),
                };
                (format!("{s}{tail}"), pw)
            })
    }

    fn leaks(text: &str, pw: &str) -> bool {
        text.contains(pw)
            || text.contains(&encode(pw))
            || text.contains(&encode_userinfo(pw))
            || text.contains(&quote(pw))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_form_and_no_error_shows_the_password((raw, pw) in conninfo()) {
            prop_assert!(!leaks(&redact(&raw), &pw), "redact({raw:?}) = {:?}", redact(&raw));
            match config(&[("DATABASE_URL", raw.as_str())]) {
                Ok(c) => {
                    let url = c.database_url.clone().expect("set");
                    for shown in [url.to_string(), format!("{url:?}"), format!("{c:?}"), url.redacted()] {
                        prop_assert!(!leaks(&shown, &pw), "{raw:?} shown as {shown:?}");
                    }
                    let echoed = format!("connection refused for {raw} ({pw})");
                    prop_assert!(!leaks(&url.scrub(&echoed), &pw), "scrub kept it: {raw:?}");
                }
                Err(e) => {
                    for shown in [e.to_string(), format!("{e:?}")] {
                        prop_assert!(!leaks(&shown, &pw), "{raw:?} refused as {shown:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_gateway_node_has_a_url_and_a_token_and_no_database_url() {
    let c = config(&[
        ("OUTPOST_GATEWAY_URL", "https://gw.example.com/"),
        ("OUTPOST_GATEWAY_TOKEN", "abc.def.ghi"),
    ])
    .expect("valid");
    let g = c.gateway.as_ref().expect("a gateway");
    assert_eq!(g.url, "https://gw.example.com");
    assert_eq!(g.token().as_deref(), Ok("abc.def.ghi"));
    assert!(
        !format!("{c:?}").contains("abc.def.ghi"),
        "the token is never shown"
    );
    let missing = c.require_database_url("remote mode").expect_err("no url");
    assert!(
        missing.to_string().contains("OUTPOST_GATEWAY_URL"),
        "{missing}"
    );

    let both = config(&[
        ("OUTPOST_GATEWAY_URL", "http://gw:4100"),
        ("OUTPOST_GATEWAY_TOKEN", "t"),
        ("DATABASE_URL", "postgres://u:secret@h/db"),
    ])
    .expect_err("both");
    assert!(both.to_string().contains("not both"), "{both}");
    let no_token = config(&[("OUTPOST_GATEWAY_URL", "http://gw:4100")]).expect_err("no token");
    assert!(
        no_token.to_string().contains("OUTPOST_GATEWAY_TOKEN"),
        "{no_token}"
    );
    let creds = config(&[
        ("OUTPOST_GATEWAY_URL", "http://u:secret@gw:4100"),
        ("OUTPOST_GATEWAY_TOKEN", "t"),
    ])
    .expect_err("credentials in the URL");
    assert!(!creds.to_string().contains("secret"), "{creds}");
    assert!(
        config(&[
            ("OUTPOST_GATEWAY_URL", "ftp://gw"),
            ("OUTPOST_GATEWAY_TOKEN", "t")
        ])
        .is_err()
    );
    assert!(
        config(&[
            ("OUTPOST_GATEWAY_URL", "http://gw"),
            ("OUTPOST_GATEWAY_TOKEN", "a b")
        ])
        .is_err()
    );
}
