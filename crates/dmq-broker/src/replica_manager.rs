//! The partitions this broker hosts, kept in line with the cluster metadata: logs are opened or
//! created for every assigned replica, roles follow the leader and epoch, the data of deleted or
//! moved-away partitions is removed, and one fetcher per leader broker keeps followers in sync.
//!
//! On-disk layout (SPEC §6): `<data-dir>/<topic>-<partition>/` holds the log segments plus
//! `partition.metadata` naming the topic id, so a topic deleted and re-created under the same
//! name while this broker was down is recognised and its old data dropped.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use dmq_types::BrokerId;

use crate::error::Result;
use crate::meta_client::ClusterImage;
use crate::partition::{Partition, Role, RoleChange};

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Kafka's `replication-offset-checkpoint`: every hosted partition's high watermark, one file
/// per broker (`0`, the entry count, then `topic partition hw` lines), so a checkpoint costs
/// one fsync per broker rather than one per partition.
pub const HW_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

pub type TopicPartition = (String, i32);

pub struct ReplicaManager {
    broker_id: BrokerId,
    data_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// High watermarks read from [`HW_CHECKPOINT_FILE`] at start, each taken by the first open
    /// of its partition.
    checkpointed_hws: Mutex<HashMap<TopicPartition, i64>>,
}

/// Followed partitions grouped by the broker that leads them (input to the fetchers).
pub type FollowerGroups = BTreeMap<BrokerId, Vec<Arc<Partition>>>;

impl ReplicaManager {
    pub fn new(broker_id: BrokerId, data_dir: PathBuf) -> Self {
        let checkpointed_hws = read_hw_checkpoint(&data_dir.join(HW_CHECKPOINT_FILE));
        ReplicaManager {
            broker_id,
            data_dir,
            partitions: RwLock::new(HashMap::new()),
            checkpointed_hws: Mutex::new(checkpointed_hws),
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let mut v: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
        v
    }

    fn dir_of(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Brings the hosted partitions in line with `image`; returns the partitions to follow,
    /// grouped by leader. Errors opening one partition are logged and skip only that partition.
    pub fn apply(&self, image: &ClusterImage) -> FollowerGroups {
        let mut wanted: HashMap<TopicPartition, ()> = HashMap::new();
        for topic in image.topics.values() {
            if !topic
                .partitions
                .iter()
                .any(|p| p.replicas.contains(&self.broker_id))
            {
                continue;
            }
            // The topic's configs as this broker applies them: its own values, then this
            // broker's and the cluster's dynamic defaults (AlterConfigs on BROKER resources).
            let effective = image
                .broker_configs
                .effective_topic_config(&topic.config, Some(self.broker_id));
            let with_effective;
            let topic = if effective == topic.config {
                topic
            } else {
                with_effective = dmq_types::model::Topic {
                    config: effective,
                    ..topic.clone()
                };
                &with_effective
            };
            for p in &topic.partitions {
                if !p.replicas.contains(&self.broker_id) {
                    continue;
                }
                let key = (topic.topic_name.clone(), p.partition_id);
                wanted.insert(key.clone(), ());
                let existing = self.get(&topic.topic_name, p.partition_id);
                let partition = match existing {
                    Some(part) if part.topic_id == topic.topic_id => part,
                    stale => {
                        if let Some(old) = stale {
                            tracing::info!(partition = ?old, "topic re-created with a new id; dropping the old replica");
                            self.remove(&key);
                        }
                        match self.open_partition(topic, p) {
                            Ok(part) => {
                                let part = Arc::new(part);
                                self.partitions
                                    .write()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(key.clone(), part.clone());
                                part
                            }
                            Err(e) => {
                                tracing::error!(topic = %topic.topic_name, partition = p.partition_id, "cannot open partition: {e}");
                                continue;
                            }
                        }
                    }
                };
                match partition.apply_metadata(topic, p) {
                    RoleChange::BecameLeader => tracing::info!(
                        partition = ?partition,
                        leader_epoch = p.leader_epoch,
                        log_end_offset = partition.log_end_offset(),
                        "now leader"
                    ),
                    RoleChange::BecameFollower => tracing::info!(
                        partition = ?partition,
                        leader = p.leader,
                        leader_epoch = p.leader_epoch,
                        "now follower"
                    ),
                    RoleChange::Unchanged => {}
                }
            }
        }
        let gone: Vec<TopicPartition> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            tracing::info!(topic = %key.0, partition = key.1, "partition deleted or moved away; removing its data");
            self.remove(&key);
        }
        self.remove_orphan_dirs();
        let mut groups = FollowerGroups::new();
        for part in self.all() {
            let snap = part.snapshot();
            if snap.role == Role::Follower && snap.leader >= 0 {
                groups.entry(snap.leader).or_default().push(part);
            }
        }
        groups
    }

    fn open_partition(
        &self,
        topic: &dmq_types::model::Topic,
        p: &dmq_types::model::Partition,
    ) -> Result<Partition> {
        let dir = self.dir_of(&topic.topic_name, p.partition_id);
        let id_file = dir.join(PARTITION_METADATA_FILE);
        if let Some(on_disk) = read_topic_id(&id_file) {
            if on_disk != topic.topic_id {
                tracing::info!(dir = %dir.display(), "data belongs to an earlier topic of the same name; deleting it");
                std::fs::remove_dir_all(&dir)?;
            }
        }
        std::fs::create_dir_all(&dir)?;
        if read_topic_id(&id_file).is_none() {
            let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
            std::fs::write(&tmp, format!("version: 0\ntopic_id: {}\n", topic.topic_id))?;
            std::fs::rename(&tmp, &id_file)?;
        }
        let checkpointed = self
            .checkpointed_hws
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(topic.topic_name.clone(), p.partition_id));
        Partition::open_with_hw(&dir, topic, p, self.broker_id, checkpointed)
    }

