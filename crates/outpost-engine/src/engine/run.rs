//! The phases of a sync run, in order: connect (the kept connection when
//! it passes its check, else a new one, the node registered on it), push
//! (a ready replica's local writes first), bootstrap when needed (then push
//! again), pull. One state value ([`RunState`]) carries what the run did;
//! every server round trip is bounded (`Engine::bounded`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures_util::StreamExt as _;
use outpost_core::sync::{Cursor, PushOutcome, PushRow, Trigger, refused_parent};
use outpost_core::types::Value;
use outpost_local::push::InFlight;
use outpost_local::sync::{ReplicaState, Stats};
use outpost_remote::connections::SyncLink;
use outpost_remote::feed;

use super::{
    BOOTSTRAP_CHUNK, DEFAULT_RETENTION, Engine, PUSH_ROUNDS, Progress, RunState, SyncOptions,
    stalled,
};
use crate::error::EngineError;
use crate::faults::FaultPoint;
use crate::metrics::SyncMetrics;

mod copy;

/// The run's node-identity checks (`outpost_local::identity`).
pub(super) struct Identity {
    /// The server records incarnations (tracking version 4 or later).
    enabled: bool,
    /// This run claimed the file's incarnation already.
    claimed: bool,
}

impl Engine {
    /// Phase 1, connect: the kept connection when it passes its check, else
    /// a new one (the node registered on it); then the phases on it, and the
    /// connection kept for the next run only when this one succeeded.
    pub(super) async fn run(
        &self,
        options: &SyncOptions,
        run: &mut RunState,
    ) -> Result<(), EngineError> {
        let kept = self
            .inner
            .client
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .filter(SyncLink::is_open);
        // A kept connection is checked (alive, tracking schema there,
        // retention mark) in one round trip; anything unexpected and a new
        // connection checks step by step, saying what is wrong.
        let probed = match kept {
            Some(k) => match self
                .bounded("checking the kept connection", k.probe())
                .await
            {
                Ok((Some(version), pruned)) => Some((k, version, pruned)),
                _ => None,
            },
            None => None,
        };
        let (mut kept, version, pruned_through, reused) = match probed {
            Some((k, version, pruned)) => (k, Some(version), Some(pruned), true),
            None => {
                let conn = self.connect().await?;
                let version = self
                    .bounded(
                        "reading the tracking schema's version",
                        conn.installed_version(),
                    )
                    .await?;
                (conn, version, None, false)
            }
        };
        if version.is_none() {
            return Err(EngineError::Config(
                "the server has no outpost tracking schema: run `outpost server install` (or `outpost setup`) first".into(),
            ));
        }
        if !reused {
            // Registered by the run that opened this connection.
            self.register(&kept).await?;
        }
        // Servers before tracking version 4 have no incarnations: the
        // identity checks wait for `outpost server upgrade`.
        let mut identity = Identity {
            enabled: version.is_some_and(|v| v >= 4),
            claimed: false,
        };
        // Said once per process, not at every run.
        static OLD_SERVER_SAID: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        if !identity.enabled && !OLD_SERVER_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "the server's tracking schema predates node incarnations: restored or copied replicas are not detected until `outpost server upgrade`"
            );
        }
        self.run_on(&mut kept, pruned_through, &mut identity, options, run)
            .await?;
        if let Ok(mut slot) = self.inner.client.lock() {
            *slot = Some(kept);
        }
        Ok(())
    }

    /// The phases on a checked connection: 2 push (a ready replica's local
    /// writes go first), 3 bootstrap when needed (then push again), 4 pull.
    /// `pruned_through` is the retention mark when the check read it
    /// already.
    async fn run_on(
        &self,
        conn: &mut SyncLink,
        pruned_through: Option<Option<Cursor>>,
        identity: &mut Identity,
        options: &SyncOptions,
        run: &mut RunState,
    ) -> Result<(), EngineError> {
        let (cursor, state) = self.with_replica(|r| r.cursor()).await?;
        let rebootstrap_tables = self.with_replica(|r| r.rebootstrap_tables()).await?;
        let behind = state == ReplicaState::Ready
            && match pruned_through {
                Some(mark) => feed::FeedPosition::at(cursor, mark).must_rebootstrap,
                None => {
                    self.bounded("reading the feed position", conn.feed_position(cursor))
                        .await?
                        .must_rebootstrap
                }
            };
        if state == ReplicaState::Ready && options.direction.pushes() {
            // Push before any re-bootstrap: local writes go first.
            self.push(conn, identity, options, run).await?;
        }
        let full = state != ReplicaState::Ready || behind;
        if full || !rebootstrap_tables.is_empty() {
            if behind {
                tracing::warn!(%cursor, "the node fell behind the server's retention window; bootstrapping again");
            }
            let resuming = if full {
                state == ReplicaState::Bootstrapping
            } else {
                // Tables a `setup` added or rebuilt: copied alone, the
                // others recorded as copied at the cursor (as a resync).
                tracing::info!(tables = ?rebootstrap_tables, "copying the tables setup added or rebuilt");
                let tables = rebootstrap_tables.clone();
                self.with_replica(move |r| r.recopy_begin(&tables)).await?;
                true
            };
            self.bootstrap(conn, options, resuming, &rebootstrap_tables, run)
                .await?;
            run.bootstrapped = true;
            if options.direction.pushes() {
                self.push(conn, identity, options, run).await?;
            }
        }
        if options.direction.pulls() && identity.enabled && !identity.claimed {
            // Before a pull: a restored or copied replica must not take the
            // server's versions from another history of the file as the
            // base of its own edits. Without local edits there is nothing
            // to mistake (and an empty run pays no round trip); a run that
            // pushed has claimed already.
            if self.with_replica(|r| r.has_local_edits()).await? {
                self.claim_identity(conn, false).await?;
                identity.claimed = true;
            }
        }
        if options.direction.pulls() {
            let mut pulled = self.pull_around_changes(conn, options, run).await?;
            if pulled.pruned {
                // Pruned between the check above and the pull's snapshot:
                // the gap is never pulled, so copy again now (local changes
                // are kept) and pull from the new cursor.
                tracing::warn!(
                    "changes past the replica's cursor were pruned during the run; bootstrapping again"
                );
                self.bootstrap(conn, options, false, &rebootstrap_tables, run)
                    .await?;
                run.bootstrapped = true;
                pulled = self.pull_around_changes(conn, options, run).await?;
                if pulled.pruned {
                    return Err(EngineError::Internal(
                        "the change log was pruned past the replica's cursor twice in one run; the next sync copies the server again".into(),
                    ));
                }
            }
            if !pulled.rescoped.is_empty() {
                // The gateway filters these tables by another rule (or for
                // other claims) than when they were copied: rows may have
                // moved in or out without a change of their own. Copy them
                // again now, as a resync does (rows with local changes are
                // kept; their push says what the rules refuse). Listed
                // first, so an interrupted copy is taken up by the next run;
                // once per run, so gateways that disagree cannot loop it.
                let tables: Vec<String> =
                    std::mem::take(&mut pulled.rescoped).into_iter().collect();
                tracing::info!(tables = ?tables, "the sync rules of these tables changed; copying them again");
                // With any table still waiting for a copy, as at the
                // start of a run.
                let (state, listed) = self
                    .with_replica(move |r| {
                        r.defer_tables(&tables)?;
                        let listed = r.rebootstrap_tables()?;
                        Ok::<_, outpost_local::LocalError>((r.recopy_begin(&listed)?, listed))
                    })
                    .await?;
                if state.is_none() {
                    self.bootstrap(conn, options, true, &listed, run).await?;
                    run.bootstrapped = true;
                    if options.direction.pushes() {
                        self.push(conn, identity, options, run).await?;
                    }
                    pulled = self.pull_around_changes(conn, options, run).await?;
                }
            }
            run.held_back = pulled.held_back;
        }
        Ok(())
    }

    /// Registers the node on `conn`. A gateway that holds the node id
    /// under another principal (a shared device whose user signed in with
    /// another token) answers `node_of_another_principal`: a replica with
    /// no local edits then continues as a new node under this token
    /// (`Replica::become_new_node`), and the pull that follows copies again
    /// every table whose scope differs under the new claims (the rule
    /// digests, docs/gateway.md "Changing principal"). A replica holding
    /// edits made under the other principal is refused, saying which: they
    /// were made by that user and are not pushed under another's name.
    async fn register(&self, conn: &SyncLink) -> Result<(), EngineError> {
        let node = self.node_id();
        let name = format!("node {node}");
        let refusal = match self
            .bounded("registering the node", conn.register_node(node, &name))
            .await
        {
            Ok(_) => return self.record_principal().await,
            Err(EngineError::Remote(e)) if is_another_principal(&e) => e,
            Err(e) => return Err(e),
        };
        let held = self.with_replica(|r| r.held_edits()).await?;
        if !held.is_empty() {
            let said: Vec<String> = held.iter().map(|(s, n)| format!("{n} {s}")).collect();
            let mut refusal = refusal;
            if let outpost_remote::RemoteError::Gateway { message, .. } = &mut refusal {
                *message = format!(
                    "this replica was registered by another principal than this token's, and it \
                     holds local edits made under that principal ({}): they are not pushed under \
                     another user's name. Sync once more with the former token, or settle them \
                     (retry or discard failed rows, resolve conflicts), then sync with this token; \
                     the replica works offline meanwhile and nothing was changed",
                    said.join(", ")
                );
            }
            return Err(refusal.into());
        }
        let new = self.with_replica(|r| r.become_new_node()).await?;
        self.set_node_id(new);
        tracing::warn!(
            old = %node,
            new = %new,
            "this replica was registered by another principal than this token's: it has no local \
             edits, so it continues as a new node under this token, and tables whose scope differs \
             are copied again"
        );
        self.bounded(
            "registering the node",
            conn.register_node(new, &format!("node {new}")),
        )
        .await?;
        self.record_principal().await
    }

    /// Records the token's principal in the replica after it registered
    /// (so a later token of another user is noticed as the engine opens).
    async fn record_principal(&self) -> Result<(), EngineError> {
        let Some(sub) = self.inner.config.gateway.as_ref().and_then(|g| g.subject()) else {
            return Ok(());
        };
        self.with_replica(move |r| {
            if r.principal()?.as_deref() != Some(sub.as_str()) {
                r.set_principal(&sub)?;
            }
            Ok::<_, outpost_local::LocalError>(())
        })
        .await?;
        Ok(())
    }

    /// Checks that this replica file is the one the server last heard from
    /// under this node id (`outpost_local::identity`), first starting a new
    /// incarnation when `rotate`. A file the server does not recognise (a
    /// restored backup, a copy running elsewhere) becomes a new node and
    /// claims again under its new id; its pending edits stay queued and are
    /// compared with the server's rows like any other writer's.
    async fn claim_identity(&self, conn: &SyncLink, rotate: bool) -> Result<(), EngineError> {
        let known = if rotate {
            self.with_replica(|r| r.rotate_incarnation()).await?
        } else {
            self.with_replica(|r| r.incarnations()).await?
        };
        let mut known = known;
        // Twice: another process on the same file may have started an
        // incarnation (and claimed it) since this one read the list.
        for attempt in 0..2 {
            let node = self.node_id();
            let Some(&current) = known.last() else {
                return Err(EngineError::Internal(
                    "the replica has no incarnation".into(),
                ));
            };
            match self
                .bounded(
                    "claiming the node's incarnation",
                    conn.claim_incarnation(node, current, &known),
                )
                .await?
            {
                feed::Claim::Claimed => return Ok(()),
                feed::Claim::Diverged { server } if attempt == 0 => {
                    tracing::debug!(%node, %server, "incarnation not known; reading the file's again");
                    self.refresh().await?;
                    known = self.with_replica(|r| r.incarnations()).await?;
                }
                feed::Claim::Diverged { server } => {
                    let new = self.with_replica(|r| r.become_new_node()).await?;
                    self.set_node_id(new);
                    tracing::warn!(
                        old = %node,
                        new = %new,
                        %server,
                        "this replica is not the file the server last heard from under its node id \
                         (a restored backup, or a copy running elsewhere): it continues as a new node, \
                         its pending edits kept"
                    );
                    let known = self.with_replica(|r| r.incarnations()).await?;
                    let Some(&current) = known.last() else {
                        return Err(EngineError::Internal(
                            "the replica has no incarnation".into(),
                        ));
                    };
                    return match self
                        .bounded(
                            "claiming the node's incarnation",
                            conn.claim_incarnation(new, current, &known),
                        )
                        .await?
                    {
                        feed::Claim::Claimed => Ok(()),
                        feed::Claim::Diverged { .. } => Err(EngineError::Internal(
                            "a new node id was already claimed on the server".into(),
                        )),
                    };
                }
            }
        }
        Ok(())
    }

    /// Phase 2, push, pipelined: while the server applies batch N, the
    /// replica takes batch N−1's acknowledgement and then plans batch N+1,
    /// leaving N's rows out (they are `PENDING` until acknowledged). Batches
    /// are still sent one at a time, in order, on one connection, so every
    /// rule of a single batch holds; a crash or a lost reply leaves at most
    /// two batches committed and unacknowledged, and their retry is
    /// recognised as already applied (docs/protocol.md, "Push").
    async fn push(
        &self,
        conn: &mut SyncLink,
        identity: &mut Identity,
        options: &SyncOptions,
        run: &mut RunState,
    ) -> Result<(), EngineError> {
        let policies = self.policies();
        let mut sent: u64 = 0;
        // Rounds in a row in which no row left the queue (every row was
        // only queued again, merged by a conflict policy).
        let mut requeued_only = 0;
        // Rows the server refused in earlier rounds of this run: a row of a
        // later round that references one is not sent (the server would
        // refuse it with a bare foreign-key error) but fails saying which.
        let mut refused: (Vec<PushRow>, Vec<Option<PushOutcome>>) = (Vec::new(), Vec::new());
        let mut next = self.plan_batch(options, run, InFlight::default()).await?;
        // The batch sent last and its outcomes, not acknowledged yet.
        let mut unacked: Option<(Vec<PushRow>, Vec<PushOutcome>)> = None;
        // A backstop, as before: a run pushes at most this many batches (an
        // application writing as fast as the push drains keeps the rest
        // for the next run).
        for _round in 0..PUSH_ROUNDS * 100 {
            let mut rows = std::mem::take(&mut next);
            // Rows of tables the server changed stay queued for after
            // `setup` (docs/protocol.md, "Schema changes").
            rows.retain(|r| !run.changed.contains_key(&r.table));
            if rows.is_empty() {
                // Nothing was planned beside the last batch, or only rows
                // of tables found changed since: settle what is out and
                // read the queue afresh.
                if let Some(batch) = unacked.take() {
                    let acked = self.ack_batch(batch, &policies).await?;
                    merge(&mut run.stats, acked);
                }
                rows = self.plan_batch(options, run, InFlight::default()).await?;
                if rows.is_empty() {
                    break;
                }
            }
            let (cursor, _) = self.with_replica(|r| r.cursor()).await?;
            let in_flight = InFlight::of(&rows);
            let previous = unacked.take();
            let models = self.models_except(options, &run.changed);
            let sending = Instant::now();
            let remote = async {
                if identity.enabled {
                    // A new incarnation after the rows were read: everything
                    // pushed under it is in any backup that knows it.
                    self.claim_identity(conn, true).await?;
                    identity.claimed = true;
                }
                self.inner.faults.hit(FaultPoint::PushBeforeSend)?;
                let outcomes = self
                    .send_batch(conn, cursor, &mut rows, &refused, &mut run.changed)
                    .await?;
                let send_time = sending.elapsed();
                if !rows.is_empty() {
                    // The server committed; a crash or a lost reply here
                    // must not make the retry apply anything twice.
                    self.inner.faults.hit(FaultPoint::PushAfterCommit)?;
                }
                Ok::<_, EngineError>((outcomes, send_time))
            };
            let local = async {
                let started = Instant::now();
                let acked = match previous {
                    Some(batch) => Some(self.ack_batch(batch, &policies).await?),
                    None => None,
                };
                let planned = self.plan_rows(models, in_flight).await?;
                Ok::<_, EngineError>((acked, planned, started.elapsed()))
            };
            let (remote, local) = tokio::join!(remote, local);
            // What the replica did is kept even when the send failed.
            let (acked, local_time) = match local {
                Ok((acked, (planned, refused_here), local_time)) => {
                    // Rows refused before sending (a local value that cannot
                    // be sent for its column) count as failed rows of the run.
                    merge(&mut run.stats, refused_here);
                    next = planned;
                    (acked, local_time)
                }
                Err(e) => return remote.and(Err(e)),
            };
            let (outcomes, send_time) = remote?;
            if let Some(acked) = acked {
                // A row moved when it left the queue: landed, refused, or
                // parked as a conflict. A merged row goes out again; when
                // rounds only queue rows again, the run stops after
                // PUSH_ROUNDS of them (the next run tries again).
                let moved: u64 = acked
                    .values()
                    .map(|s| s.records_succeeded + s.records_failed + s.conflicts)
                    .sum();
                merge(&mut run.stats, acked);
                if moved == 0 {
                    requeued_only += 1;
                } else {
                    requeued_only = 0;
                }
            }
            if !rows.is_empty() {
                for (r, o) in rows.iter().zip(&outcomes) {
                    if matches!(o, PushOutcome::Failed { .. }) && r.values.is_some() {
                        refused.0.push(r.clone());
                        refused.1.push(Some(o.clone()));
                    }
                }
                sent += rows.len() as u64;
                let landed = outcomes
                    .iter()
                    .filter(|o| {
                        matches!(
                            o,
                            PushOutcome::Applied { .. } | PushOutcome::AlreadyApplied { .. }
                        )
                    })
                    .count();
                SyncMetrics::add(&self.inner.metrics.rows_pushed, landed as u64);
                self.report(options, Progress::Push { rows: sent });
                tracing::debug!(
                    rows = sent,
                    batch = rows.len(),
                    send_ms = send_time.as_millis() as u64,
                    ack_and_plan_ms = local_time.as_millis() as u64,
                    "push batch sent"
                );
                unacked = Some((rows, outcomes));
            }
            if requeued_only >= PUSH_ROUNDS {
                break;
            }
        }
        if let Some(batch) = unacked.take() {
            let acked = self.ack_batch(batch, &policies).await?;
            merge(&mut run.stats, acked);
        }
        Ok(())
    }

    /// The next batch to push, without the rows `in_flight` and the tables
    /// the server changed; rows refused locally are counted in the run.
    async fn plan_batch(
        &self,
        options: &SyncOptions,
        run: &mut RunState,
        in_flight: InFlight,
    ) -> Result<Vec<PushRow>, EngineError> {
        let models = self.models_except(options, &run.changed);
        let (rows, refused_here) = self.plan_rows(models, in_flight).await?;
        merge(&mut run.stats, refused_here);
        Ok(rows)
    }

    /// The next batch of `models` (`None`: all) without the rows
    /// `in_flight`, and the rows refused locally while reading it.
    async fn plan_rows(
        &self,
        models: Option<Vec<String>>,
        in_flight: InFlight,
    ) -> Result<(Vec<PushRow>, Stats), EngineError> {
        let batch = self
            .inner
            .push_batch
            .load(std::sync::atomic::Ordering::Relaxed);
        self.with_replica(move |r| r.pending_push(models.as_deref(), batch, &in_flight))
            .await
    }

    /// Takes a sent batch's outcomes into the replica.
    async fn ack_batch(
        &self,
        (rows, outcomes): (Vec<PushRow>, Vec<PushOutcome>),
        policies: &outpost_local::Policies,
    ) -> Result<Stats, EngineError> {
        self.inner.faults.hit(FaultPoint::PushBeforeAck)?;
        let p = policies.clone();
        let acking = Instant::now();
        let acked = self
            .with_replica(move |r| r.ack_push(&rows, &outcomes, &p))
            .await?;
        tracing::debug!(
            ack_ms = acking.elapsed().as_millis() as u64,
            "push batch acknowledged"
        );
        Ok(acked)
    }

    /// Sends one batch and returns an outcome per row of `rows`: a row
    /// whose parent the server refused earlier in the run (`refused`) fails
    /// without being sent. A table the server changed (nothing of the batch
    /// was applied) is recorded in `changed` and its rows are taken out of
    /// `rows` (they stay queued), and the rest is sent again.
    async fn send_batch(
        &self,
        conn: &mut SyncLink,
        cursor: Cursor,
        rows: &mut Vec<PushRow>,
        refused: &(Vec<PushRow>, Vec<Option<PushOutcome>>),
        changed: &mut BTreeMap<String, String>,
    ) -> Result<Vec<PushOutcome>, EngineError> {
        let schema = self.schema();
        // Rows planned before a reload of the schema snapshot (another
        // process's `setup`, seen by the identity check or a model write)
        // are not sent under the new snapshot: the run ends and the next
        // one plans them again (`LocalError::SchemaChanged`).
        let fits = |r: &PushRow| {
            schema
                .table(&r.table)
                .is_some_and(|t| r.shape_mismatch(t).is_none())
        };
        if !rows.iter().all(fits) {
            return Err(EngineError::Local(outpost_local::LocalError::SchemaChanged));
        }
        loop {
            let held: Vec<Option<PushOutcome>> = rows
                .iter()
                .map(|r| {
                    let t = schema.table(&r.table)?;
                    refused_parent(&schema, t, r, &refused.0, &refused.1)
                        .map(|message| PushOutcome::Failed { message })
                })
                .collect();
            let to_send: Vec<PushRow> = rows
                .iter()
                .zip(&held)
                .filter(|(_, h)| h.is_none())
                .map(|(r, _)| r.clone())
                .collect();
            let sent = if to_send.is_empty() {
                Vec::new()
            } else {
                let t = self.timeouts();
                match self
                    .bounded(
                        "pushing a batch",
                        conn.push(
                            &schema,
                            self.node_id(),
                            cursor,
                            &to_send,
                            (t.statement, t.lock),
                        ),
                    )
                    .await
                {
                    Ok(outcomes) => outcomes,
                    Err(EngineError::Remote(e)) if e.changed_table().is_some() => {
                        let table = e.changed_table().unwrap_or_default().to_string();
                        tracing::warn!(error = %e, "a table's local edits held back");
                        rows.retain(|r| r.table != table);
                        changed.insert(table, e.to_string());
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            let mut sent = sent.into_iter();
            return Ok(held
                .into_iter()
                .map(|h| {
                    h.or_else(|| sent.next()).unwrap_or(PushOutcome::Failed {
                        message: "not processed".into(),
                    })
                })
                .collect());
        }
    }

    /// The pull, without the tables whose server definition no longer
    /// matches the snapshot: such a table found by a batch is listed for a
    /// copy after `setup` (its changes are skipped meanwhile) and the pull
    /// goes on without it (docs/protocol.md, "Schema changes").
    async fn pull_around_changes(
        &self,
        conn: &mut SyncLink,
        options: &SyncOptions,
        run: &mut RunState,
    ) -> Result<Pulled, EngineError> {
        let waiting = self.with_replica(|r| r.rebootstrap_tables()).await?;
        // Tables this run's push or copy found changed are listed before the
        // cursor moves past their changes (which also stops their edits'
        // bases from reading as covered by it).
        let unlisted: Vec<String> = run
            .changed
            .keys()
            .filter(|t| !waiting.contains(t))
            .cloned()
            .collect();
        if !unlisted.is_empty() {
            self.with_replica(move |r| r.defer_tables(&unlisted))
                .await?;
        }
        let mut excluded: BTreeMap<String, String> = run.changed.clone();
        for t in waiting {
            excluded.entry(t).or_default();
        }
        loop {
            let tables = self.models_except(options, &excluded);
            match self.pull(conn, options, &mut run.stats, tables).await {
                Err(EngineError::Remote(e)) if e.changed_table().is_some() => {
                    let table = e.changed_table().unwrap_or_default().to_string();
                    tracing::warn!(error = %e, "a table's changes are skipped until setup");
                    let list = vec![table.clone()];
                    self.with_replica(move |r| r.defer_tables(&list)).await?;
                    excluded.insert(table.clone(), e.to_string());
                    run.changed.insert(table, e.to_string());
                }
                other => return other,
            }
        }
    }

    /// The models a phase works on: the run's (all when it names none)
    /// without `except`; `None` (every table) when nothing is left out.
    fn models_except(
        &self,
        options: &SyncOptions,
        except: &BTreeMap<String, String>,
    ) -> Option<Vec<String>> {
        if except.is_empty() {
            return options.models.clone();
        }
        let all = self.run_models(options);
        Some(
            all.into_iter()
                .filter(|t| !except.contains_key(t))
                .collect(),
        )
    }

    /// The models a run works on: those it names, or every table.
    pub(super) fn run_models(&self, options: &SyncOptions) -> Vec<String> {
        match &options.models {
            Some(m) => m.clone(),
            None => self
                .schema()
                .tables
                .iter()
                .map(|t| t.name.clone())
                .collect(),
        }
    }

    async fn pull(
        &self,
        conn: &mut SyncLink,
        options: &SyncOptions,
        stats: &mut Stats,
        tables: Option<Vec<String>>,
    ) -> Result<Pulled, EngineError> {
        let policies = self.policies();
        let (mut cursor, _) = self.with_replica(|r| r.cursor()).await?;
        let advance = options.models.is_none();
        let mut applied: u64 = 0;
        let mut held_back = false;
        let schema = &*self.schema();
        let models = tables.as_deref();
        let recorded = self.with_replica(|r| r.scopes()).await?;
        let mut rescoped = BTreeSet::new();
        // The read of the next batch overlaps the SQLite apply of this one
        // (the server and the replica work at the same time; B3). The read
        // only needs the cursor the current batch ends at, and batches are
        // still applied strictly in order, each with its own cursor.
        let reading = Instant::now();
        let limit = self
            .inner
            .pull_batch
            .load(std::sync::atomic::Ordering::Relaxed);
        let first = self
            .bounded("pulling a batch", conn.pull(schema, cursor, limit, models))
            .await?;
        let mut ahead = Some((first, reading.elapsed()));
        while let Some((mut batch, read_time)) = ahead.take() {
            if batch.pruned {
                // Nothing of it is applied, and the cursor stays where the
                // replica's rows are.
                return Ok(Pulled {
                    held_back: batch.held_back,
                    pruned: true,
                    rescoped,
                });
            }
            rescoped.extend(rescoped_tables(schema, models, &recorded, &batch.scopes));
            // Deletions that crossed as tags alone name this replica's
            // rows by the tags it kept, or none of its rows at all.
            let mut orphaned = BTreeSet::new();
            if batch
                .rows
                .iter()
                .any(outpost_core::sync::ServerRow::key_withheld)
            {
                let dropped;
                (batch, dropped) = self
                    .with_replica(move |r| {
                        let dropped = r.resolve_withheld(&mut batch)?;
                        Ok((batch, dropped))
                    })
                    .await?;
                if !dropped.is_empty() {
                    tracing::debug!(?dropped, "changes of rows this replica never held");
                }
                orphaned.extend(dropped.into_keys());
            }
            // Through a gateway with rules: rows under the batch's changes
            // that left the scope with them, asked before the apply; and
            // rows held without their parent when a parent's change was
            // dropped above (it may have been theirs).
            let moved_out = self.moved_out(conn, schema, &batch, &orphaned).await?;
            self.inner.faults.hit(FaultPoint::PullBeforeApply)?;
            let next = batch.cursor;
            let more = batch.more;
            let (changes, rows) = (batch.changes, batch.rows.len());
            held_back = batch.held_back;
            applied += batch.changes as u64;
            SyncMetrics::add(&self.inner.metrics.rows_pulled, batch.changes as u64);
            let p = policies.clone();
            let applying = Instant::now();
            let apply = async {
                let got = self
                    .with_replica(move |r| r.apply_pull(&batch, &p, advance))
                    .await;
                (got, applying.elapsed())
            };
            // Both run to the end (`join`, not `select`): an apply is never
            // abandoned half-way, and its error wins over the read's.
            let ((got, apply_time), read) = if more {
                let read = async {
                    let reading = Instant::now();
                    let batch = self
                        .bounded("pulling a batch", conn.pull(schema, next, limit, models))
                        .await;
                    batch.map(|b| (b, reading.elapsed()))
                };
                let (applied, read) = tokio::join!(apply, read);
                (applied, Some(read))
            } else {
                (apply.await, None)
            };
            merge(stats, got?);
            if !moved_out.is_empty() {
                self.remove_moved_out(moved_out, stats).await?;
            }
            tracing::debug!(
                changes,
                rows,
                read_ms = read_time.as_millis() as u64,
                apply_ms = apply_time.as_millis() as u64,
                "pull batch applied"
            );
            self.report(options, Progress::Pull { changes: applied });
            cursor = next;
            ahead = read.transpose()?;
        }
        if advance {
            self.bounded(
                "recording the cursor",
                conn.record_cursor(self.node_id(), cursor),
            )
            .await?;
        }
        // A notification-driven pull skips the prune: it runs after every
        // server commit (B5), and the other runs (manual, interval,
        // reconnect) prune often enough.
        if advance && options.trigger != Trigger::Notify {
            let retention = self
                .inner
                .retention
                .lock()
                .map(|r| *r)
                .unwrap_or(DEFAULT_RETENTION);
            let pruned = self
                .bounded("pruning the change log", conn.prune(retention))
                .await?;
            if pruned > 0 {
                tracing::debug!(pruned, "pruned the change log");
            }
        }
        Ok(Pulled {
            held_back,
            pruned: false,
            rescoped,
        })
    }
}

/// The tables a pull covered (`models`, or every table) whose sync-rule
/// digest in the answer (`served`; absent: whole) differs from the one the
/// replica copied them under (`recorded`; absent: whole).
fn rescoped_tables(
    schema: &outpost_core::schema::Schema,
    models: Option<&[String]>,
    recorded: &BTreeMap<String, String>,
    served: &BTreeMap<String, String>,
) -> Vec<String> {
    if recorded.is_empty() && served.is_empty() {
        return Vec::new();
    }
    let covered: Vec<&str> = match models {
        Some(m) => m.iter().map(String::as_str).collect(),
        None => schema.tables.iter().map(|t| t.name.as_str()).collect(),
    };
    covered
        .into_iter()
        .filter(|t| recorded.get(*t) != served.get(*t))
        .map(str::to_string)
        .collect()
}

/// How a pull ended.
struct Pulled {
    /// Committed changes past the horizon wait for an open transaction.
    held_back: bool,
    /// Changes past the cursor were pruned before the pull read them
    /// (nothing applied): the replica must be copied again.
    pruned: bool,
    /// Tables whose sync rule changed since the replica copied them
    /// ([`outpost_core::sync::PullBatch::scopes`]): copied again.
    rescoped: BTreeSet<String>,
}

fn merge(into: &mut Stats, from: Stats) {
    for (k, v) in from {
        into.entry(k).or_default().add(v);
    }
}

/// The gateway's answer that the node id belongs to another principal.
fn is_another_principal(e: &outpost_remote::RemoteError) -> bool {
    matches!(e, outpost_remote::RemoteError::Gateway { code, .. } if code == "node_of_another_principal")
}
