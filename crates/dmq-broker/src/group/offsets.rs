//! Offset commits into the metadata quorum, batched: every commit waiting while a batch is in
//! flight goes into the next one, so one Raft entry carries many members' commits (up to
//! [`IN_FLIGHT_BATCHES`] batches at a time).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::node::BrokerShared;

/// Commit requests merged into one batch at most.
const BATCH_REQUESTS_MAX: usize = 1_000;
/// Batches sent to the controller at the same time.
const IN_FLIGHT_BATCHES: usize = 4;

struct Pending {
    commits: Vec<Value>,
    done: oneshot::Sender<Result<(), String>>,
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
    /// has them, or with the reason it could not.
    pub async fn commit(&self, commits: Vec<Value>) -> Result<(), String> {
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
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.0.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX {
            match queue.0.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let commits: Vec<Value> = batch.iter().flat_map(|p| p.commits.clone()).collect();
            let result = shared
                .meta
                .commit_offsets(commits)
                .await
                .map_err(|e| e.to_string());
            for p in batch {
                let _ = p.done.send(result.clone());
            }
            drop(permit);
        });
    }
}
