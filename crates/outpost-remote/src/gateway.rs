//! The node's side of gateway topology: the sync protocol over HTTP to an
//! `outpost gateway` (docs/gateway.md, protocol in docs/protocol.md "Over
//! HTTP"), with the same operations as [`crate::connections::SyncConnection`]
//! so the engine runs either through [`crate::connections::SyncLink`].
//!
//! Every request carries the node's bearer token and the protocol version
//! ([`PROTOCOL_VERSION`]). Errors the gateway answers become
//! [`RemoteError::Gateway`] with the class the gateway read (a refused
//! token is [`ErrorClass::Auth`]: the node works offline and says why);
//! a gateway that cannot be reached is [`RemoteError::Unreachable`].

use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use futures_util::{Stream, StreamExt as _};
use outpost_core::config::GatewayTarget;
use outpost_core::schema::{Schema, Table};
use outpost_core::sync::{Cursor, PullBatch, PushOutcome, PushRow};
use outpost_core::types::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::{ErrorClass, RemoteError};
use crate::feed::{Claim, FeedPosition};

/// The protocol version this build speaks, sent as [`PROTOCOL_HEADER`].
pub const PROTOCOL_VERSION: u32 = 1;

/// The header naming the protocol version of a request.
pub const PROTOCOL_HEADER: &str = "outpost-protocol";

/// The bodies of the protocol's requests and answers (`gateway/body.rs`).
pub mod body;

/// The spelling of an [`ErrorClass`] in an error body.
pub fn class_name(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::Unreachable => "unreachable",
        ErrorClass::Auth => "auth",
        ErrorClass::Refused => "refused",
        ErrorClass::Invalid => "invalid",
    }
}

fn class_from(name: &str) -> ErrorClass {
    match name {
        "unreachable" => ErrorClass::Unreachable,
        "auth" => ErrorClass::Auth,
        "refused" => ErrorClass::Refused,
        _ => ErrorClass::Invalid,
    }
}

/// A node's client of one gateway. Cheap to clone (one HTTP connection
/// pool inside).
#[derive(Clone)]
pub struct GatewayConnection {
    http: reqwest::Client,
    target: GatewayTarget,
    /// The node's statement and lock timeouts, ms, sent with pulls and
    /// bootstraps (a push sends its own).
    limits_ms: Option<(u64, u64)>,
}

