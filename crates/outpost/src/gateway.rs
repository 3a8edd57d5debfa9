//! `outpost gateway`: serving the sync protocol to nodes over HTTP
//! (`outpost_gateway`), and `outpost gateway token create`, which prints
//! a token signed with the gateway's secret for setups without an auth
//! provider of their own.

use anyhow::Context as _;
use clap::Subcommand;

use crate::write_stdout;

/// `outpost gateway …` subcommands.
#[derive(Debug, Subcommand)]
pub enum GatewayAction {
    /// Tokens for nodes.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

/// `outpost gateway token …`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Print a token for principal `--sub`, valid for `--expires`
    /// (90s, 15m, 12h, 30d), signed with OUTPOST_GATEWAY_SECRET (HS256; or
    /// the first secret of OUTPOST_GATEWAY_SECRET_FILE), or with the private
    /// key `--key` (Ed25519: EdDSA, P-256/P-384: ES256/ES384, RSA: RS256)
    /// for a gateway given its public key or a JWKS.
    Create {
        /// The principal (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// How long the token is valid.
        #[arg(long)]
        expires: String,
        /// The audience (`aud`), when the gateway checks one
        /// (OUTPOST_GATEWAY_AUDIENCE).
        #[arg(long)]
        aud: Option<String>,
        /// A private key (PEM) to sign with instead of the secret.
        #[arg(long, value_name = "FILE")]
        key: Option<std::path::PathBuf>,
        /// The `kid` to put in the header (the key's id in the gateway's
        /// JWKS), with `--key`.
        #[arg(long, requires = "key")]
        kid: Option<String>,
    },
}

/// Runs the gateway, or a token subcommand.
pub async fn run(
    lookup: impl Fn(&str) -> Option<String>,
    action: Option<GatewayAction>,
    host: std::net::IpAddr,
    port: u16,
) -> anyhow::Result<()> {
    let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
    if let Some(GatewayAction::Token {
        action:
            TokenAction::Create {
                sub,
                expires,
                aud,
                key,
                kid,
            },
    }) = action
    {
        if sub.trim().is_empty() {
            anyhow::bail!("--sub is empty: a token names its principal");
        }
        let ttl = outpost_gateway::auth::parse_duration(&expires).map_err(anyhow::Error::msg)?;
        let keys = match key {
            Some(path) => outpost_gateway::auth::Keys::signing_pem(&path, kid.as_deref())
                .map_err(anyhow::Error::msg)?,
            None => {
                let secret = get("OUTPOST_GATEWAY_SECRET");
                let file =
                    get("OUTPOST_GATEWAY_SECRET_FILE").map(|f| std::path::PathBuf::from(f.trim()));
                anyhow::ensure!(
                    secret.is_some() || file.is_some(),
                    "neither OUTPOST_GATEWAY_SECRET nor OUTPOST_GATEWAY_SECRET_FILE is set: tokens are signed with the secret (or with --key FILE)"
                );
                // The variable's secret, else the file's first.
                outpost_gateway::auth::Keys::load(&outpost_gateway::auth::KeySources {
                    secret: secret.as_deref(),
                    secret_file: file.as_deref(),
                    ..Default::default()
                })
                .map_err(anyhow::Error::msg)?
            }
        };
        let token = keys
            .create(&sub, ttl, aud.as_deref())
            .map_err(anyhow::Error::msg)?;
        write_stdout(&token);
        return Ok(());
    }
    let options = outpost_gateway::Options::from_lookup(get).map_err(anyhow::Error::msg)?;
    // The same keys as the gateway's (a JWKS URL is fetched by `start`).
    let keys = options.keys.clone();
    let url = options.database_url.clone();
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let gateway = outpost_gateway::Gateway::start(options)
        .await
        .map_err(|e| anyhow::anyhow!(url.scrub(&e.to_string())))?;
    tracing::info!(
        keys = keys.len(),
        algorithms = %keys.algorithms(),
        jwks = ?keys.jwks_source(),
        "token keys loaded"
    );
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, pool = gateway.pool_size(), "gateway listening");
    eprintln!("outpost gateway listening on {scheme}://{addr}");
    outpost_gateway::serve(listener, gateway, crate::commands::shutdown_signal()).await?;
    Ok(())
}
