//! Rows that left this node's sync-rule scope without a change of their
//! own. Through a gateway with sync rules, a pull sends a changed row that
//! is outside the node's scope as a deletion; but a child row whose rule
//! reads its parent (`"postId" IN (SELECT id FROM "Post" WHERE "userId" =
//! $sub)`) does not change when its parent moves to another user, so no
//! pull names it. After a pull the engine looks up the rows of filtered
//! tables under the parents the pull changed ([`Replica::rows_under`]),
//! asks the gateway which of them are outside the node's scope now, and
//! removes those ([`Replica::remove_outside`]). Rows with local changes
//! stay: their push is refused by the rules (`FAILED`, naming the rule),
//! so a local edit is never dropped without a word. A row held without its
//! parent ([`Replica::orphans_of`]) is asked about when a pull carries a
//! change of its parent's table that the node could not read.

use std::collections::HashSet;

use outpost_core::RowStatus;
use outpost_core::ident::quote;
use outpost_core::schema::{ForeignKey, Table};
use outpost_core::types::Value;
use rusqlite::params_from_iter;

use crate::data::{table_of, write_row};
use crate::error::LocalError;
use crate::keys::pull_key;
use crate::replica::Replica;
use crate::rows::entry;
use crate::value::{from_sqlite, to_sqlite};

impl Replica {
    /// The keys of the rows of `child` that reference, through `fk`, one of
    /// `parent_keys` (primary keys of `fk`'s table, in key order). When
    /// `fk` references other columns of the parent (a unique one), their
    /// values are read from this replica's parent row (a pulled deletion
    /// carries only the key; asked before the pull is applied, the parent
    /// row is still here); a parent this replica does not hold has no
    /// children here to find. A row whose key cannot be read is left out.
    pub fn rows_under(
        &self,
        child: &str,
        fk: &ForeignKey,
        parent_keys: &[Vec<Value>],
    ) -> Result<Vec<Vec<Value>>, LocalError> {
        let schema = self.schema();
        let c = table_of(schema, child)?;
        let parent = table_of(schema, &fk.ref_table)?;
        // For each referencing column: its position in the parent's key
        // and its own column.
        let Some(map) = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .map(|(own, referenced)| {
                let at = parent.primary_key.iter().position(|p| p == referenced)?;
                let col = c.column(own)?;
                Some((at, col))
            })
            .collect::<Option<Vec<_>>>()
        else {
            return self.rows_under_columns(c, parent, fk, parent_keys);
        };
        if map.len() != parent.primary_key.len() {
            return self.rows_under_columns(c, parent, fk, parent_keys);
        }
        let pk_cols: Vec<_> = c.pk_columns().collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            pk_cols
                .iter()
                .map(|col| quote(&col.name))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&c.name),
            map.iter()
                .enumerate()
                .map(|(i, (_, col))| format!("{} = ?{}", quote(&col.name), i + 1))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        let context = format!("reading rows of {child} under {}", parent.name);
        let what = || LocalError::sqlite(context.as_str());
        let conn = self.connection();
        let mut stmt = conn.prepare_cached(&sql).map_err(what())?;
        let mut found = Found::default();
        for key in parent_keys {
            if key.len() != parent.primary_key.len() {
                continue;
            }
            let params = map.iter().map(|(at, col)| to_sqlite(&key[*at], &col.ty));
            found.read(&mut stmt, params_from_iter(params), &pk_cols, &context)?;
        }
        Ok(found.keys)
    }

    /// [`Replica::rows_under`] for a foreign key to columns other than the
    /// parent's primary key: the child's rows joined to the local parent
    /// row found by its key.
    fn rows_under_columns(
        &self,
        c: &Table,
        parent: &Table,
        fk: &ForeignKey,
        parent_keys: &[Vec<Value>],
    ) -> Result<Vec<Vec<Value>>, LocalError> {
        if fk.columns.is_empty() || fk.columns.len() != fk.ref_columns.len() {
            return Ok(Vec::new());
        }
        let pk_cols: Vec<_> = c.pk_columns().collect();
        let parent_pk: Vec<_> = parent.pk_columns().collect();
        let sql = format!(
            "SELECT {} FROM {} AS c JOIN {} AS p ON {} WHERE {}",
            aliased_columns(&pk_cols),
            quote(&c.name),
            quote(&parent.name),
            joined(fk),
            parent_pk
                .iter()
                .enumerate()
                .map(|(i, col)| format!("p.{} = ?{}", quote(&col.name), i + 1))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        let context = format!("reading rows of {} under {}", c.name, parent.name);
        let what = || LocalError::sqlite(context.as_str());
        let conn = self.connection();
        let mut stmt = conn.prepare_cached(&sql).map_err(what())?;
        let mut found = Found::default();
        for key in parent_keys {
            if key.len() != parent_pk.len() {
                continue;
            }
            let params = parent_pk
                .iter()
                .zip(key)
                .map(|(col, v)| to_sqlite(v, &col.ty));
            found.read(&mut stmt, params_from_iter(params), &pk_cols, &context)?;
        }
        Ok(found.keys)
    }

    /// The keys of the rows of `child` whose parent through `fk` this
    /// replica does not hold (every referencing column set, no local row
    /// of `fk`'s table matching them): children a sync rule serves without
    /// their parent (a comment on another user's published post). When a
    /// pull drops the tag-only change of a parent the node never held, one
    /// of these may have left the scope with it; the engine asks the
    /// gateway about them. One anti-join over `child`.
    pub fn orphans_of(&self, child: &str, fk: &ForeignKey) -> Result<Vec<Vec<Value>>, LocalError> {
        let schema = self.schema();
        let c = table_of(schema, child)?;
        let parent = table_of(schema, &fk.ref_table)?;
        if fk.columns.is_empty() || fk.columns.len() != fk.ref_columns.len() {
            return Ok(Vec::new());
        }
        let pk_cols: Vec<_> = c.pk_columns().collect();
        let sql = format!(
            "SELECT {} FROM {} AS c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})",
            aliased_columns(&pk_cols),
            quote(&c.name),
            fk.columns
                .iter()
                .map(|own| format!("c.{} IS NOT NULL", quote(own)))
                .collect::<Vec<_>>()
                .join(" AND "),
            quote(&parent.name),
            joined(fk),
        );
        let context = format!("reading rows of {} without their {}", c.name, parent.name);
        let what = || LocalError::sqlite(context.as_str());
        let conn = self.connection();
        let mut stmt = conn.prepare_cached(&sql).map_err(what())?;
        let mut found = Found::default();
        found.read(&mut stmt, [], &pk_cols, &context)?;
        Ok(found.keys)
    }

    /// Removes the rows of `table` with these keys that have no local
    /// change (no entry, or `SYNCED`), with their entries, as the server's
    /// doing (capture silenced). The entry goes too, so that the row is
    /// taken again at the version it had if it comes back into scope.
    /// Returns how many rows were removed.
    pub fn remove_outside(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
    ) -> Result<usize, LocalError> {
        let schema = self.schema().clone();
        let t: &Table = table_of(&schema, table)?;
        self.apply_silenced(|tx| {
            let mut removed = 0;
            for key in keys {
                let pk = pull_key(tx, t, key)?;
                let state = entry(tx, table, &pk)?;
                if state.is_some_and(|e| e.status != RowStatus::Synced) {
                    continue;
                }
                write_row(tx, t, key, None)?;
                tx.execute(
                    "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
                    rusqlite::params![table, pk],
                )
                .map_err(LocalError::sqlite("forgetting a row outside the scope"))?;
                removed += 1;
            }
            Ok(removed)
        })
    }
}

