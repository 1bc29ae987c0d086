//! The state machine store: the in-memory [`MetadataState`] plus its latest snapshot on disk.
//!
//! ```text
//! <data-dir>/snapshot   checked file (see checked_file.rs) whose JSON payload is
//!                       {"meta": SnapshotMeta, "data": "<JSON of StateMachineData>"}
//! ```
//!
//! The state machine itself is not persisted on every apply: on restart it is rebuilt from the
//! last snapshot and Raft re-applies the committed entries after it. Snapshots are built by
//! openraft's policy (every `snapshotIntervalEntries` applied entries) and also arrive from the
//! leader through InstallSnapshot when this node is too far behind for the log to catch it up.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::checked_file::{self, Kind};
use super::TypeConfig;
use crate::state::{CommandResult, MetadataState};
use crate::MetadataError;

const SNAPSHOT_FILE: &str = "snapshot";

/// Everything a snapshot must carry: the metadata image and Raft's own bookkeeping.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StateMachineData {
    /// The last entry applied; its index is the metadata `version`.
    pub last_applied: Option<LogId<u64>>,
    /// The quorum membership as of the last applied membership entry.
    pub last_membership: StoredMembership<u64, BasicNode>,
    /// The metadata image.
    pub state: MetadataState,
}

/// The applied state, shared with the HTTP API for reads.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<RwLock<StateMachineData>>);

impl SharedState {
    /// Read access. Readers hold the lock only while copying out what they answer.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachineData> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, StateMachineData> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    /// JSON of [`StateMachineData`], kept as text so the file stays readable with `jq`.
    data: String,
}

/// openraft's state machine handle.
pub struct StateMachineStore {
    shared: SharedState,
    dir: PathBuf,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: u64,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

impl StateMachineStore {
    /// Opens the store in `dir`, restoring the state from the latest snapshot if there is one.
    pub fn open(dir: &Path) -> Result<Self, MetadataError> {
        std::fs::create_dir_all(dir).map_err(|e| MetadataError::storage(dir, e))?;
        let shared = SharedState::default();
        if let Some(stored) = read_snapshot(dir)? {
            let data: StateMachineData = serde_json::from_str(&stored.data)
                .map_err(|e| MetadataError::storage(&dir.join(SNAPSHOT_FILE), e))?;
            *shared.write() = data;
        }
        Ok(Self {
            shared,
            dir: dir.to_path_buf(),
            snapshot_seq: 0,
        })
    }

    /// The shared, applied state for readers.
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }
}

fn read_snapshot(dir: &Path) -> Result<Option<StoredSnapshot>, MetadataError> {
    let path = dir.join(SNAPSHOT_FILE);
    match checked_file::read(&path, Kind::Snapshot).map_err(|e| MetadataError::storage(&path, e))? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MetadataError::storage(&path, e)),
    }
}

fn write_snapshot(dir: &Path, stored: &StoredSnapshot) -> Result<(), StorageError<u64>> {
    let bytes = serde_json::to_vec(stored).map_err(|e| sm_err(ErrorVerb::Write, e))?;
    checked_file::write(&dir.join(SNAPSHOT_FILE), Kind::Snapshot, &bytes).map_err(|e| {
        StorageError::from_io_error(
            ErrorSubject::Snapshot(Some(stored.meta.signature())),
            ErrorVerb::Write,
            e,
        )
    })
}

/// Builds a snapshot from a copy of the state taken when the builder was made.
pub struct SnapshotBuilder {
    data: StateMachineData,
    dir: PathBuf,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let snapshot_id = match self.data.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.data.last_applied,
            last_membership: self.data.last_membership.clone(),
            snapshot_id,
        };
        // Serialising and fsyncing a large image is blocking work: keep it off the async workers.
        let data = std::mem::take(&mut self.data);
        let dir = self.dir.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let data = serde_json::to_string(&data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            let stored = StoredSnapshot { meta, data };
            write_snapshot(&dir, &stored)?;
            Ok::<_, StorageError<u64>>(stored)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))??;
        tracing::info!(
            last_index = stored.meta.last_log_id.map(|l| l.index),
            bytes = stored.data.len(),
            "built metadata snapshot"
        );
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data.into_bytes())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let data = self.shared.read();
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut data = self.shared.write();
        let mut results = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            data.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => {
                    data.state.version = index;
                    CommandResult::None
                }
                EntryPayload::Normal(command) => data.state.apply(index, &command),
                EntryPayload::Membership(membership) => {
                    data.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    data.state.version = index;
                    CommandResult::None
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            data: self.shared.read().clone(),
            dir: self.dir.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let text = String::from_utf8(snapshot.into_inner()).map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                std::io::Error::other(e),
            )
        })?;
        let mut data: StateMachineData = serde_json::from_str(&text).map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                std::io::Error::other(e),
            )
        })?;
        // The meta is authoritative for Raft's bookkeeping.
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        let dir = self.dir.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: text,
        };
        tokio::task::spawn_blocking(move || write_snapshot(&dir, &stored))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))??;
        tracing::info!(
            last_index = meta.last_log_id.map(|l| l.index),
            "installed metadata snapshot from the leader"
        );
        *self.shared.write() = data;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let stored = read_snapshot(&self.dir).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data.into_bytes())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use tempfile::TempDir;

    use super::*;
    use crate::raft::LogStore;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
            let dir = tempfile::tempdir().map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let log = LogStore::open(dir.path()).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let sm =
                StateMachineStore::open(dir.path()).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's storage conformance suite: every storage implementation must pass it.
    #[test]
    fn openraft_storage_conformance_suite() -> Result<(), StorageError<u64>> {
        Suite::test_all(Builder)
    }
}
