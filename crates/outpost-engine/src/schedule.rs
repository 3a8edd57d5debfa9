//! The node's sync scheduler: one task that owns the running sync. Every
//! request (a manual sync, the monitor's reconnect, interval and
//! notification syncs) is a message to it; whoever waits for a result gets
//! it through a channel.
//!
//! * Syncs never overlap.
//! * A manual request of every model joins the running sync when that sync
//!   covers its direction (the same, or bidirectional).
//! * Any other request while a sync runs waits for the next run, joining a
//!   queued one that covers it: the running sync may have read the server
//!   before the change that caused the request.
//! * A pull that found committed changes held back by an open server
//!   transaction is tried again shortly (10 ms doubling to 1 s) until
//!   nothing is held back, unless it was a manual run.
//! * At shutdown the running sync finishes (a sync commits or rolls back as
//!   a whole), queued requests are answered with an error, and the task
//!   ends.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::future::{BoxFuture, OptionFuture};
use outpost_core::sync::{Direction, Trigger};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::engine::{SyncOptions, SyncReport};

/// What a waiting caller receives: the report, or why the run could not
/// start (the message of the engine's error).
pub(crate) type SyncResult = Result<SyncReport, String>;

/// A request to the scheduler; `reply` is `None` for a caller that does not
/// wait (the monitor).
pub(crate) struct Request {
    pub(crate) options: SyncOptions,
    pub(crate) reply: Option<oneshot::Sender<SyncResult>>,
}

/// A run, queued or running, and who waits for it.
struct Run {
    options: SyncOptions,
    replies: Vec<oneshot::Sender<SyncResult>>,
    /// Started by the held-back retry.
    retry: bool,
}

impl Run {
    /// Whether a request with `options` can take this run's result.
    fn covers(&self, options: &SyncOptions) -> bool {
        let direction = self.options.direction == options.direction
            || self.options.direction == Direction::Bidirectional;
        let models = self.options.models.is_none() || self.options.models == options.models;
        direction && models
    }
}

