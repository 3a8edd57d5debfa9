//! A push group under sync rules (the gateway's [`Scope`]): rows outside
//! the node's scope before or after the change are refused by name. Part
//! of the push (`super`), whose helpers it uses.

use super::*;

/// [`push_group`] under a table's condition (the gateway's sync rules).
///
/// Before: the group's existing rows are locked (in key order, as
/// [`push_group`] locks them) and then checked in a statement of their own,
/// whose snapshot is taken after the lock, so a row moved out of scope by a
/// transaction that held it is seen as moved; rows outside the scope are
/// `FAILED` and the group goes on without them (a delete or update of
/// another node's row never reaches the decision, so it is never answered
/// with that row as a conflict).
///
/// After: the group runs inside a savepoint; the rows it wrote are checked,
/// and when any does not satisfy the condition the savepoint is rolled
/// back, those rows are `FAILED` and the group runs again without them
/// (each round fails at least one row, so it ends). Answers that carry a
/// server row (a conflict with a row inserted meanwhile) are checked too.
#[allow(clippy::too_many_arguments)]
pub(super) async fn scoped_group(
    tx: &Transaction<'_>,
    schema: &Schema,
    table: &Table,
    by: &Pusher,
    cache: &mut Statements,
    scope: &TableScope,
    rows: &[PushRow],
    outcomes: &mut [Option<PushOutcome>],
) -> Result<(), RemoteError> {
    let pg = &schema.pg_schema;
    let open: Vec<usize> = (0..rows.len()).filter(|&i| outcomes[i].is_none()).collect();
    if !open.is_empty() {
        let subset: Vec<&PushRow> = open.iter().map(|&i| &rows[i]).collect();
        let keys = sql::key_source(table, &subset);
        let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
        let from = sql::qualified(pg, &table.name);
        let lock = statement(
            tx,
            cache,
            keys.cacheable,
            &sql::lock_rows(&from, table, &keys),
        )
        .await
        .map_err(db(format!("locking rows of {}", table.name)))?;
        tx.query(&lock, &params(&key_binds))
            .await
            .map_err(db(format!("locking rows of {}", table.name)))?;
        let before = row_scope::in_scope(
            tx,
            cache,
            pg,
            table,
            scope,
            open.iter().map(|&i| rows[i].pk.clone()).collect(),
        )
        .await?;
        for (j, &i) in open.iter().enumerate() {
            if before.get(&j) == Some(&false) {
                outcomes[i] = Some(PushOutcome::Failed {
                    message: row_scope::refusal(table, &rows[i].local_pk, scope, false),
                });
            }
        }
    }
    loop {
        let saved: Vec<Option<PushOutcome>> = outcomes.to_vec();
        tx.batch_execute("SAVEPOINT outpost_scope")
            .await
            .map_err(db("setting a savepoint"))?;
        push_group(tx, schema, table, by, cache, rows, outcomes).await?;
        // Rows whose answer carries a server row: written ones, and
        // conflicts (an insert that met a row inserted meanwhile).
        let carried: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                saved[i].is_none()
                    && matches!(
                        &outcomes[i],
                        Some(PushOutcome::Applied { row: Some(_), .. })
                            | Some(PushOutcome::AlreadyApplied { row: Some(_), .. })
                            | Some(PushOutcome::Conflict(ServerRow {
                                values: Some(_),
                                ..
                            }))
                    )
            })
            .collect();
        let after = row_scope::in_scope(
            tx,
            cache,
            pg,
            table,
            scope,
            carried.iter().map(|&i| rows[i].pk.clone()).collect(),
        )
        .await?;
        let out: Vec<usize> = carried
            .iter()
            .enumerate()
            .filter(|(j, _)| after.get(j) == Some(&false))
            .map(|(_, &i)| i)
            .collect();
        let written_out: Vec<usize> = out
            .iter()
            .copied()
            .filter(|&i| matches!(outcomes[i], Some(PushOutcome::Applied { .. })))
            .collect();
        if written_out.is_empty() {
            tx.batch_execute("RELEASE SAVEPOINT outpost_scope")
                .await
                .map_err(db("releasing a savepoint"))?;
            // Nothing written leaves the scope; a conflict's server row
            // outside it is not shown to the node.
            for &i in &out {
                outcomes[i] = Some(PushOutcome::Failed {
                    message: row_scope::refusal(table, &rows[i].local_pk, scope, false),
                });
            }
            return Ok(());
        }
        // A written row left the scope: undo the group, fail the rows
        // written out of scope, and write the rest again.
        tx.batch_execute("ROLLBACK TO SAVEPOINT outpost_scope")
            .await
            .map_err(db("rolling back to a savepoint"))?;
        outcomes.clone_from_slice(&saved);
        for i in written_out {
            outcomes[i] = Some(PushOutcome::Failed {
                message: row_scope::refusal(table, &rows[i].local_pk, scope, true),
            });
        }
    }
}
