//! The model service: `outpost.model("Post").find_many(json!({...}))`, the
//! seed's `useModelService('Post')`. Each call is planned once
//! (`outpost_query::plan`, which validates every name and value against the
//! schema) and run where the node's mode sends it:
//!
//! * **local**: on the replica; writes go through the capture triggers like
//!   any other writer's, values the server would have filled are filled
//!   first ([`fill_defaults`]), and every record carries `syncStatus`;
//! * **remote**: on the server, in one transaction under the node's origin;
//!   written rows are mirrored into the replica as synced at their new
//!   versions.
//!
//! Reads into the caller's own types (`find_many::<T>` with `T` other than
//! `serde_json::Value`) run the read as rows (`outpost_query::Records`) and
//! deserialize `T` from them, with the result `serde_json::from_value` of
//! the JSON records would give, without building those records;
//! [`ModelService::run_output`] serializes reads from the rows the same way.
//!
//! In `auto` mode a request whose server connection cannot be opened, or
//! breaks before anything was committed, runs on the replica instead (the
//! server rolled the transaction back, so nothing is applied twice). A
//! connection lost while the commit was in flight is reported as
//! [`EngineError::OutcomeUnknown`]: the write may or may not have landed, and
//! it is never replayed blindly.
//!
//! # Values filled for rows created offline
//!
//! * Defaults SQLite computes the same way (constants, `now()`,
//!   `CURRENT_DATE`, `gen_random_uuid()`) are column defaults of the replica.
//! * A text or uuid primary key with no default gets a UUIDv7 (Prisma's
//!   `@default(cuid())`/`@default(uuid())` live in the client, not the
//!   database).
//! * Integer columns fed by a sequence (`serial`, identity) take ids from a
//!   per-node block reserved from that sequence while online
//!   ([`NodeOptions::id_block`](crate::NodeOptions), topped up after each
//!   sync when half used), so an offline row keeps its id when pushed and two
//!   nodes never collide. When the block runs out offline, the create is
//!   refused with an error saying so; nothing is guessed.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;

use outpost_core::schema::{Schema, Table};
use outpost_core::types::Value;
use outpost_local::sync::Mirrored;
use outpost_query::{Operation, Plan, Records};
use outpost_remote::connections::WriteError;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value as Json;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::defaults::fill_defaults;
use crate::error::{EngineError, ErrorKind, remote_kind};
use crate::node::{Mode, Outpost};

/// Operations on one model.
#[derive(Clone)]
pub struct ModelService {
    node: Outpost,
    model: String,
}

impl Outpost {
    /// The model service of a synced table.
    pub fn model(&self, name: &str) -> Result<ModelService, EngineError> {
        // A Prisma model name (`@@map`) names its table.
        let name = self
            .inner
            .prisma
            .as_ref()
            .and_then(|p| p.table_of(name))
            .unwrap_or(name);
        let schema = self.inner.engine.schema();
        if schema.table(name).is_none() {
            let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
            return Err(EngineError::Query(format!(
                "unknown model {name:?} (models: {})",
                names.join(", ")
            )));
        }
        Ok(ModelService {
            node: self.clone(),
            model: name.to_string(),
        })
    }
}

/// `u` itself when `U` is `T`.
fn as_is<T: 'static, U: Default + 'static>(u: U) -> Result<T, U> {
    let mut slot = Some(u);
    match (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
    {
        Some(t) => Ok(t),
        None => Err(slot.unwrap_or_default()),
    }
}

/// The result as `T`. JSON asked for as JSON (`Json`, `Vec<Json>`,
/// `Option<Json>`) is handed over as built: deserializing it again would
/// rebuild every record (a second pass as costly as building them).
fn typed<T: DeserializeOwned + 'static>(json: Json) -> Result<T, EngineError> {
    let json = match as_is::<T, _>(json) {
        Ok(t) => return Ok(t),
        Err(json) => json,
    };
    let json = match json {
        Json::Array(items) => match as_is::<T, _>(items) {
            Ok(t) => return Ok(t),
            Err(items) => Json::Array(items),
        },
        Json::Null => match as_is::<T, Option<Json>>(None) {
            Ok(t) => return Ok(t),
            Err(_) => Json::Null,
        },
        other => match as_is::<T, _>(Some(other)) {
            Ok(t) => return Ok(t),
            Err(other) => other.unwrap_or_default(),
        },
    };
    serde_json::from_value(json)
        .map_err(|e| EngineError::Query(format!("the result does not fit the requested type: {e}")))
}

