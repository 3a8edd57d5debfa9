//! Phase 3, bootstrap: each table copied from a snapshot of its own (the
//! table's snapshot cursor recorded with its rows), tables the server
//! changed skipped and listed for a copy after `setup`, rows with local
//! changes kept, a table cut mid-copy resumed after the last key it holds
//! (docs/protocol.md, "Bootstrap"). Part of the run (`super`).

use outpost_local::bootstrap::PartialCopy;

use super::*;

impl Engine {
    pub(super) async fn bootstrap(
        &self,
        conn: &mut SyncLink,
        options: &SyncOptions,
        resuming: bool,
        rebootstrap_tables: &[String],
        run: &mut RunState,
    ) -> Result<(), EngineError> {
        let mut done = self.with_replica(|r| r.bootstrap_begin()).await?;
        // A table `setup` added or rebuilt since is copied whatever an
        // earlier attempt (or a resync) recorded for it.
        // Tables an interrupted attempt left part-copied resume after the
        // last key they hold (docs/protocol.md, "Bootstrap").
        let mut partial = if resuming {
            self.with_replica(|r| r.bootstrap_partial()).await?
        } else {
            Default::default()
        };
        for table in rebootstrap_tables {
            done.remove(table);
            partial.remove(table);
        }
        // Tables finished by an interrupted attempt are kept only while the
        // changes after their snapshot are still in the log: the cursor
        // starts from the oldest snapshot, and a pruned change would never
        // reach them. Otherwise copy everything again.
        if let Some(oldest) = done
            .values()
            .chain(partial.values().map(|p| &p.cursor))
            .min()
            .copied()
            && self
                .bounded("reading the feed position", conn.feed_position(oldest))
                .await?
                .must_rebootstrap
        {
            tracing::warn!(%oldest, "changes after the interrupted bootstrap's snapshot were pruned; copying every table again");
            done.clear();
            partial.clear();
        }
        if resuming {
            tracing::info!(
                tables_done = done.len(),
                "resuming an interrupted bootstrap"
            );
        }
        let schema = self.schema();
        // Tables whose server definition no longer matches the snapshot are
        // not copied (their rows stay as they are) and stay listed for a
        // copy after `setup` (docs/protocol.md, "Schema changes").
        let mut skipped: Vec<String> = Vec::new();
        // One snapshot per table: each table records the snapshot it was
        // copied from, and a table whose copy the server refuses aborts
        // only its own (one round trip a table more than one snapshot for
        // all).
        for table in &schema.tables {
            if done.contains_key(&table.name) {
                continue;
            }
            if run.changed.contains_key(&table.name) {
                skipped.push(table.name.clone());
                continue;
            }
            let snapshot = self
                .bounded("starting the bootstrap snapshot", conn.bootstrap())
                .await?;
            // The table's snapshot cursor: the table is recorded as copied
            // from it (the replica's cursor becomes the oldest).
            let resume = partial
                .get(&table.name)
                .filter(|p| {
                    p.after.len() == table.primary_key.len()
                        && outpost_remote::feed::resumable(table)
                })
                .cloned();
            let started_copy = self
                .bounded(
                    "starting a table's copy",
                    snapshot.table(&schema, table, resume.as_ref().map(|p| p.after.as_slice())),
                )
                .await;
            let (table_cursor, total, scope, stream) = match started_copy {
                Ok(c) => (c.cursor, c.count, c.scope, c.rows),
                Err(EngineError::Remote(e))
                    if e.is_schema_drift() || e.changed_table().is_some() =>
                {
                    let e = e.in_table(&table.name);
                    tracing::warn!(error = %e, "a table's copy skipped");
                    run.changed.insert(table.name.clone(), e.to_string());
                    skipped.push(table.name.clone());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let total = total.max(0) as u64;
            // A resumed copy keeps the rows it holds and counts from them;
            // the table is recorded as copied from its first snapshot.
            let (first_cursor, before) = match &resume {
                Some(p) => {
                    tracing::info!(table = %table.name, rows = p.rows, "resuming a table's copy after the last key it holds");
                    (p.cursor.min(table_cursor), p.rows)
                }
                None => {
                    let name = table.name.clone();
                    self.with_replica(move |r| r.bootstrap_clear(&name)).await?;
                    (table_cursor, 0)
                }
            };
            let copy_scope = match &resume {
                Some(p) => p.scope.clone(),
                None => scope.clone(),
            };
            type Chunk = (Vec<Vec<Value>>, Option<Cursor>, Option<PartialCopy>);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
            let replica = self.inner.replica.clone();
            let name = table.name.clone();
            let writer = tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
                let mut guard = replica
                    .lock()
                    .map_err(|_| EngineError::Internal("the replica lock was poisoned".into()))?;
                while let Some((rows, done, progress)) = rx.blocking_recv() {
                    match (done, progress) {
                        (None, Some(p)) => guard.bootstrap_insert_partial(&name, &rows, &p)?,
                        (done, _) => guard.bootstrap_insert(&name, &rows, done)?,
                    }
                }
                Ok(())
            });
            let started = Instant::now();
            let mut copied: u64 = before;
            let mut chunk = Vec::with_capacity(BOOTSTRAP_CHUNK);
            let deadline = self.timeouts().round_trip;
            futures_util::pin_mut!(stream);
            let mut first = true;
            // One deadline per row would cost a timer each: the deadline
            // covers a chunk instead.
            let mut chunk_deadline = tokio::time::Instant::now() + deadline;
            loop {
                let row = match tokio::time::timeout_at(chunk_deadline, stream.next()).await {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(_) => return Err(stalled("copying a table", deadline)),
                };
                chunk.push(row?);
                if chunk.len() == BOOTSTRAP_CHUNK {
                    copied += chunk.len() as u64;
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(BOOTSTRAP_CHUNK));
                    let progress = full.last().map(|last| PartialCopy {
                        cursor: first_cursor,
                        after: table
                            .pk_positions()
                            .filter_map(|i| last.get(i).cloned())
                            .collect(),
                        rows: copied,
                        scope: copy_scope.clone(),
                    });
                    if tx.send((full, None, progress)).await.is_err() {
                        break;
                    }
                    chunk_deadline = tokio::time::Instant::now() + deadline;
                    if first {
                        first = false;
                        self.inner.faults.hit(FaultPoint::BootstrapMidTable)?;
                    }
                    self.report(
                        options,
                        Progress::Bootstrap {
                            table: table.name.clone(),
                            rows: copied,
                            total,
                            rows_per_sec: copied as f64 / started.elapsed().as_secs_f64().max(1e-9),
                        },
                    );
                }
            }
            copied += chunk.len() as u64;
            let _ = tx.send((chunk, Some(first_cursor), None)).await;
            drop(tx);
            writer.await.map_err(|e| {
                EngineError::Internal(format!("the bootstrap writer failed: {e}"))
            })??;
            // Resumed under another sync rule than it started with: its
            // rows are of two scopes, so the digest recorded is neither,
            // and the next pull copies the table again.
            let recorded = if copy_scope == scope {
                scope
            } else {
                Some("resumed under another rule".to_string())
            };
            let name = table.name.clone();
            self.with_replica(move |r| {
                r.record_scope(&name, recorded.as_deref())?;
                r.merge_copied_tags()
            })
            .await?;
            SyncMetrics::add(&self.inner.metrics.rows_bootstrapped, copied - before);
            self.report(
                options,
                Progress::Bootstrap {
                    table: table.name.clone(),
                    rows: copied,
                    total,
                    rows_per_sec: copied as f64 / started.elapsed().as_secs_f64().max(1e-9),
                },
            );
            tracing::info!(table = %table.name, rows = copied, secs = started.elapsed().as_secs_f64(), "table copied");
            // The snapshot ends when it is dropped here: a rollback of a
            // read-only transaction, sent ahead of the next request.
        }

        let cursor = self.with_replica(|r| r.bootstrap_finish()).await?;
        if !skipped.is_empty() {
            self.with_replica(move |r| r.defer_tables(&skipped)).await?;
        }
        self.bounded(
            "recording the cursor",
            conn.record_cursor(self.node_id(), cursor),
        )
        .await?;
        Ok(())
    }
}