impl GatewayConnection {
    /// A client of `target`; connecting is bounded by `timeout`. Nothing
    /// is sent until the first request.
    pub fn new(
        target: &GatewayTarget,
        timeout: Duration,
    ) -> Result<GatewayConnection, RemoteError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .tcp_keepalive(Duration::from_secs(5));
        if let Some(ca) = &target.ca {
            // A private CA or a self-signed gateway: trusted besides the
            // usual roots. Read at every client, so a replaced file is
            // taken without a restart.
            let unusable = |why: String| RemoteError::Unreachable {
                server: target.url.clone(),
                reason: format!("OUTPOST_GATEWAY_CA {}: {why}", ca.display()),
                auth: false,
            };
            let pem = std::fs::read(ca).map_err(|e| unusable(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(e.to_string()))?;
            if certs.is_empty() {
                return Err(unusable("no PEM certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| RemoteError::Unreachable {
            server: target.url.clone(),
            reason: format!("building the HTTP client: {e}"),
            auth: false,
        })?;
        Ok(GatewayConnection {
            http,
            target: target.clone(),
            limits_ms: None,
        })
    }

    /// The same client, asking the gateway to run pulls and bootstraps
    /// with the node's statement and lock timeouts (as a direct node's
    /// session does).
    pub fn with_limits(mut self, statement: Duration, lock: Duration) -> GatewayConnection {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.limits_ms = Some((ms(statement), ms(lock)));
        self
    }

    /// The gateway's base URL.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    /// A request with the node's token, read now (a token file may have
    /// been renewed since the last request). Without a token the node
    /// cannot sync: an `Auth` error saying why, so it works offline.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, RemoteError> {
        let token = self
            .target
            .token()
            .map_err(|message| RemoteError::Gateway {
                action: "reading the node's token".into(),
                gateway: self.target.url.clone(),
                status: 401,
                code: "token_missing".into(),
                message,
                class: ErrorClass::Auth,
                sqlstate: None,
            })?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.target.url))
            .bearer_auth(token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION))
    }

    fn unreachable(&self, action: &str, e: reqwest::Error) -> RemoteError {
        // reqwest's message names the URL, never the token (a header). Its
        // causes say why (a refused connection, a certificate the node does
        // not trust): each is added once.
        let mut reason = format!("{action}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            source = cause.source();
        }
        RemoteError::Unreachable {
            server: self.target.url.clone(),
            reason,
            auth: false,
        }
    }

    async fn send(
        &self,
        action: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RemoteError> {
        let resp = req.send().await.map_err(|e| self.unreachable(action, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.unreachable(action, e))?;
        Err(self.error_from(action, status, &text))
    }

    fn error_from(&self, action: &str, status: u16, text: &str) -> RemoteError {
        match serde_json::from_str::<body::ErrorBody>(text) {
            Ok(b) => {
                // The model service's own error: the same as the replica's.
                if let Some(q) = b.error.query {
                    return RemoteError::Query(q);
                }
                let table = b.error.table.clone();
                let e = RemoteError::Gateway {
                    action: action.into(),
                    gateway: self.target.url.clone(),
                    status,
                    class: class_from(&b.error.class),
                    code: b.error.code,
                    message: b.error.message,
                    sqlstate: b.error.sqlstate.map(String::into_boxed_str),
                };
                // A table the server changed, or one the gateway's sync
                // rules do not serve (a replica set up before the rules):
                // the engine goes on without it, as it does in direct
                // topology, and says to run `outpost setup`.
                match table {
                    Some(table) if matches!(&e, RemoteError::Gateway { code, .. } if code == "table_changed" || code == "table_not_served") => {
                        RemoteError::TableChanged {
                            table,
                            source: Box::new(e),
                        }
                    }
                    _ => e,
                }
            }
            // Not the gateway's answer (a proxy's page): the path failed.
            Err(_) => RemoteError::Unreachable {
                server: self.target.url.clone(),
                reason: format!(
                    "{action}: HTTP {status} without the gateway's error body: {}",
                    text.chars().take(200).collect::<String>()
                ),
                auth: false,
            },
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        action: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, RemoteError> {
        let resp = self.send(action, req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.unreachable(action, e))?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Gateway {
            action: action.into(),
            gateway: self.target.url.clone(),
            status: 200,
            code: "bad_answer".into(),
            message: format!("the answer does not parse: {e}"),
            class: ErrorClass::Invalid,
            sqlstate: None,
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        action: &str,
        path: &str,
        body: &B,
    ) -> Result<T, RemoteError> {
        self.json(
            action,
            self.request(reqwest::Method::POST, path)?.json(body),
        )
        .await
    }

    /// `GET /v1/probe`: tracking version and retention mark (also the
    /// monitor's probe).
    pub async fn probe(&self) -> Result<(Option<i32>, Option<Cursor>), RemoteError> {
        let p: body::Probe = self
            .json(
                "probing the gateway",
                self.request(reqwest::Method::GET, "/v1/probe")?,
            )
            .await?;
        Ok((p.version, p.pruned_through))
    }

    /// The tracking schema's version, through [`GatewayConnection::probe`].
    pub async fn installed_version(&self) -> Result<Option<i32>, RemoteError> {
        Ok(self.probe().await?.0)
    }

    /// `GET /v1/schema`: the schema the gateway syncs (what `outpost setup`
    /// lays a replica out from).
    pub async fn schema(&self) -> Result<Schema, RemoteError> {
        self.json(
            "reading the schema",
            self.request(reqwest::Method::GET, "/v1/schema")?,
        )
        .await
    }

    /// `POST /v1/register`.
    pub async fn register_node(&self, node: Uuid, name: &str) -> Result<i64, RemoteError> {
        let r: body::Registered = self
            .post(
                "registering the node",
                "/v1/register",
                &body::Register {
                    node,
                    name: name.into(),
                },
            )
            .await?;
        Ok(r.applied_local_seq)
    }

    /// `POST /v1/claim`.
    pub async fn claim_incarnation(
        &self,
        node: Uuid,
        current: Uuid,
        known: &[Uuid],
    ) -> Result<Claim, RemoteError> {
        let c: body::Claimed = self
            .post(
                "claiming the incarnation",
                "/v1/claim",
                &body::ClaimRequest {
                    node,
                    current,
                    known: known.to_vec(),
                },
            )
            .await?;
        Ok(match c.diverged {
            None => Claim::Claimed,
            Some(server) => Claim::Diverged { server },
        })
    }

    /// `POST /v1/feed_position`.
    pub async fn feed_position(&self, cursor: Cursor) -> Result<FeedPosition, RemoteError> {
        let p: body::Position = self
            .post(
                "reading the feed position",
                "/v1/feed_position",
                &body::AtCursor { node: None, cursor },
            )
            .await?;
        Ok(FeedPosition {
            pruned_through: p.pruned_through,
            must_rebootstrap: p.must_rebootstrap,
        })
    }

    /// `POST /v1/record_cursor`.
    pub async fn record_cursor(&self, node: Uuid, cursor: Cursor) -> Result<(), RemoteError> {
        let _: serde_json::Value = self
            .post(
                "recording the cursor",
                "/v1/record_cursor",
                &body::AtCursor {
                    node: Some(node),
                    cursor,
                },
            )
            .await?;
        Ok(())
    }

    /// `GET /v1/horizon_age`.
    pub async fn horizon_age(&self) -> Result<Option<Duration>, RemoteError> {
        let h: body::HorizonAge = self
            .json(
                "reading the pull horizon",
                self.request(reqwest::Method::GET, "/v1/horizon_age")?,
            )
            .await?;
        Ok(h.ms.map(Duration::from_millis))
    }

    /// `POST /v1/prune`.
    pub async fn prune(&self, retention: Duration) -> Result<u64, RemoteError> {
        let p: body::Pruned = self
            .post(
                "pruning the change log",
                "/v1/prune",
                &body::Prune {
                    retention_ms: u64::try_from(retention.as_millis()).unwrap_or(u64::MAX),
                },
            )
            .await?;
        Ok(p.deleted)
    }

    /// `POST /v1/push`.
    pub async fn push(
        &self,
        schema: &Schema,
        node: Uuid,
        cursor: Cursor,
        rows: &[PushRow],
        limits: (Duration, Duration),
    ) -> Result<Vec<PushOutcome>, RemoteError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let p: body::Pushed = self
            .post(
                "pushing a batch",
                "/v1/push",
                &body::Push {
                    schema_hash: schema.hash(),
                    table_hashes: rows
                        .iter()
                        .map(|r| r.table.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .filter_map(|t| schema.table(t))
                        .map(|t| (t.name.clone(), t.shape_hash()))
                        .collect(),
                    node,
                    cursor,
                    rows: rows.to_vec(),
                    limits_ms: (ms(limits.0), ms(limits.1)),
                    tags: true,
                },
            )
            .await?;
        if p.outcomes.len() != rows.len() {
            return Err(self.bad(
                "pushing a batch",
                format!("{} outcomes for {} rows", p.outcomes.len(), rows.len()),
            ));
        }
        Ok(p.outcomes)
    }

    /// `POST /v1/query`: a model-service request in remote mode, run on the
    /// server by the gateway. A write that may have been applied without
    /// its answer arriving (the request left, then the path failed, or the
    /// gateway lost its commit's answer) is
    /// [`WriteError::CommitLost`](crate::connections::WriteError::CommitLost); one that
    /// never reached the gateway, or that the server refused, is
    /// [`WriteError::NotApplied`](crate::connections::WriteError::NotApplied).
    pub async fn query(
        &self,
        q: &body::Query,
    ) -> Result<body::Queried, crate::connections::WriteError> {
        use crate::connections::WriteError;
        let action = "running a request on the server through the gateway";
        let req = self
            .request(reqwest::Method::POST, "/v1/query")
            .map_err(WriteError::NotApplied)?
            .json(q);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_builder() => {
                return Err(WriteError::NotApplied(self.unreachable(action, e)));
            }
            Err(e) => return Err(WriteError::CommitLost(self.unreachable(action, e))),
        };
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| WriteError::CommitLost(self.unreachable(action, e)))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                WriteError::CommitLost(self.bad(action, format!("the answer does not parse: {e}")))
            });
        }
        let e = self.error_from(action, status, &String::from_utf8_lossy(&bytes));
        Err(match &e {
            RemoteError::Gateway { code, .. } if code == "outcome_unknown" => {
                WriteError::CommitLost(e)
            }
            _ => WriteError::NotApplied(e),
        })
    }

    /// `POST /v1/pull`.
    pub async fn pull(
        &self,
        schema: &Schema,
        cursor: Cursor,
        limit: i64,
        tables: Option<&[String]>,
    ) -> Result<PullBatch, RemoteError> {
        self.post(
            "pulling a batch",
            "/v1/pull",
            &body::Pull {
                schema_hash: schema.hash(),
                table_hashes: schema.table_hashes(),
                cursor,
                limit,
                tables: tables.map(<[String]>::to_vec),
                limits_ms: self.limits_ms,
                tags: true,
            },
        )
        .await
    }

    /// `POST /v1/scope`: the indexes of `keys` of `table` whose rows the
    /// gateway would not serve this node now.
    pub async fn outside_scope(
        &self,
        schema: &Schema,
        table: &Table,
        keys: Vec<Vec<Value>>,
    ) -> Result<Vec<usize>, RemoteError> {
        let r: body::Outside = self
            .post(
                "checking rows against the sync rules",
                "/v1/scope",
                &body::ScopeCheck {
                    schema_hash: schema.hash(),
                    table_hashes: [(table.name.clone(), table.shape_hash())]
                        .into_iter()
                        .collect(),
                    table: table.name.clone(),
                    keys,
                },
            )
            .await?;
        Ok(r.outside)
    }

    /// `POST /v1/verify`: the server's side of a verification of `table`
    /// against the node's bucket digests at `depth` hex digits.
    pub async fn verify(
        &self,
        schema: &Schema,
        table: &Table,
        depth: usize,
        buckets: &std::collections::BTreeMap<String, crate::feed::BucketDigest>,
    ) -> Result<body::Verified, RemoteError> {
        self.post(
            "verifying a table",
            "/v1/verify",
            &body::Verify {
                schema_hash: schema.hash(),
                table_hashes: [(table.name.clone(), table.shape_hash())]
                    .into_iter()
                    .collect(),
                table: table.name.clone(),
                depth,
                buckets: buckets
                    .iter()
                    .map(|(k, d)| (k.clone(), (d.rows, d.sum.to_string())))
                    .collect(),
            },
        )
        .await
    }

    /// `POST /v1/reserve_ids`.
    pub async fn reserve_ids(
        &self,
        table: &str,
        column: &str,
        n: i64,
    ) -> Result<Option<Vec<(i64, i64)>>, RemoteError> {
        let r: body::Reserved = self
            .post(
                "reserving ids",
                "/v1/reserve_ids",
                &body::ReserveIds {
                    table: table.into(),
                    column: column.into(),
                    n,
                },
            )
            .await?;
        Ok(r.ranges)
    }

    /// `GET /v1/bootstrap/{table}`: one table's copy in its own snapshot:
    /// the snapshot's cursor, its row count, and the rows as they arrive
    /// (with `after`, the rows after that key only: a resumed copy).
    /// The stream fails (never just ends) when the copy did not finish.
    pub async fn copy_table<'a>(
        &'a self,
        schema: &Schema,
        table: &'a Table,
        after: Option<&[Value]>,
    ) -> Result<TableCopy<'a>, RemoteError> {
        let action = format!("copying {}", table.name);
        let after: Vec<(&str, String)> = after
            .map(|k| serde_json::to_string(k).unwrap_or_default())
            .map(|k| vec![("after", k)])
            .unwrap_or_default();
        let resp = self
            .send(
                &action,
                self.request(
                    reqwest::Method::GET,
                    &format!("/v1/bootstrap/{}", encode_segment(&table.name)),
                )?
                .query(&[
                    ("schema_hash", schema.hash()),
                    ("table_hash", table.shape_hash()),
                    ("tags", "true".into()),
                ])
                .query(&after)
                .query(
                    &self
                        .limits_ms
                        .map(|(st, lk)| vec![("statement_ms", st), ("lock_ms", lk)])
                        .unwrap_or_default(),
                ),
            )
            .await?;
        let mut lines = Box::pin(self.lines(action.clone(), resp.bytes_stream()));
        let head: body::CopyHead = match lines.next().await {
            Some(Ok(line)) => self.parse_line(&action, &line)?,
            Some(Err(e)) => return Err(e),
            None => return Err(self.cut(&action)),
        };
        // A tagged row carries its tag past its columns (`crate::gateway`'s
        // node keeps it: `outpost_local::tags`).
        let width = table.columns.len() + usize::from(head.tags);
        let stream = futures_util::stream::unfold(
            (lines, false, 0u64),
            move |(mut lines, ended, mut sent)| {
                let action = action.clone();
                async move {
                    if ended {
                        return None;
                    }
                    let line = match lines.next().await {
                        Some(Ok(line)) => line,
                        Some(Err(e)) => return Some((Err(e), (lines, true, sent))),
                        None => return Some((Err(self.cut(&action)), (lines, true, sent))),
                    };
                    if line.first() == Some(&b'[') {
                        let row: Result<Vec<Value>, RemoteError> = self.parse_line(&action, &line);
                        let row = row.and_then(|r| {
                            if r.len() == width {
                                Ok(r)
                            } else {
                                Err(self.bad(
                                    &action,
                                    format!("a row of {} values, expected {width}", r.len()),
                                ))
                            }
                        });
                        sent += 1;
                        return Some((row, (lines, false, sent)));
                    }
                    if let Ok(end) = serde_json::from_slice::<body::CopyEnd>(&line) {
                        if end.end == sent {
                            return None;
                        }
                        let e = self.bad(
                            &action,
                            format!("{} rows received, the gateway sent {}", sent, end.end),
                        );
                        return Some((Err(e), (lines, true, sent)));
                    }
                    let e = match serde_json::from_slice::<body::ErrorBody>(&line) {
                        Ok(b) => RemoteError::Gateway {
                            action: action.clone(),
                            gateway: self.target.url.clone(),
                            status: 200,
                            code: b.error.code,
                            class: class_from(&b.error.class),
                            message: b.error.message,
                            sqlstate: None,
                        },
                        Err(_) => self.bad(&action, "an unexpected line in the copy".into()),
                    };
                    Some((Err(e), (lines, true, sent)))
                }
            },
        );
        Ok(TableCopy {
            cursor: head.cursor,
            count: head.count,
            scope: head.scope,
            rows: Box::pin(stream),
        })
    }

    fn cut(&self, action: &str) -> RemoteError {
        RemoteError::Unreachable {
            server: self.target.url.clone(),
            reason: format!("{action}: the gateway's stream ended before the copy did"),
            auth: false,
        }
    }

    fn bad(&self, action: &str, message: String) -> RemoteError {
        RemoteError::Gateway {
            action: action.into(),
            gateway: self.target.url.clone(),
            status: 200,
            code: "bad_answer".into(),
            message,
            class: ErrorClass::Invalid,
            sqlstate: None,
        }
    }

    fn parse_line<T: DeserializeOwned>(&self, action: &str, line: &[u8]) -> Result<T, RemoteError> {
        serde_json::from_slice(line)
            .map_err(|e| self.bad(action, format!("a line does not parse: {e}")))
    }

    /// The lines of a streamed body (`\n`-separated).
    fn lines<'a>(
        &'a self,
        action: String,
        body: impl Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + 'a,
    ) -> impl Stream<Item = Result<Vec<u8>, RemoteError>> + Send + 'a {
        let body = Box::pin(body);
        futures_util::stream::unfold(
            (body, BytesMut::new(), false),
            move |(mut body, mut buf, done)| {
                let action = action.clone();
                async move {
                    loop {
                        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                            let line = buf.split_to(i).to_vec();
                            buf.advance(1);
                            return Some((Ok(line), (body, buf, done)));
                        }
                        if done {
                            return None;
                        }
                        match body.next().await {
                            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                            Some(Err(e)) => {
                                return Some((
                                    Err(self.unreachable(&action, e)),
                                    (body, buf, true),
                                ));
                            }
                            None => {
                                // A last line without its newline is a cut
                                // stream: dropped, and the missing end line
                                // says so.
                                return None;
                            }
                        }
                    }
                }
            },
        )
    }
}