/// Whether `T` is `serde_json::Value`: such reads keep the JSON records as
/// built.
fn is_json<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Json>()
}

/// What an operation gave: write it as JSON with serde ([`Serialize`]),
/// which gives Prisma's result shape either way.
pub enum Output {
    /// Prisma's result shape.
    Json(Json),
    /// A read's rows: serialized straight from them (the same JSON text as
    /// the records), or deserialized into types.
    Records(Records),
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Output::Json(json) => json.serialize(serializer),
            Output::Records(records) => records.serialize(serializer),
        }
    }
}

fn count_of(json: &Json) -> u64 {
    json.as_u64()
        .or_else(|| json.get("count").and_then(Json::as_u64))
        .unwrap_or(0)
}

impl ModelService {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.model
    }

    /// Runs any operation with Prisma's argument object; returns Prisma's
    /// result shape as JSON.
    pub async fn run(&self, operation: Operation, args: Json) -> Result<Json, EngineError> {
        match self.execute(operation, args, false).await? {
            Output::Json(json) => Ok(json),
            Output::Records(_) => Err(EngineError::Internal(
                "a read gave rows where JSON was asked for".into(),
            )),
        }
    }

    /// Runs any operation as [`ModelService::run`] does, for a caller that
    /// writes the result as JSON (the HTTP API): a read's records are not
    /// built as `serde_json::Value`s but serialized from the rows.
    pub async fn run_output(
        &self,
        operation: Operation,
        args: Json,
    ) -> Result<Output, EngineError> {
        let read = matches!(
            operation,
            Operation::FindMany | Operation::FindFirst | Operation::FindUnique
        );
        self.execute(operation, args, read).await
    }

    /// The records of a read (`findMany`, `findFirst`, `findUnique`) as
    /// `T`s, deserialized from the rows read without JSON records in
    /// between (`outpost_query::records`).
    async fn read_as<T: DeserializeOwned>(
        &self,
        operation: Operation,
        args: Json,
    ) -> Result<Vec<T>, EngineError> {
        match self.execute(operation, args, true).await? {
            Output::Records(records) => records.deserialize().map_err(|e| {
                EngineError::Query(format!("the result does not fit the requested type: {e}"))
            }),
            // Through a Prisma schema reads are JSON records (`execute`).
            Output::Json(json) => {
                let items = match json {
                    Json::Array(items) => items,
                    Json::Null => Vec::new(),
                    one => vec![one],
                };
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, j)| {
                        serde_path_to_error::deserialize(j).map_err(|e| {
                            let path = e.path().to_string();
                            let at = if path == "." {
                                format!("[{i}]")
                            } else {
                                format!("[{i}].{path}")
                            };
                            EngineError::Query(format!(
                                "the result does not fit the requested type: {at}: {}",
                                e.inner()
                            ))
                        })
                    })
                    .collect()
            }
        }
    }

    /// Plans and routes an operation (module doc); `records`: a read gives
    /// its rows ([`Output::Records`]) instead of JSON records.
    async fn execute(
        &self,
        operation: Operation,
        args: Json,
        records: bool,
    ) -> Result<Output, EngineError> {
        match self.execute_once(operation, &args, records).await {
            // Another process changed the replica's schema snapshot (an
            // `outpost setup`): nothing was written; reload it, plan again.
            Err(EngineError::Local(outpost_local::LocalError::SchemaChanged)) => {
                self.node.inner.engine.refresh().await?;
                self.execute_once(operation, &args, records).await
            }
            other => other,
        }
    }

    async fn execute_once(
        &self,
        operation: Operation,
        args: &Json,
        records: bool,
    ) -> Result<Output, EngineError> {
        if let Some(prisma) = self.node.inner.prisma.clone() {
            // Prisma's names and defaults in, Prisma's names and forms out
            // (`prisma.rs`); a read's records are built as JSON for that.
            let args = prisma
                .prepare(&self.model, operation, args.clone())
                .map_err(EngineError::Query)?;
            let schema = Arc::new(prisma.planning().clone());
            return match self.route(schema, operation, args, false).await? {
                Output::Json(json) => Ok(Output::Json(prisma.finish(&self.model, json))),
                other => Ok(other),
            };
        }
        let schema = self.node.inner.engine.schema();
        self.route(schema, operation, args.clone(), records).await
    }

    /// Plans against `schema` and runs where the mode sends the request.
    async fn route(
        &self,
        schema: Arc<Schema>,
        operation: Operation,
        args: Json,
        records: bool,
    ) -> Result<Output, EngineError> {
        let plan = outpost_query::plan(&schema, &self.model, operation, &args)
            .map_err(|e| EngineError::Query(e.to_string()))?;
        if self.node.inner.config.gateway.is_some() {
            // No database session through a gateway: remote mode asks the
            // gateway to run the request on the server (`POST /v1/query`),
            // everything else runs on the replica, except in `auto` without
            // offline mode while the gateway is away: no fallback, as in
            // direct topology.
            match self.node.mode() {
                Mode::Remote => return self.run_through_gateway(&plan, &args).await,
                Mode::Auto if !self.node.using_local() => {
                    // The monitor may not have seen it yet (a node just
                    // opened): ask, as a direct node tries the server.
                    if let Err(e) = self.node.probe_gateway().await {
                        return Err(EngineError::Unreachable(format!(
                            "{e} (ENABLE_OFFLINE_MODE is false, so there is no fallback to \
                             the replica)"
                        )));
                    }
                    return self.run_local(schema, plan, records).await;
                }
                _ => return self.run_local(schema, plan, records).await,
            }
        }
        if !self.node.inner.config.enable_offline_mode
            && self.node.mode() == Mode::Auto
            && !self.node.is_online()
        {
            // No fallback allowed: try the server, and say so if it is away.
            return self.run_remote(&schema, &plan, records).await;
        }
        if self.node.using_local() {
            return self.run_local(schema, plan, records).await;
        }
        match self.run_remote(&schema, &plan, records).await {
            Err(e)
                if e.is_unreachable()
                    && self.node.mode() == Mode::Auto
                    && self.node.inner.config.enable_offline_mode =>
            {
                tracing::info!(reason = %e, "server unreachable; running on the replica");
                if self.node.set_online(false) {
                    self.node.publish().await;
                }
                self.run_local(schema, plan, records).await
            }
            other => other,
        }
    }

    async fn run_local(
        &self,
        schema: Arc<Schema>,
        plan: Plan,
        records: bool,
    ) -> Result<Output, EngineError> {
        let is_write = plan.is_write();
        let engine = &self.node.inner.engine;
        if records && !is_write {
            let read = move |r: &mut outpost_local::Replica| r.read_query(&schema, &plan, true);
            // Deserialized by the caller, on this thread (see below).
            return Ok(Output::Records(engine.with_replica_here(read).await?));
        }
        let run = move |r: &mut outpost_local::Replica| {
            if is_write {
                // Never write with a snapshot another process replaced.
                r.check_schema()?;
            }
            let ids = r.reserved_ids();
            let mut fill =
                |t: &Table, row: &mut BTreeMap<String, Value>| fill_defaults(&ids, t, row);
            r.run_query(&schema, &plan, true, &mut fill)
        };
        // A read's records are built where the caller will use and drop
        // them (see `with_replica_here`).
        let out = if is_write {
            engine.with_replica(run).await?
        } else {
            engine.with_replica_here(run).await?
        };
        if is_write {
            self.node.publish().await;
        }
        Ok(Output::Json(out.result))
    }

    /// Runs a request on the server under the node's request deadline
    /// ([`Outpost::bounded_request`]).
    async fn run_remote(
        &self,
        schema: &Schema,
        plan: &Plan,
        records: bool,
    ) -> Result<Output, EngineError> {
        let sent = AtomicBool::new(false);
        let what = format!("a {} on {}", plan.operation(), self.model);
        self.node
            .bounded_request(
                &what,
                &sent,
                self.run_remote_unbounded(schema, plan, records, &sent),
            )
            .await
    }

    async fn run_remote_unbounded(
        &self,
        schema: &Schema,
        plan: &Plan,
        records: bool,
        sent: &AtomicBool,
    ) -> Result<Output, EngineError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            EngineError::Unreachable(format!(
                "{e}{}",
                if self.node.inner.config.enable_offline_mode {
                    ""
                } else {
                    " (ENABLE_OFFLINE_MODE is false, so there is no fallback to the replica)"
                }
            ))
        };
        let mut guard = match self.node.remote_client().await {
            Ok(g) => g,
            Err(e) => return Err(unreachable(&e)),
        };
        // Taken out of the slot while in use; put back only if still healthy.
        let Some(mut session) = guard.take() else {
            return Err(unreachable(&"no connection"));
        };
        if !plan.is_write() {
            let out = if records {
                session.read(schema, plan).await.map(Output::Records)
            } else {
                session.run(schema, plan).await.map(Output::Json)
            };
            return match out {
                Ok(out) => {
                    *guard = Some(session);
                    Ok(out)
                }
                Err(e) if remote_kind(&e).is_unreachable() => Err(unreachable(&e)),
                Err(e) => {
                    // A protocol error ends the server session: keep the
                    // connection only while it is open.
                    if session.is_open() {
                        *guard = Some(session);
                    }
                    Err(refused_as_asked(e))
                }
            };
        }
        let origin = self.node.inner.engine.node_id();
        let idle_limit = self.node.inner.options.request_timeout;
        let (result, written) = match session.write(schema, plan, origin, idle_limit, sent).await {
            Ok(done) => done,
            // Not committed: the server rolled it back.
            Err(WriteError::NotApplied(e)) if remote_kind(&e).is_unreachable() => {
                return Err(unreachable(&e));
            }
            Err(WriteError::NotApplied(e)) => {
                if session.is_open() {
                    *guard = Some(session);
                }
                return Err(refused_as_asked(e));
            }
            Err(WriteError::CommitLost(_)) => {
                return Err(EngineError::OutcomeUnknown(format!(
                    "the connection was lost while committing a {} on {}: it may or may not have been applied; \
                     the next sync shows which (it is not retried automatically)",
                    plan.operation(),
                    self.model
                )));
            }
        };
        *guard = Some(session);
        drop(guard);
        self.mirror(written).await;
        Ok(Output::Json(result))
    }

    /// Copies the rows a remote write left on the server into the replica,
    /// as synced at their versions, and tells subscribers.
    async fn mirror(&self, written: Vec<outpost_remote::connections::WrittenRow>) {
        let mirrored: Vec<Mirrored> = written
            .into_iter()
            .map(|w| Mirrored {
                table: w.table,
                pk: w.pk,
                values: w.values,
                version: w.version,
                tag: w.tag,
            })
            .collect();
        // The write is committed on the server: it must succeed from here
        // on. Failing it because the mirror failed (another process's
        // `setup` replaced the replica's schema, the file is locked) made
        // `execute`, or the caller, write it a second time (campaign seed
        // 21). The next pull brings the rows into the replica instead.
        if let Err(e) = self
            .node
            .inner
            .engine
            .with_replica(move |r| r.mirror(&mirrored))
            .await
        {
            tracing::warn!(error = %e, "a remote write landed but could not be copied into the replica; the next pull brings it");
        }
        self.node.publish().await;
    }

    /// A remote-mode request through the gateway (`POST /v1/query`), under
    /// the node's request deadline ([`Outpost::bounded_request`]): the
    /// gateway plans it against the server's schema (with this node's
    /// relation names) and runs it as a direct node's session would; a
    /// write's rows are mirrored as in direct topology.
    async fn run_through_gateway(&self, plan: &Plan, args: &Json) -> Result<Output, EngineError> {
        let sent = AtomicBool::new(false);
        let what = format!("a {} on {}", plan.operation(), self.model);
        self.node
            .bounded_request(
                &what,
                &sent,
                self.run_through_gateway_unbounded(plan, args, &sent),
            )
            .await
    }

    async fn run_through_gateway_unbounded(
        &self,
        plan: &Plan,
        args: &Json,
        sent: &AtomicBool,
    ) -> Result<Output, EngineError> {
        use outpost_remote::connections::WriteError;
        let inner = &self.node.inner;
        let target = inner
            .config
            .gateway
            .as_ref()
            .ok_or_else(|| EngineError::Internal("the gateway target vanished".into()))?;
        let schema = inner.engine.schema();
        let t = inner.engine.timeouts();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let q = outpost_remote::gateway::body::Query {
            schema_hash: schema.hash(),
            table_hashes: schema.table_hashes(),
            node: inner.engine.node_id(),
            model: self.model.clone(),
            operation: plan.operation().name().to_string(),
            args: args.clone(),
            relation_names: inner
                .prisma
                .as_ref()
                .map(|p| p.relation_names().to_vec())
                .unwrap_or_default(),
            limits_ms: (ms(t.statement), ms(t.lock)),
            idle_ms: ms(inner.options.request_timeout),
            // Every attempt of a write carries the same id: the gateway
            // writes it once and answers a later attempt with the first
            // one's answer.
            request: plan.is_write().then(uuid::Uuid::now_v7),
            tags: true,
        };
        // A node that already sees the gateway away asks it first: a path
        // that refuses says "unreachable" (nothing sent) rather than leave
        // a write's outcome unknown.
        if !self.node.is_online()
            && let Err(why) = self.node.probe_gateway().await
        {
            return Err(EngineError::Unreachable(why));
        }
        // From here a write may land whatever happens to its answer.
        sent.store(plan.is_write(), std::sync::atomic::Ordering::SeqCst);
        let mut answer_lost = false;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            // A client of its own per attempt: a connection the path
            // left dead is not reused.
            let conn = outpost_remote::gateway::GatewayConnection::new(
                target,
                inner.options.check_timeout,
            )?;
            match conn.query(&q).await {
                Ok(answer) => {
                    if plan.is_write() {
                        self.mirror(answer.written).await;
                    }
                    return Ok(Output::Json(answer.result));
                }
                // After a lost answer a path still down tells nothing of the
                // first attempt: ask again until the request's deadline
                // (`bounded_request` then says "outcome unknown").
                // Asked again after a lost answer: a refusal the write's
                // own statements met (the model service's error, or the
                // server's SQLSTATE) says the first attempt did not commit
                // (its claim would have answered); anything else says
                // nothing of it.
                Err(WriteError::NotApplied(e)) if answer_lost => match remote_kind(&e) {
                    ErrorKind::Unreachable | ErrorKind::Transient => {}
                    _ if e.is_request_refusal() => return Err(refused_as_asked(e)),
                    _ => {
                        return Err(EngineError::OutcomeUnknown(format!(
                            "the answer to a {} on {} was lost, and asking the gateway again \
                             failed ({e}): it may or may not have been applied; the next sync \
                             shows which",
                            plan.operation(),
                            self.model
                        )));
                    }
                },
                // Never sent: as a direct node's failed connect.
                Err(WriteError::NotApplied(e)) if remote_kind(&e).is_unreachable() => {
                    return Err(EngineError::Unreachable(e.to_string()));
                }
                Err(WriteError::NotApplied(e)) => return Err(refused_as_asked(e)),
                Err(WriteError::CommitLost(e)) if plan.is_write() => {
                    tracing::info!(error = %e, "a remote write's answer was lost; asking the gateway again with its request id");
                    answer_lost = true;
                }
                Err(WriteError::CommitLost(e)) => return Err(EngineError::Remote(e)),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// `findMany`. `T = serde_json::Value` gives the JSON records; any
    /// other `T` is deserialized straight from the rows read (no JSON
    /// records in between), with the same result as
    /// `serde_json::from_value::<T>` of each JSON record.
    pub async fn find_many<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<Vec<T>, EngineError> {
        if is_json::<T>() {
            return typed(self.run(Operation::FindMany, args).await?);
        }
        self.read_as(Operation::FindMany, args).await
    }

    /// `findFirst`; `T` as for [`ModelService::find_many`].
    pub async fn find_first<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<Option<T>, EngineError> {
        if is_json::<T>() {
            return typed(self.run(Operation::FindFirst, args).await?);
        }
        Ok(self
            .read_as(Operation::FindFirst, args)
            .await?
            .into_iter()
            .next())
    }

    /// `findUnique`; `T` as for [`ModelService::find_many`].
    pub async fn find_unique<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<Option<T>, EngineError> {
        if is_json::<T>() {
            return typed(self.run(Operation::FindUnique, args).await?);
        }
        Ok(self
            .read_as(Operation::FindUnique, args)
            .await?
            .into_iter()
            .next())
    }

    /// `count`.
    pub async fn count(&self, args: Json) -> Result<u64, EngineError> {
        Ok(count_of(&self.run(Operation::Count, args).await?))
    }

    /// `create`.
    pub async fn create<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<T, EngineError> {
        typed(self.run(Operation::Create, args).await?)
    }

    /// `createMany`: the number of rows created.
    pub async fn create_many(&self, args: Json) -> Result<u64, EngineError> {
        Ok(count_of(&self.run(Operation::CreateMany, args).await?))
    }

    /// `update`.
    pub async fn update<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<T, EngineError> {
        typed(self.run(Operation::Update, args).await?)
    }

    /// `updateMany`: the number of rows updated.
    pub async fn update_many(&self, args: Json) -> Result<u64, EngineError> {
        Ok(count_of(&self.run(Operation::UpdateMany, args).await?))
    }

    /// `upsert`.
    pub async fn upsert<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<T, EngineError> {
        typed(self.run(Operation::Upsert, args).await?)
    }

    /// `delete`.
    pub async fn delete<T: DeserializeOwned + 'static>(
        &self,
        args: Json,
    ) -> Result<T, EngineError> {
        typed(self.run(Operation::Delete, args).await?)
    }

    /// `deleteMany`: the number of rows deleted.
    pub async fn delete_many(&self, args: Json) -> Result<u64, EngineError> {
        Ok(count_of(&self.run(Operation::DeleteMany, args).await?))
    }
}