    /// Writes every hosted partition's high watermark to [`HW_CHECKPOINT_FILE`] if one moved
    /// since the last write (housekeeping every 5 s, and at a clean shutdown): a temporary
    /// file, fsynced and renamed over the old one, so a crash leaves one whole checkpoint.
    pub fn checkpoint_hws(&self) -> Result<()> {
        let parts = self.all();
        if parts.iter().all(|p| p.hw_to_checkpoint().is_none()) {
            return Ok(());
        }
        let hws: Vec<(&Arc<Partition>, i64)> =
            parts.iter().map(|p| (p, p.high_watermark())).collect();
        let mut body = format!("0\n{}\n", hws.len());
        for (p, hw) in &hws {
            body.push_str(&format!("{} {} {hw}\n", p.topic, p.index));
        }
        let path = self.data_dir.join(HW_CHECKPOINT_FILE);
        let tmp = self.data_dir.join(format!("{HW_CHECKPOINT_FILE}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &path)?;
        for (p, hw) in hws {
            p.hw_checkpointed(hw);
        }
        Ok(())
    }

    fn remove(&self, key: &TopicPartition) {
        let part = self
            .partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(part) = part {
            part.wake_all();
            if let Err(e) = part.log.close() {
                tracing::warn!(partition = ?part, "closing log: {e}");
            }
        }
        let dir = self.dir_of(&key.0, key.1);
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), "cannot delete partition data: {e}");
            }
        }
    }

    /// Partition directories on disk that the metadata no longer assigns here.
    fn remove_orphan_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let hosted = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.join(PARTITION_METADATA_FILE).exists() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let Some((topic, idx)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(idx) = idx.parse::<i32>() else {
                continue;
            };
            if !hosted.contains_key(&(topic.to_string(), idx)) {
                tracing::info!(dir = %path.display(), "deleting data of a partition no longer hosted here");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), "cannot delete: {e}");
                }
            }
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close_all(&self) {
        if let Err(e) = self.checkpoint_hws() {
            tracing::warn!("checkpointing the high watermarks: {e}");
        }
        for part in self.all() {
            part.wake_all();
            if let Err(e) = part.snapshot_producers(true) {
                tracing::warn!(partition = ?part, "producer snapshot: {e}");
            }
            if let Err(e) = part.log.close() {
                tracing::warn!(partition = ?part, "closing log: {e}");
            }
        }
    }

    /// Starts write-back of every hosted log's recent appends (see
    /// [`dmq_log::Log::start_writeback`]); the broker's write-back timer calls it.
    pub fn start_writeback(&self) {
        for part in self.all() {
            part.log.start_writeback();
        }
    }

    /// Drives time-based flushing and, when due, HW checkpoints and retention for every
    /// hosted log. (Compaction has its own thread: [`ReplicaManager::clean_dirtiest`].)
    pub fn housekeeping(&self, now_ms: i64, due: Housekeeping) {
        if due.checkpoint {
            if let Err(e) = self.checkpoint_hws() {
                tracing::warn!("checkpointing the high watermarks: {e}");
            }
        }
        for part in self.all() {
            if due.checkpoint {
                if let Err(e) = part.snapshot_producers(false) {
                    tracing::warn!(partition = ?part, "producer snapshot: {e}");
                }
            }
            if let Err(e) = part.log.maybe_flush(now_ms) {
                tracing::warn!(partition = ?part, "flush: {e}");
            }
            if let Err(e) = part.log.sync_rolled() {
                tracing::warn!(partition = ?part, "fsync of rolled segments: {e}");
            }
            if due.retention {
                match part.log.apply_retention(now_ms) {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(partition = ?part, "retention: {e}"),
                }
            }
        }
    }

    /// Kafka's log cleaner, one pass: of the compacted logs that need a pass (dirty ratio at
    /// least `min.cleanable.dirty.ratio`, a record past `max.compaction.lag.ms`, or expired
    /// tombstones), cleans the one that needs it most — overdue first, then the dirtiest —
    /// below its high watermark. Returns whether it cleaned one. Runs on the broker's single
    /// cleaner thread with its I/O paced by `throttle`: a bounded share of CPU and disk.
    pub fn clean_dirtiest(&self, now_ms: i64, throttle: &dmq_log::IoThrottle) -> bool {
        let pick = self
            .all()
            .into_iter()
            .filter_map(|part| {
                let c = part.log.cleanable(now_ms, part.high_watermark())?;
                c.needs_cleaning().then_some((part, c))
            })
            .max_by(|(_, a), (_, b)| {
                (a.overdue, a.dirty_ratio())
                    .partial_cmp(&(b.overdue, b.dirty_ratio()))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let Some((part, c)) = pick else {
            return false;
        };
        match part
            .log
            .compact_below(now_ms, part.high_watermark(), throttle)
        {
            Ok(stats) => {
                tracing::info!(
                    partition = ?part,
                    dirty_ratio = c.dirty_ratio(),
                    overdue = c.overdue,
                    segments_rewritten = stats.segments_rewritten,
                    records_removed = stats.records_removed,
                    bytes_before = stats.bytes_before,
                    bytes_after = stats.bytes_after,
                    "compacted"
                );
                true
            }
            Err(e) => {
                tracing::warn!(partition = ?part, "compaction: {e}");
                false
            }
        }
    }
}

/// Which periodic duties a [`ReplicaManager::housekeeping`] pass includes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Housekeeping {
    pub retention: bool,
    pub checkpoint: bool,
}