/// One table's copy as it starts (see [`SyncLink::bootstrap`](crate::connections::SyncLink::bootstrap)).
pub struct TableCopy<'a> {
    /// The cursor the table's snapshot covers.
    pub cursor: Cursor,
    /// Its rows in the snapshot.
    pub count: i64,
    /// The digest of the sync rule that filtered the copy (`None`: the
    /// whole table): see [`outpost_core::sync::PullBatch::scopes`].
    pub scope: Option<String>,
    /// The rows, in key order, as they arrive.
    pub rows: RowStream<'a>,
}

/// Rows of a table's copy as they arrive.
pub type RowStream<'a> =
    std::pin::Pin<Box<dyn Stream<Item = Result<Vec<Value>, RemoteError>> + Send + 'a>>;

/// A table name as one path segment (`%`-encoded where it must be).
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The gateway's change notifications (`GET /v1/changes`, Server-Sent
/// Events), the node's counterpart of [`crate::connections::Listener`].
pub struct GatewayListener {
    conn: GatewayConnection,
    notes: mpsc::UnboundedReceiver<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl GatewayListener {
    /// Opens the stream; the gateway must answer within `timeout`.
    pub async fn open(
        target: &GatewayTarget,
        timeout: Duration,
    ) -> Result<GatewayListener, RemoteError> {
        let conn = GatewayConnection::new(target, timeout)?;
        let req = conn.request(reqwest::Method::GET, "/v1/changes")?;
        let resp =
            match tokio::time::timeout(timeout, conn.send("listening for changes", req)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(RemoteError::Unreachable {
                        server: target.url.clone(),
                        reason: format!(
                            "listening for changes: no answer within {} ms",
                            timeout.as_millis()
                        ),
                        auth: false,
                    });
                }
            };
        let (tx, notes) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut body = Box::pin(resp.bytes_stream());
            let mut buf = BytesMut::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.extend_from_slice(&chunk);
                // Events end with a blank line; only `change` events count
                // (comments keep the stream alive).
                while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
                    let event = buf.split_to(i + 2);
                    if event.starts_with(b"event: change") && tx.send(()).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(GatewayListener {
            conn,
            notes,
            reader,
        })
    }

    /// The next notification; `None` when the stream ended.
    pub async fn notified(&mut self) -> Option<()> {
        self.notes.recv().await
    }

    /// Drops the notifications that arrived meanwhile.
    pub fn drain(&mut self) {
        while self.notes.try_recv().is_ok() {}
    }

    /// Whether the gateway answers its probe (and accepts the token)
    /// within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.conn.probe()).await,
            Ok(Ok(_))
        )
    }

    /// Whether the stream is still open.
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }
}

impl Drop for GatewayListener {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_one_path_segment() {
        assert_eq!(encode_segment("Post"), "Post");
        assert_eq!(encode_segment("a b/c%"), "a%20b%2Fc%25");
    }
}