/// PostgreSQL's limit on the bind parameters of one statement.
const MAX_BIND_PARAMETERS: usize = 65_535;

/// A server error of the request itself. One the server took as a protocol
/// violation (a statement with more bind parameters than the wire format
/// can carry: a very long `in` list) names the limit, since the server's
/// own message does not; the case is told by
/// `RemoteError::exceeds_protocol_limits`, not by the message.
fn refused_as_asked(e: outpost_remote::RemoteError) -> EngineError {
    if remote_kind(&e) == ErrorKind::Refused && e.exceeds_protocol_limits() {
        let cause = e.to_string();
        return EngineError::Refused(format!(
            "the request is too large for the server: one statement carries at most {MAX_BIND_PARAMETERS} \
             values (e.g. in an `in` list); split it into smaller requests ({cause})"
        ));
    }
    EngineError::Remote(e)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Post {
        id: i64,
        title: String,
    }

    #[test]
    fn results_as_json_or_as_types_alike() {
        let records = json!([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]);
        // JSON handed over as it is, and the same through serde.
        let as_json: Vec<Json> = typed(records.clone()).unwrap();
        assert_eq!(Json::Array(as_json), records);
        let whole: Json = typed(records.clone()).unwrap();
        assert_eq!(whole, records);
        let posts: Vec<Post> = typed(records.clone()).unwrap();
        assert_eq!(
            posts[1],
            Post {
                id: 2,
                title: "b".into()
            }
        );
        // One record or none.
        let one: Option<Json> = typed(records[0].clone()).unwrap();
        assert_eq!(one, Some(records[0].clone()));
        let none: Option<Json> = typed(Json::Null).unwrap();
        assert_eq!(none, None);
        let post: Option<Post> = typed(records[0].clone()).unwrap();
        assert_eq!(
            post,
            Some(Post {
                id: 1,
                title: "a".into()
            })
        );
        let value: Json = typed(Json::Null).unwrap();
        assert_eq!(value, Json::Null);
        // What does not fit is refused either way.
        assert!(typed::<Vec<Json>>(json!({"count": 1})).is_err());
        assert!(typed::<Vec<Post>>(json!([{"id": "x"}])).is_err());
    }
}
