//! A primary-key change pushed as one `UPDATE` of the key, so the foreign
//! keys' `ON UPDATE` actions run (docs/protocol.md, "Key changes"). Part of
//! the push (`super`), whose helpers it uses.

use super::*;

/// A primary-key change (docs/protocol.md, "Key changes"): the insert
/// `rows[i]` names the old key ([`PushRow::moved_from`]) whose delete the
/// same push carries. When the new key is absent and the old row is the
/// node's base (both would be written as they are: [`accept::decide`]),
/// the pair is applied as one `UPDATE` of the key, so the foreign keys'
/// `ON UPDATE` actions run (`CASCADE` moves the children along; with
/// `RESTRICT` the delete would have failed anyway), and both halves are
/// answered as applied. Returns whether it was; when not (the old row
/// changed or is gone, the new key taken, a retry of a pair already
/// applied, or the server refused the update), nothing was written and
/// both halves take the ordinary way, except that a new key whose old
/// row is a conflict is answered as a conflict too (never inserted alone).
#[allow(clippy::too_many_arguments)]
pub(super) async fn push_move(
    tx: &Transaction<'_>,
    schema: &Schema,
    table: &Table,
    by: &Pusher,
    rows: &[PushRow],
    i: usize,
    outcomes: &mut [Option<PushOutcome>],
) -> Result<bool, RemoteError> {
    let Some(old) = rows[i].moved_from.as_ref() else {
        return Ok(false);
    };
    let Some(j) = rows
        .iter()
        .position(|r| r.table == rows[i].table && &r.pk == old)
    else {
        return Ok(false);
    };
    // The old key written again after the change (a row inserted under
    // the key the change freed): its row follows, and is inserted after the
    // move the ordinary way.
    let recreated = rows[j].values.is_some();
    if outcomes[i].is_some() || outcomes[j].is_some() || (recreated && j < i) {
        return Ok(false);
    }
    let from = sql::qualified(&schema.pg_schema, &table.name);
    let keys = sql::key_values(table, vec![rows[i].pk.clone(), old.clone()]);
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    tx.query(&sql::lock_rows(&from, table, &keys), &params(&key_binds))
        .await
        .map_err(db(format!("locking rows of {}", table.name)))?;
    let mut state_params = params(&key_binds);
    state_params.push(&table.name);
    let states = tx
        .query(&sql::row_decisions(&from, table, &keys), &state_params)
        .await
        .map_err(db(format!("reading versions of {}", table.name)))?;
    let me = by.node.to_string();
    let mut decided = [None, None];
    for st in &states {
        let at = st.get::<_, i32>(0) as usize;
        let found = decision_of(st, by, &me);
        // Both halves are asked as writes of a row: the new key's as an
        // insert, the old key's as an update.
        let half = if at == 0 { i } else { j };
        let pushed = Pushed {
            expected: rows[half].expected,
            local_seq: rows[half].local_seq,
            delete: false,
        };
        if let Some(slot) = decided.get_mut(at) {
            *slot = Some(accept::decide(&pushed, &found, by));
        }
    }
    if decided[0] == Some(Acceptance::Write(Write::Insert))
        && decided[1] == Some(Acceptance::Conflict)
    {
        // A key change is one write: when its old row conflicts, the new
        // key is not inserted beside it (the children would stay under the
        // old key, and a moved-away row would be there twice). Both halves
        // come back as conflicts (the old one by the ordinary way); once
        // the node has settled them, the pair is pushed again as a move.
        let mut cache = Statements::new();
        if let Some(server) = fetch_current(tx, &from, table, &mut cache, &[&rows[i]])
            .await?
            .pop()
        {
            outcomes[i] = Some(PushOutcome::Conflict(server));
        }
        return Ok(false);
    }
    if decided
        != [
            Some(Acceptance::Write(Write::Insert)),
            Some(Acceptance::Write(Write::Update)),
        ]
    {
        return Ok(false);
    }
    // The versions written carry the pair's change number, so a retry
    // finds them already applied; a re-created old key's own (later)
    // number is left to its insert.
    let seq = if recreated {
        rows[i].local_seq.get()
    } else {
        rows[i].local_seq.get().max(rows[j].local_seq.get())
    };
    tx.execute(session::SET_LOCAL_SEQ, &[&seq.to_string()])
        .await
        .map_err(db("starting a push group"))?;
    // The key and the columns changed relative to the old row (the plan's
    // `changed`), so what the server assigned and the node never changed
    // stays.
    let Some((cols, _)) = by_columns(table, rows, vec![i], Write::Update).pop() else {
        return Ok(false);
    };
    let values = rows[i].values.as_deref().unwrap_or(&[]);
    let mut names = sql::key_names(table);
    names.extend(sql::value_names(&cols));
    let mut types: Vec<String> = (0..table.primary_key.len())
        .map(|k| sql::pk_type(table, k))
        .collect();
    types.extend(cols.iter().map(|&c| sql::assign_type(&table.columns[c].ty)));
    let mut cells = old.clone();
    cells.resize(table.primary_key.len(), Value::Null);
    cells.extend(
        cols.iter()
            .map(|&c| values.get(c).cloned().unwrap_or(Value::Null)),
    );
    let src = sql::source(false, &names, &types, vec![cells], 1);
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    let before = super::changes_so_far(tx, table).await?;
    tx.batch_execute(&session::savepoint_for("outpost_move", &table.name))
        .await
        .map_err(db("setting a savepoint"))?;
    let moved = tx
        .query(&sql::move_row(&from, table, &cols, &src), &params(&binds))
        .await;
    match moved {
        Ok(r) if r.len() == 1 => tx
            .batch_execute("RELEASE SAVEPOINT outpost_move")
            .await
            .map_err(db("releasing a savepoint"))?,
        Ok(_) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT outpost_move")
                .await
                .map_err(db("rolling back to a savepoint"))?;
            return Ok(false);
        }
        Err(e) => {
            if crate::error::is_connection_error(&e) || crate::error::is_transient(&e) {
                return Err(RemoteError::Db {
                    action: format!("moving a row of {}", table.name),
                    source: e,
                });
            }
            // Refused as an update: the ordinary way gives each half the
            // server's own answer.
            tx.batch_execute("ROLLBACK TO SAVEPOINT outpost_move")
                .await
                .map_err(db("rolling back to a savepoint"))?;
            tracing::debug!(table = %table.name, error = %describe(&e), "key change refused as an update");
            return Ok(false);
        }
    }
    if let Some(before) = before {
        super::unstamp(tx, table, before, vec![rows[i].pk.clone(), old.clone()]).await?;
    }
    let src = sql::key_values(table, vec![rows[i].pk.clone(), old.clone()]);
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    let mut p = params(&binds);
    p.push(&table.name);
    let versions = tx
        .query(&sql::written_versions(&from, table, &src), &p)
        .await
        .map_err(db(format!("reading versions of {}", table.name)))?;
    for v in versions {
        let half = if v.get::<_, i32>(0) == 0 { i } else { j };
        if half == j && recreated {
            continue;
        }
        outcomes[half] = Some(PushOutcome::Applied {
            version: Version(v.get(1)),
            row: stored_row(&v, table)?,
            tag: None,
        });
    }
    Ok(true)
}