/// The entries of a `replication-offset-checkpoint`; an unreadable or malformed file (wrong
/// version, a line that does not parse, a count that does not match) counts for nothing, which
/// is safe: a replica without a checkpointed high watermark waits for its followers.
fn read_hw_checkpoint(path: &Path) -> HashMap<TopicPartition, i64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return HashMap::new();
    }
    let Some(count) = lines.next().and_then(|c| c.parse::<usize>().ok()) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for line in lines {
        let mut fields = line.split(' ');
        let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(topic), Some(index), Some(hw), None) => index
                .parse::<i32>()
                .ok()
                .zip(hw.parse::<i64>().ok())
                .map(|(index, hw)| ((topic.to_string(), index), hw)),
            _ => None,
        };
        let Some((key, hw)) = parsed else {
            return HashMap::new();
        };
        out.insert(key, hw);
    }
    if out.len() != count {
        return HashMap::new();
    }
    out
}

fn read_topic_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dmq_types::model;

    use super::*;

    /// Topic `t` with `n` partitions, each led by broker 1 alone.
    fn image(n: i32) -> ClusterImage {
        let topic = model::Topic {
            topic_name: "t".into(),
            topic_id: "id".into(),
            num_partitions: n,
            replication_factor: 1,
            config: BTreeMap::new(),
            partitions: (0..n)
                .map(|i| model::Partition {
                    partition_id: i,
                    leader: 1,
                    replicas: vec![1],
                    isr: vec![1],
                    leader_epoch: 0,
                    partition_epoch: 0,
                })
                .collect(),
            created_at: 0,
        };
        ClusterImage {
            topics: BTreeMap::from([("t".to_string(), topic)]),
            ..ClusterImage::default()
        }
    }

    fn produce(p: &Partition, n: usize) {
        for _ in 0..n {
            let mut b = dmq_log::RecordBatchBuilder::new(0);
            b.push(0, Some(b"k"), Some(b"v"), &[]);
            p.append_as_leader(&mut b.build(), 1, false)
                .expect("append");
        }
    }

    /// Kafka's replication-offset-checkpoint: one file for the broker, written only when a
    /// high watermark moved, read back by the next process for each partition it opens.
    #[test]
    fn the_broker_checkpoints_every_high_watermark_in_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(HW_CHECKPOINT_FILE);
        {
            let rm = ReplicaManager::new(1, dir.path().to_path_buf());
            rm.apply(&image(2));
            let p0 = rm.get("t", 0).expect("t-0");
            let p1 = rm.get("t", 1).expect("t-1");
            produce(&p0, 3);
            produce(&p1, 5);
            assert_eq!((p0.high_watermark(), p1.high_watermark()), (3, 5));
            rm.checkpoint_hws().expect("checkpoint");
            let text = std::fs::read_to_string(&path).expect("checkpoint file");
            assert_eq!(text, "0\n2\nt 0 3\nt 1 5\n");
            std::fs::remove_file(&path).expect("remove");
            rm.checkpoint_hws().expect("nothing moved");
            assert!(!path.exists(), "no write when no high watermark moved");
            produce(&p0, 1);
            rm.close_all();
            let text = std::fs::read_to_string(&path).expect("written at shutdown");
            assert_eq!(text, "0\n2\nt 0 4\nt 1 5\n");
        }
        let rm = ReplicaManager::new(1, dir.path().to_path_buf());
        rm.apply(&image(2));
        let hws: Vec<i64> = (0..2)
            .map(|i| rm.get("t", i).expect("partition").high_watermark())
            .collect();
        assert_eq!(hws, [4, 5], "restored before any fetch");
        rm.close_all();
    }

    #[test]
    fn a_malformed_checkpoint_counts_for_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(HW_CHECKPOINT_FILE);
        for bad in [
            "",
            "1\n1\nt 0 3\n",
            "0\n2\nt 0 3\n",
            "0\n1\nt 0 x\n",
            "0\n1\nt 0 3 9\n",
        ] {
            std::fs::write(&path, bad).expect("write");
            assert!(read_hw_checkpoint(&path).is_empty(), "{bad:?}");
        }
        std::fs::write(&path, "0\n1\nmy.topic-1 7 42\n").expect("write");
        assert_eq!(
            read_hw_checkpoint(&path),
            HashMap::from([(("my.topic-1".to_string(), 7), 42)])
        );
    }
}
