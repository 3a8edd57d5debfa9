//! A table whose definition changed on the server, laid out again by
//! `setup` without losing a local edit (docs/protocol.md, "Schema
//! changes"): the rows are carried into the new definition (the columns
//! both definitions share), every entry with local changes is kept with its
//! base re-shaped, and the local values of columns the server no longer
//! has are kept in the entry (`lost_values`) to be reported after the rest
//! of the edit is pushed. A table the server dropped has its local edits
//! saved to a JSON file beside the replica before it goes.

use std::path::{Path, PathBuf};

use outpost_core::ident::quote;
use outpost_core::schema::Table;
use outpost_core::sqlite;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde_json::{Map, Value as Json};

use crate::error::LocalError;

/// What carrying a table into its new definition kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Carried {
    /// Entries with local changes kept.
    pub edits: usize,
    /// Of those, entries holding values of columns the server dropped.
    pub lost: usize,
}

/// Rebuilds `old` as `new` in the setup transaction `tx`, rows and local
/// edits kept. Both must have the same primary key (the caller saves and
/// drops otherwise). Synced rows are carried too, so the application keeps
/// seeing them offline until the table's copy replaces them.
pub(crate) fn rebuild_keeping_rows(
    tx: &Connection,
    old: &Table,
    new: &Table,
) -> Result<Carried, LocalError> {
    let what =
        |step: &str| LocalError::sqlite(format!("{step} ({} changed on the server)", new.name));
    tx.execute_batch("DROP TABLE IF EXISTS temp.\"_outpost_keep\"")
        .map_err(what("setting the rows aside"))?;
    // The old rows with their key and row JSON in the old form (what the
    // entries hold), indexed by key.
    tx.execute_batch(&format!(
        "CREATE TEMP TABLE \"_outpost_keep\" AS SELECT {} AS \"_outpost_pk\", {} AS \"_outpost_row\", r.* FROM {} AS r; \
         CREATE INDEX temp.\"_outpost_keep_pk\" ON \"_outpost_keep\" (\"_outpost_pk\");",
        sqlite::pk_json(old, "r"),
        sqlite::row_json(old, "r"),
        quote(&old.name)
    ))
    .map_err(what("setting the rows aside"))?;
    crate::replica::drop_table_keeping_edits(tx, old)?;
    for stmt in sqlite::table_ddl(new) {
        tx.execute_batch(&stmt)
            .map_err(what("creating the new definition"))?;
    }
    let common: Vec<String> = new
        .columns
        .iter()
        .filter(|c| old.columns.iter().any(|o| o.name == c.name))
        .map(|c| quote(&c.name))
        .collect();
    // The sync's own write: capture silenced. A row the new definition
    // refuses (a new required column with no default) is skipped here and
    // its edit reported below.
    tx.execute_batch(&format!(
        "UPDATE \"_outpost_apply\" SET active = 1 WHERE id = 1; \
         INSERT OR IGNORE INTO {t} ({cols}) SELECT {cols} FROM temp.\"_outpost_keep\"; \
         UPDATE \"_outpost_apply\" SET active = 0 WHERE id = 1;",
        t = quote(&new.name),
        cols = common.join(", ")
    ))
    .map_err(what("carrying the rows over"))?;

    let vanished: Vec<&str> = old
        .columns
        .iter()
        .filter(|o| new.column(&o.name).is_none())
        .map(|o| o.name.as_str())
        .collect();
    let added: Vec<&str> = new
        .columns
        .iter()
        .filter(|c| old.column(&c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    let edits: Vec<(String, Option<String>, bool, Option<String>)> = {
        let mut stmt = tx
            .prepare(
                "SELECT e.pk, e.base_row, e.deleted, k.\"_outpost_row\" FROM \"_outpost_rows\" e \
                 LEFT JOIN temp.\"_outpost_keep\" k ON k.\"_outpost_pk\" = e.pk \
                 WHERE e.table_name = ?1 AND e.status <> 'SYNCED'",
            )
            .map_err(what("reading the local edits"))?;
        stmt.query_map([&new.name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0, r.get(3)?))
        })
        .map_err(what("reading the local edits"))?
        .collect::<Result<_, _>>()
        .map_err(what("reading the local edits"))?
    };
    let by_key = format!(
        "SELECT {} FROM {} AS r WHERE {}",
        sqlite::row_json(new, "r"),
        quote(&new.name),
        new.primary_key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("r.{} = json_extract(?1, '$[{i}]')", quote(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    let mut carried = Carried::default();
    for (pk, base, deleted, local) in edits {
        carried.edits += 1;
        let local: Option<Map<String, Json>> = local.as_deref().and_then(object);
        let mut base: Option<Map<String, Json>> = base.as_deref().and_then(object);
        let now: Option<Map<String, Json>> = if deleted {
            None
        } else {
            tx.query_row(&by_key, [&pk], |r| r.get::<_, String>(0))
                .optional()
                .map_err(what("reading a carried row"))?
                .as_deref()
                .and_then(object)
        };
        let (lost, failed) = match (&local, &now) {
            // Kept: the values of vanished columns the node changed.
            (Some(l), Some(_)) => {
                let lost: Map<String, Json> = vanished
                    .iter()
                    .filter_map(|c| {
                        let lv = l.get(*c).cloned().unwrap_or(Json::Null);
                        let bv = base.as_ref().and_then(|b| b.get(*c)).cloned();
                        let changed = match bv {
                            Some(bv) => bv != lv,
                            None => !lv.is_null(),
                        };
                        changed.then(|| (c.to_string(), lv))
                    })
                    .collect();
                (lost, false)
            }
            // The new definition refused the row: all its values are kept.
            (Some(l), None) if !deleted => (l.clone(), true),
            _ => (Map::new(), false),
        };
        if let Some(b) = base.as_mut() {
            for c in &vanished {
                b.remove(*c);
            }
            // A column new to the table is not the node's edit: its base is
            // the carried value, so the push leaves the server's alone.
            for c in &added {
                let v = now
                    .as_ref()
                    .and_then(|n| n.get(*c))
                    .cloned()
                    .unwrap_or(Json::Null);
                b.insert(c.to_string(), v);
            }
        }
        let base_json = base.map(|b| Json::Object(b).to_string());
        let lost_json = (!lost.is_empty()).then(|| Json::Object(lost).to_string());
        if lost_json.is_some() {
            carried.lost += 1;
        }
        if failed {
            tx.execute(
                "UPDATE \"_outpost_rows\" SET status = 'FAILED', base_row = ?3, lost_values = ?4, error = ?5 \
                 WHERE table_name = ?1 AND pk = ?2",
                params![
                    new.name,
                    pk,
                    base_json,
                    lost_json,
                    format!(
                        "the server changed the definition of {} and this row does not fit the new one here (a new required column?); its local values are kept in this entry: {}",
                        new.name,
                        lost_json.as_deref().unwrap_or("{}")
                    )
                ],
            )
            .map_err(what("keeping a local edit"))?;
        } else {
            tx.execute(
                "UPDATE \"_outpost_rows\" SET base_row = ?3, lost_values = ?4 WHERE table_name = ?1 AND pk = ?2",
                params![new.name, pk, base_json, lost_json],
            )
            .map_err(what("keeping a local edit"))?;
        }
    }
    tx.execute_batch("DROP TABLE temp.\"_outpost_keep\"")
        .map_err(what("dropping the set-aside rows"))?;
    Ok(carried)
}

fn object(json: &str) -> Option<Map<String, Json>> {
    match serde_json::from_str(json) {
        Ok(Json::Object(m)) => Some(m),
        _ => None,
    }
}

/// Saves the local edits of `table` (rows with entries not `SYNCED`: the
/// local row, its base, status and error) to a JSON file beside the
/// replica, before `setup` drops a table the server no longer has or whose
/// key changed. Returns the file.
pub(crate) fn save_edits(
    tx: &Connection,
    replica: &Path,
    table: &Table,
    why: &str,
) -> Result<PathBuf, LocalError> {
    let sql = format!(
        "SELECT e.pk, e.status, e.deleted, e.base_row, e.error, \
         (SELECT {row} FROM {t} AS r WHERE {key} = e.pk) \
         FROM \"_outpost_rows\" e WHERE e.table_name = ?1 AND e.status <> 'SYNCED' ORDER BY e.local_seq",
        row = sqlite::row_json(table, "r"),
        t = quote(&table.name),
        key = sqlite::pk_json(table, "r"),
    );
    let err = || LocalError::sqlite(format!("saving the local edits of {}", table.name));
    let mut stmt = tx.prepare(&sql).map_err(err())?;
    let edits: Vec<Json> = stmt
        .query_map([&table.name], |r| {
            let parse = |s: Option<String>| {
                s.and_then(|s| serde_json::from_str::<Json>(&s).ok())
                    .unwrap_or(Json::Null)
            };
            Ok(serde_json::json!({
                "pk": parse(r.get(0)?),
                "status": r.get::<_, String>(1)?,
                "deleted": r.get::<_, i64>(2)? != 0,
                "base": parse(r.get(3)?),
                "error": r.get::<_, Option<String>>(4)?,
                "row": parse(r.get(5)?),
            }))
        })
        .map_err(err())?
        .collect::<Result<_, _>>()
        .map_err(err())?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let file = PathBuf::from(format!(
        "{}.{}.{stamp}.edits.json",
        replica.display(),
        table.name
    ));
    let body = serde_json::json!({
        "table": table.name,
        "reason": why,
        "savedAt": chrono::Utc::now().to_rfc3339(),
        "edits": edits,
    });
    let text = serde_json::to_string_pretty(&body)?;
    std::fs::write(&file, text).map_err(|e| LocalError::Io {
        action: format!(
            "saving the local edits of {} to {}",
            table.name,
            file.display()
        ),
        source: e,
    })?;
    Ok(file)
}
