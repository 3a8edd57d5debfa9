//! Review operations on the replica's unsettled rows, the same for the
//! library, the HTTP API and the CLI: conflicts and their resolution (one
//! rule for a merged row, [`Engine::merged_resolution`]), rows the server
//! refused (discard, retry), pending changes, the sync log, and row keys
//! given as JSON.

use outpost_core::types::Value;
use outpost_local::{ChangePage, ConflictEntry, Discarded, LogEntry, Resolution};
use serde_json::{Map, Value as Json};

use crate::engine::Engine;
use crate::error::EngineError;

impl Engine {
    /// Rows in conflict.
    pub async fn conflicts(&self) -> Result<Vec<ConflictEntry>, EngineError> {
        self.with_replica(|r| r.conflicts()).await
    }

    /// Resolves a conflict; the next push sends the outcome.
    pub async fn resolve(
        &self,
        model: &str,
        pk: &str,
        resolution: Resolution,
    ) -> Result<(), EngineError> {
        self.check_model(model)?;
        let (model, pk) = (model.to_string(), pk.to_string());
        self.with_replica(move |r| r.resolve_conflict(&model, &pk, resolution))
            .await
    }

    /// The sync log, newest first.
    pub async fn log(
        &self,
        model: Option<String>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<LogEntry>, EngineError> {
        self.with_replica(move |r| r.sync_log(model.as_deref(), limit, offset))
            .await
    }

    /// Local changes not yet pushed, oldest first, a page at a time.
    pub async fn pending_changes(
        &self,
        model: Option<String>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, EngineError> {
        self.with_replica(move |r| r.pending_changes(model.as_deref(), limit, offset))
            .await
    }

    /// Rows the server refused, oldest first, a page at a time.
    pub async fn failed_changes(
        &self,
        model: Option<String>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, EngineError> {
        self.with_replica(move |r| r.failed_changes(model.as_deref(), limit, offset))
            .await
    }

    /// Drops the local change of a refused row and puts the server's row
    /// back (see `Replica::discard_failed`); `None` when it is not `FAILED`.
    pub async fn discard_failed(
        &self,
        model: &str,
        pk: &str,
    ) -> Result<Option<Discarded>, EngineError> {
        self.check_model(model)?;
        let (model, pk) = (model.to_string(), pk.to_string());
        self.with_replica(move |r| r.discard_failed(&model, &pk))
            .await
    }

    /// Puts a refused row back in the push queue; `false` when it is not
    /// `FAILED`.
    pub async fn retry_failed(&self, model: &str, pk: &str) -> Result<bool, EngineError> {
        self.check_model(model)?;
        let (model, pk) = (model.to_string(), pk.to_string());
        self.with_replica(move |r| r.retry_failed(&model, &pk))
            .await
    }

    /// How many `SyncLog` rows there are (of one model, when given).
    pub async fn log_count(&self, model: Option<String>) -> Result<i64, EngineError> {
        self.with_replica(move |r| r.sync_log_count(model.as_deref()))
            .await
    }
    /// The replica's row key (`_outpost_rows.pk`) for a key given in JSON: an
    /// array of the key columns' JSON forms, or a single value for a
    /// one-column key (`"p1"`, `7`, `["p1"]`, `[7, "x"]`).
    pub async fn local_key(
        &self,
        model: &str,
        key: &serde_json::Value,
    ) -> Result<String, EngineError> {
        self.check_model(model)?;
        let table = self
            .schema()
            .table(model)
            .cloned()
            .ok_or_else(|| EngineError::UnknownModel(model.to_string()))?;
        let parts: Vec<serde_json::Value> = match key {
            serde_json::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        if parts.len() != table.primary_key.len() {
            return Err(EngineError::Config(format!(
                "{model} has a {}-column key ({}); got {} values",
                table.primary_key.len(),
                table.primary_key.join(", "),
                parts.len()
            )));
        }
        let mut values = Vec::with_capacity(parts.len());
        for (col, j) in table.pk_columns().zip(&parts) {
            let v = Value::from_json(j, &col.ty, None)
                .map_err(|e| EngineError::Config(format!("{model}.{}: {e}", col.name)))?;
            values.push(v);
        }
        self.with_replica(move |r| r.local_pk(&table, &values))
            .await
    }

    /// The replica's row key for a key typed by a person (a URL segment, a
    /// command-line argument): JSON (`["a",1]`, `7`, `"p1"`) or, when that
    /// does not fit the model's key, the plain string (`p1`, or `7` for a
    /// text key). One rule for the HTTP API and the CLI.
    pub async fn local_key_from_text(&self, model: &str, raw: &str) -> Result<String, EngineError> {
        if let Ok(json) = serde_json::from_str::<Json>(raw)
            && let Ok(pk) = self.local_key(model, &json).await
        {
            return Ok(pk);
        }
        self.local_key(model, &Json::String(raw.to_string())).await
    }

    /// The resolution that writes a merged row: each column the value
    /// `merged` gives it, else the server's value, else the local one (when
    /// the server deleted the row). An unknown column, a value of the wrong
    /// type, or a column neither `merged` nor either side gives is bad input,
    /// named.
    pub fn merged_resolution(
        &self,
        model: &str,
        entry: &ConflictEntry,
        merged: &Map<String, Json>,
    ) -> Result<Resolution, EngineError> {
        let schema = self.schema();
        let t = schema
            .table(model)
            .ok_or_else(|| EngineError::UnknownModel(model.to_string()))?;
        if let Some(unknown) = merged.keys().find(|k| t.column(k).is_none()) {
            let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(EngineError::Query(format!(
                "unknown column {unknown:?} on model {model} (columns: {})",
                names.join(", ")
            )));
        }
        let fallback = entry.server.as_ref().or(entry.local.as_ref());
        let mut row = Vec::with_capacity(t.columns.len());
        for (i, col) in t.columns.iter().enumerate() {
            let value = match merged.get(&col.name) {
                Some(j) => {
                    let labels = match &col.ty.scalar {
                        outpost_core::types::ScalarType::Enum(name) => {
                            schema.enum_type(name).map(|e| e.labels.as_slice())
                        }
                        _ => None,
                    };
                    Value::from_json(j, &col.ty, labels)
                        .map_err(|e| EngineError::Query(format!("{model}.{}: {e}", col.name)))?
                }
                None => fallback.and_then(|r| r.get(i)).cloned().ok_or_else(|| {
                    EngineError::Query(format!(
                        "merged must give {model}.{}: neither side has the row",
                        col.name
                    ))
                })?,
            };
            row.push(value);
        }
        Ok(Resolution::Merged(row))
    }
}
