//! Offset commits into the metadata quorum, batched: every commit waiting while a batch is in
//! flight goes into the next one, so one Raft entry carries many members' commits (up to
//! [`IN_FLIGHT_BATCHES`] batches at a time).
//!
//! Batching never couples clients: the quorum stores or refuses each commit on its own and the
//! answer goes back to the request it came from; a batch the quorum refuses as a whole for
//! something in the request is sent again one request at a time, so only the request at fault
//! sees the error.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::meta_client::OffsetsCommitted;
use crate::node::BrokerShared;

/// Commit requests merged into one batch at most.
const BATCH_REQUESTS_MAX: usize = 1_000;
/// Commits one batch carries at most (the metadata API's per-request limit).
const BATCH_COMMITS_MAX: usize = 10_000;
/// Batches sent to the controller at the same time.
const IN_FLIGHT_BATCHES: usize = 4;

/// Per commit of one request: `None` when stored, else why the quorum refused it.
pub type CommitResults = Vec<Option<String>>;

struct Pending {
    commits: Vec<Value>,
    done: oneshot::Sender<Result<CommitResults, String>>,
}

/// The handle OffsetCommit uses.
pub struct OffsetCommitter {
    tx: mpsc::UnboundedSender<Pending>,
}

/// The receiving end, driven by [`run`].
pub struct CommitQueue(mpsc::UnboundedReceiver<Pending>);

impl OffsetCommitter {
    pub fn new() -> (OffsetCommitter, CommitQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (OffsetCommitter { tx }, CommitQueue(rx))
    }

    /// Commits `commits` (JSON `OffsetCommit`s of the metadata API); resolves once the quorum
    /// has answered, with each commit's outcome, or with the reason nothing could be sent.
    pub async fn commit(&self, commits: Vec<Value>) -> Result<CommitResults, String> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Pending { commits, done })
            .map_err(|_| "the broker is shutting down".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the commit batcher stopped".to_string()))
    }
}

/// Drains the queue into batches until every sender is gone.
pub async fn run(shared: Arc<BrokerShared>, mut queue: CommitQueue) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_BATCHES));
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.0.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut commits = first.commits.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX {
            match queue.0.try_recv() {
                Ok(p) if commits + p.commits.len() > BATCH_COMMITS_MAX => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    commits += p.commits.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            commit_batch(&shared, batch).await;
            drop(permit);
        });
    }
}

/// Sends one batch and answers each request with its own commits' outcomes.
async fn commit_batch(shared: &BrokerShared, batch: Vec<Pending>) {
    let all: Vec<Value> = batch.iter().flat_map(|p| p.commits.clone()).collect();
    match send(shared, all).await {
        Ok(OffsetsCommitted::Done(mut results)) => {
            for p in batch {
                let rest = results.split_off(p.commits.len().min(results.len()));
                let mine = std::mem::replace(&mut results, rest);
                let _ = p.done.send(Ok(mine));
            }
        }
        Ok(OffsetsCommitted::Refused {
            client_error: true,
            message,
        }) if batch.len() > 1 => {
            // Something in one request made the quorum refuse the whole batch: find it by
            // sending each request alone, so the others are not failed with it.
            tracing::debug!("offset commit batch refused ({message}); retrying one by one");
            for p in batch {
                let result = match send(shared, p.commits.clone()).await {
                    Ok(OffsetsCommitted::Done(results)) => Ok(results),
                    Ok(OffsetsCommitted::Refused { message, .. }) => Err(message),
                    Err(e) => Err(e),
                };
                let _ = p.done.send(result);
            }
        }
        Ok(OffsetsCommitted::Refused { message, .. }) | Err(message) => {
            for p in batch {
                let _ = p.done.send(Err(message.clone()));
            }
        }
    }
}

/// One request to the quorum; several when the commits exceed its per-request limit.
async fn send(shared: &BrokerShared, commits: Vec<Value>) -> Result<OffsetsCommitted, String> {
    let mut results = Vec::with_capacity(commits.len());
    for chunk in commits.chunks(BATCH_COMMITS_MAX) {
        match shared.meta.commit_offsets(chunk.to_vec()).await {
            Ok(OffsetsCommitted::Done(r)) => results.extend(r),
            Ok(refused) => return Ok(refused),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(OffsetsCommitted::Done(results))
}
