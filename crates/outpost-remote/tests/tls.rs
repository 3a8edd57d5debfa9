//! TLS to PostgreSQL (`sslmode`, `sslrootcert`) against a throwaway cluster
//! of our own: first with `ssl=off`, then restarted with `ssl=on` and a
//! certificate issued here (rcgen) by a test CA for `localhost`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use outpost_core::config::DatabaseUrl;
use outpost_remote::RemoteError;
use outpost_remote::cluster::{Cluster, ClusterOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Connects with `url`; on success, whether the session is encrypted.
async fn encrypted(url: &str) -> Result<bool, RemoteError> {
    let url = DatabaseUrl::parse(url).expect("valid url");
    let client = outpost_remote::connect(&url, outpost_remote::CONNECT_TIMEOUT).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

async fn refused(url: &str) -> String {
    match encrypted(url).await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e.to_string(),
    }
}

/// A CA and a server certificate for `localhost` signed by it, written as
/// `ca.crt`, `server.crt`, `server.key` (0600, as PostgreSQL demands).
fn write_certificates(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "outpost test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf.signed_by(&leaf_key, &ca).expect("leaf certificate");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("ca.crt");
    std::fs::write(dir.join("server.crt"), leaf.pem()).expect("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_servers_with_and_without_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("pg");
    std::fs::create_dir(&base).expect("dir");
    write_certificates(&base);
    let ca = base.join("ca.crt").display().to_string();

    // ssl=off: require refuses with the reason; prefer and disable connect
    // in plaintext.
    let mut plain = Cluster::start(ClusterOptions::new(&base).setting("ssl", "off"))
        .expect("start the cluster");
    let port = plain.port();
    let at =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");
    let e = refused(&at("127.0.0.1", "sslmode=require")).await;
    assert!(e.contains("server does not support TLS"), "{e}");
    assert!(
        e.contains("ssl=off"),
        "the message says what to change: {e}"
    );
    assert_eq!(
        encrypted(&at("127.0.0.1", "sslmode=prefer")).await.ok(),
        Some(false)
    );
    assert_eq!(
        encrypted(&at("127.0.0.1", "sslmode=disable")).await.ok(),
        Some(false)
    );
    plain.stop().expect("stop");

    // ssl=on with our certificate.
    let tls = Cluster::start(
        ClusterOptions {
            remove_on_stop: true,
            ..ClusterOptions::new(&base)
        }
        .setting("ssl", "on")
        .setting(
            "ssl_cert_file",
            base.join("server.crt").display().to_string(),
        )
        .setting(
            "ssl_key_file",
            base.join("server.key").display().to_string(),
        ),
    )
    .expect("restart with ssl=on");
    let port = tls.port();
    let at =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");

    assert_eq!(
        encrypted(&at("127.0.0.1", "sslmode=require")).await.ok(),
        Some(true)
    );
    assert_eq!(
        encrypted(&at("127.0.0.1", "sslmode=prefer")).await.ok(),
        Some(true)
    );
    assert_eq!(
        encrypted(&at("127.0.0.1", "")).await.ok(),
        Some(true),
        "prefer is the default"
    );
    assert_eq!(
        encrypted(&at("127.0.0.1", "sslmode=disable")).await.ok(),
        Some(false)
    );

    // verify-full: the CA given, the host name on the certificate.
    let full = at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&full).await.ok(), Some(true));
    let pairs = format!(
        "host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert='{ca}'"
    );
    assert_eq!(encrypted(&pairs).await.ok(), Some(true), "key=value form");

    // verify-full without our CA: refused, saying how to fix it.
    let e = refused(&at("localhost", "sslmode=verify-full")).await;
    assert!(e.contains("not signed by a trusted CA"), "{e}");
    assert!(e.contains("sslrootcert="), "{e}");
    let e = refused(&at("localhost", "sslmode=verify-full&sslrootcert=system")).await;
    assert!(e.contains("not signed by a trusted CA"), "{e}");

    // verify-full to a name the certificate is not for; verify-ca accepts
    // it (the chain is what it checks), and so does require with a CA.
    let e = refused(&at(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(e.contains("not for this host name"), "{e}");
    assert_eq!(
        encrypted(&at(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        ))
        .await
        .ok(),
        Some(true)
    );
    assert_eq!(
        encrypted(&at(
            "127.0.0.1",
            &format!("sslmode=require&sslrootcert={ca}")
        ))
        .await
        .ok(),
        Some(true)
    );

    // A bad sslrootcert is named.
    let missing = dir.path().join("missing.crt").display().to_string();
    let e = refused(&at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={missing}"),
    ))
    .await;
    assert!(
        e.contains("sslrootcert=") && e.contains("cannot read"),
        "{e}"
    );
    let e = refused(&at(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            base.join("server.key").display()
        ),
    ))
    .await;
    assert!(e.contains("holds no certificate"), "{e}");

    // A password never appears in the error.
    let e = refused(&format!(
        "postgres://postgres:hunter2@localhost:{port}/postgres?sslmode=verify-full"
    ))
    .await;
    assert!(!e.contains("hunter2"), "{e}");
    drop(tls);
    assert!(!base.exists(), "the cluster removed its directory");
}