/// The first delay of the held-back retry, and its longest.
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The scheduler task (module doc).
pub(crate) async fn scheduler(
    run: impl Fn(SyncOptions) -> BoxFuture<'static, SyncResult> + Send + 'static,
    cancel: CancellationToken,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut queue: VecDeque<Run> = VecDeque::new();
    let mut running: Option<(Run, BoxFuture<'static, SyncResult>)> = None;
    // The held-back retry: when the next one is due, and its delay.
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    loop {
        if running.is_none()
            && let Some(next) = queue.pop_front()
        {
            let fut = run(next.options.clone());
            running = Some((next, fut));
        }
        if running.is_none() && cancel.is_cancelled() {
            break;
        }
        let due = retry.map(|(at, _)| at);
        tokio::select! {
            done = OptionFuture::from(running.as_mut().map(|(_, f)| f)) , if running.is_some() => {
                let Some(result) = done else { continue };
                let Some((finished, _)) = running.take() else { continue };
                retry = next_retry(&finished, &result, retry);
                for reply in finished.replies {
                    let _ = reply.send(result.clone());
                }
            }
            request = requests.recv(), if !cancel.is_cancelled() => {
                let Some(request) = request else { break };
                admit(request, running.as_mut().map(|(r, _)| r), &mut queue);
            }
            _ = sleep_until(due), if due.is_some() && running.is_none() && !cancel.is_cancelled() => {
                let options = SyncOptions::new(Direction::FromServer, Trigger::Notify);
                queue.push_back(Run { options, replies: Vec::new(), retry: true });
                retry = retry.map(|(_, delay)| (far_future(), delay));
            }
            _ = cancel.cancelled(), if running.is_none() => break,
        }
    }
    // Shutting down: nothing queued will run.
    requests.close();
    let pending = queue.into_iter().flat_map(|r| r.replies);
    let late = std::iter::from_fn(|| requests.try_recv().ok()).filter_map(|r| r.reply);
    for reply in pending.chain(late) {
        let _ = reply.send(Err("the node is shutting down".into()));
    }
}

/// Joins a request to the running or a queued run that covers it, or
/// queues a new run.
fn admit(request: Request, running: Option<&mut Run>, queue: &mut VecDeque<Run>) {
    let Request { options, reply } = request;
    let join_running = options.trigger == Trigger::Manual && options.models.is_none();
    let target = match running {
        Some(r) if join_running && r.covers(&options) => Some(r),
        _ => queue.iter_mut().find(|q| q.covers(&options)),
    };
    match target {
        Some(run) => run.replies.extend(reply),
        None => queue.push_back(Run {
            options,
            replies: reply.into_iter().collect(),
            retry: false,
        }),
    }
}

/// The held-back retry after a run: started by a run that was not manual
/// and found changes held back, continued (with a doubled delay) by its
/// own runs while changes stay held back, ended otherwise.
fn next_retry(
    finished: &Run,
    result: &SyncResult,
    retry: Option<(tokio::time::Instant, Duration)>,
) -> Option<(tokio::time::Instant, Duration)> {
    let held_back = matches!(result, Ok(r) if r.success && r.held_back);
    let now = tokio::time::Instant::now();
    if finished.retry {
        let (_, delay) = retry?;
        if !held_back {
            return None;
        }
        let delay = (delay * 2).min(RETRY_MAX);
        return Some((now + delay, delay));
    }
    if held_back && finished.options.trigger != Trigger::Manual && retry.is_none() {
        return Some((now + RETRY_FIRST, RETRY_FIRST));
    }
    retry
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600 * 24 * 365)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    tokio::time::sleep_until(at.unwrap_or_else(far_future)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(direction: Direction, trigger: Trigger) -> Run {
        Run {
            options: SyncOptions::new(direction, trigger),
            replies: Vec::new(),
            retry: false,
        }
    }

    fn request(direction: Direction, trigger: Trigger) -> (Request, oneshot::Receiver<SyncResult>) {
        let (tx, rx) = oneshot::channel();
        (
            Request {
                options: SyncOptions::new(direction, trigger),
                reply: Some(tx),
            },
            rx,
        )
    }

    #[test]
    fn manual_requests_join_a_covering_run_others_wait_for_the_next() {
        let mut running = run_of(Direction::Bidirectional, Trigger::Interval);
        let mut queue = VecDeque::new();
        // A manual pull joins the running bidirectional run.
        let (r, _rx1) = request(Direction::FromServer, Trigger::Manual);
        admit(r, Some(&mut running), &mut queue);
        assert_eq!(running.replies.len(), 1);
        assert!(queue.is_empty());
        // A notification waits for the next run…
        let (r, _rx2) = request(Direction::FromServer, Trigger::Notify);
        admit(r, Some(&mut running), &mut queue);
        assert_eq!(queue.len(), 1);
        // …and a second one joins that queued run.
        let (r, _rx3) = request(Direction::FromServer, Trigger::Notify);
        admit(r, Some(&mut running), &mut queue);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].replies.len(), 2);
        // A push (not manual) is not covered by a queued pull: a run of
        // its own.
        let (r, _rx4) = request(Direction::ToServer, Trigger::Interval);
        admit(r, Some(&mut running), &mut queue);
        assert_eq!(queue.len(), 2);
        // A manual push does not join a running pull.
        let mut pulling = run_of(Direction::FromServer, Trigger::Notify);
        let (r, _rx5) = request(Direction::ToServer, Trigger::Manual);
        admit(r, Some(&mut pulling), &mut queue);
        assert!(pulling.replies.is_empty());
    }

    #[test]
    fn a_models_only_run_does_not_cover_every_model() {
        let mut some = run_of(Direction::Bidirectional, Trigger::Manual);
        some.options.models = Some(vec!["Post".into()]);
        let all = SyncOptions::new(Direction::Bidirectional, Trigger::Manual);
        assert!(!some.covers(&all));
        let mut post = all.clone();
        post.models = Some(vec!["Post".into()]);
        assert!(some.covers(&post));
        assert!(run_of(Direction::Bidirectional, Trigger::Manual).covers(&post));
    }
}