/// The child's columns `cols` as `c."a", c."b"`.
fn aliased_columns(cols: &[&outpost_core::schema::Column]) -> String {
    cols.iter()
        .map(|col| format!("c.{}", quote(&col.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `fk`'s columns matched, child `c` to parent `p`.
fn joined(fk: &ForeignKey) -> String {
    fk.columns
        .iter()
        .zip(&fk.ref_columns)
        .map(|(own, referenced)| format!("c.{} = p.{}", quote(own), quote(referenced)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Child keys found under parents, each once.
#[derive(Default)]
struct Found {
    seen: HashSet<String>,
    keys: Vec<Vec<Value>>,
}

impl Found {
    /// Adds the keys `stmt` returns for `params` (the child's key columns
    /// `pk_cols`, in order); a key that cannot be read is left out.
    fn read<P: rusqlite::Params>(
        &mut self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        params: P,
        pk_cols: &[&outpost_core::schema::Column],
        context: &str,
    ) -> Result<(), LocalError> {
        let what = || LocalError::sqlite(context);
        let mut rows = stmt.query(params).map_err(what())?;
        while let Some(r) = rows.next().map_err(what())? {
            let values: Result<Vec<Value>, LocalError> = pk_cols
                .iter()
                .enumerate()
                .map(|(i, col)| {
                    let raw = r.get_ref(i).map_err(what())?;
                    from_sqlite(raw, &col.ty, &col.name)
                })
                .collect();
            let Ok(values) = values else {
                continue;
            };
            if self.seen.insert(format!("{values:?}")) {
                self.keys.push(values);
            }
        }
        Ok(())
    }
}
