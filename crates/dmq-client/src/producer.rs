//! The producer: per-partition batching (`linger`, `batch_size`), compression, murmur2 and
//! sticky partitioning, idempotence, retries with backoff and metadata refresh, and bounded
//! memory with back-pressure — the behaviour of Kafka's Java producer.
//!
//! ```text
//! send() ──► accumulator: one open batch per partition ──(full / linger expired / flush)──► ready queue
//!                                                                                              │
//!        sender task: per leader broker, one batch per partition per request, ≤ max_in_flight ◄─┘
//!            └─► response: complete the batch's records │ retriable error: back into the ready queue
//!                                                          in sequence order, metadata refreshed
//! ```
//!
//! With idempotence (the default with `acks=all`) every batch carries the producer id, epoch
//! and a per-partition sequence assigned the first time it is sent; a retry resends the same
//! bytes, so the broker drops duplicates and refuses gaps. While a partition has batches being
//! retried, it sends one at a time so that they reach the log in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dmq_records::RecordBatchBuilder;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use tokio::sync::{Notify, Semaphore};

use crate::cluster::{topic_name, ClientConfig, Cluster};
use crate::consumer::by_topic;
use crate::error::{ClientError, Result};
use crate::group::ConsumerGroupMetadata;
use crate::partitioner::{partition_for_key, Sticky};
use crate::records::{compress_batch, Compression};
use crate::transaction::Transactions;

/// Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: no response; the offset is unknown (-1).
    None,
    /// `acks=1`: the leader wrote it.
    Leader,
    /// `acks=all`: every in-sync replica has it.
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(ClientError::Config(format!(
                "acks must be 0, 1 or all, not {other:?}"
            ))),
        }
    }
}

/// Producer settings; the defaults are the Java producer's.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent (`linger.ms`).
    pub linger: Duration,
    /// Bytes at which a partition's batch is sent without waiting (`batch.size`).
    pub batch_size: usize,
    /// Bytes of records waiting to be acknowledged before `send` blocks (`buffer.memory`).
    pub buffer_memory: usize,
    /// Largest produce request, and so largest record (`max.request.size`).
    pub max_request_size: usize,
    pub compression: Compression,
    /// `None`: on exactly when `acks` is `All` (Kafka 3's default); `Some(true)` with other
    /// acks is a configuration error.
    pub idempotence: Option<bool>,
    /// Requests in flight per broker connection (`max.in.flight.requests.per.connection`).
    pub max_in_flight: usize,
    pub retry_backoff: Duration,
    /// A record not acknowledged this long after `send` fails (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long `send` may wait for buffer space or metadata (`max.block.ms`); also how
    /// long a transactional request may be retried.
    pub max_block: Duration,
    /// `transactional.id`: makes the producer transactional (and so idempotent, with
    /// `acks=all`). The id identifies the producer across restarts: a new instance with the
    /// same id fences the old one and aborts its unfinished transaction.
    pub transactional_id: Option<String>,
    /// How long the coordinator lets a transaction stay open before aborting it
    /// (`transaction.timeout.ms`).
    pub transaction_timeout: Duration,
}

impl ProducerConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ProducerConfig {
            client: ClientConfig::new(bootstrap),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            compression: Compression::None,
            idempotence: None,
            max_in_flight: 5,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            max_block: Duration::from_secs(60),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }

    fn idempotent(&self) -> Result<bool> {
        if let Some(id) = &self.transactional_id {
            // Transactions are built on idempotence: the coordinator's markers and the
            // broker's checks are per producer id and epoch.
            if id.is_empty() {
                return Err(ClientError::Config("the transactional id is empty".into()));
            }
            if self.idempotence == Some(false) {
                return Err(ClientError::Config(
                    "a transactional producer is idempotent (idempotence = false given)".into(),
                ));
            }
            if self.acks != Acks::All {
                return Err(ClientError::Config(
                    "a transactional producer needs acks=all".into(),
                ));
            }
            if self.max_in_flight > 5 {
                return Err(ClientError::Config(
                    "a transactional producer allows at most 5 requests in flight".into(),
                ));
            }
            return Ok(true);
        }
        match (self.idempotence, self.acks) {
            (Some(true), a) if a != Acks::All => {
                Err(ClientError::Config("idempotence needs acks=all".into()))
            }
            (Some(true), _) if self.max_in_flight > 5 => Err(ClientError::Config(
                "idempotence allows at most 5 requests in flight".into(),
            )),
            (Some(v), _) => Ok(v),
            (None, a) => Ok(a == Acks::All && self.max_in_flight <= 5),
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: chosen by the partitioner (murmur2 of the key, or sticky without a key).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None` = now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    /// Upper bound of the record's encoded size in a batch.
    fn estimated_size(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len());
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + len(v) + 10)
            .sum();
        len(&self.key) + len(&self.value) + headers + 26
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 with `acks=0`, or when the broker reported the batch as a duplicate of one it had.
    pub offset: i64,
    pub timestamp: i64,
}

/// The outcome of one batch, shared by its records.
struct Outcome {
    topic: Arc<str>,
    partition: i32,
    /// `(base offset, log append time or -1)`.
    result: OnceLock<Result<(i64, i64)>>,
    completed_at: OnceLock<Instant>,
    done: Notify,
}

impl Outcome {
    fn new(topic: Arc<str>, partition: i32) -> Self {
        Outcome {
            topic,
            partition,
            result: OnceLock::new(),
            completed_at: OnceLock::new(),
            done: Notify::new(),
        }
    }

    fn complete(&self, r: Result<(i64, i64)>) {
        let _ = self.completed_at.set(Instant::now());
        let _ = self.result.set(r);
        self.done.notify_waiters();
    }
}

/// Resolves when the record is acknowledged (or has failed for good). `.await` it.
pub struct DeliveryFuture {
    outcome: Arc<Outcome>,
    index: i32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// When the broker's answer (or the final failure) was processed; for latency figures.
    pub fn completed_at(&self) -> Option<Instant> {
        self.outcome.completed_at.get().copied()
    }

    /// The result, if it is known already.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.outcome.result.get().map(|r| self.metadata(r))
    }

    fn metadata(&self, r: &Result<(i64, i64)>) -> Result<RecordMetadata> {
        let (base, append_time) = r.clone()?;
        Ok(RecordMetadata {
            topic: self.outcome.topic.to_string(),
            partition: self.outcome.partition,
            offset: if base < 0 {
                -1
            } else {
                base + self.index as i64
            },
            timestamp: if append_time >= 0 {
                append_time
            } else {
                self.timestamp
            },
        })
    }
}

impl DeliveryFuture {
    /// Waits for the outcome without consuming the future.
    pub async fn wait(&self) -> Result<RecordMetadata> {
        loop {
            let notified = self.outcome.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.outcome.result.get() {
                return self.metadata(r);
            }
            notified.await;
        }
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.wait().await })
    }
}

type TopicPartition = (Arc<str>, i32);

struct OpenBatch {
    builder: RecordBatchBuilder,
    created: Instant,
    outcome: Arc<Outcome>,
    reserved: usize,
    records: i32,
}

struct Sealed {
    tp: TopicPartition,
    builder: Option<RecordBatchBuilder>,
    bytes: Option<Bytes>,
    records: i32,
    outcome: Arc<Outcome>,
    reserved: usize,
    created: Instant,
    sequence: Option<i32>,
    /// The earlier attempts that failed and were retried (`+ms broker: error`), newest last
    /// and at most [`ATTEMPTS_KEPT`]: told with a final OUT_OF_ORDER_SEQUENCE_NUMBER, whose
    /// cause is an earlier attempt.
    attempts: Vec<String>,
}

const ATTEMPTS_KEPT: usize = 6;

#[derive(Default)]
struct PartQueue {
    open: Option<OpenBatch>,
    ready: VecDeque<Sealed>,
    /// Sequences of the batches in flight (or a -1 per batch without idempotence).
    in_flight: Vec<i32>,
    /// The broker the in-flight batches went to (`None` when none is in flight).
    in_flight_to: Option<i32>,
    retrying: bool,
    next_sequence: i32,
    backoff_until: Option<Instant>,
}

impl PartQueue {
    fn seal(&mut self, tp: &TopicPartition) {
        if let Some(open) = self.open.take() {
            self.ready.push_back(Sealed {
                tp: tp.clone(),
                builder: Some(open.builder),
                bytes: None,
                records: open.records,
                outcome: open.outcome,
                reserved: open.reserved,
                created: open.created,
                sequence: None,
                attempts: Vec::new(),
            });
        }
    }

    /// Puts a failed batch back, before every batch with a later (or no) sequence.
    fn requeue(&mut self, batch: Sealed) {
        let at = self
            .ready
            .iter()
            .position(|b| match (b.sequence, batch.sequence) {
                (None, _) => true,
                (Some(s), Some(mine)) => s > mine,
                (Some(_), None) => false,
            })
            .unwrap_or(self.ready.len());
        self.ready.insert(at, batch);
    }
}

struct TopicQueues {
    name: Arc<str>,
    sticky: Sticky,
    partitions: Vec<PartQueue>,
}

impl TopicQueues {
    fn iter_mut(&mut self) -> impl Iterator<Item = (TopicPartition, &mut PartQueue)> {
        let name = &self.name;
        self.partitions
            .iter_mut()
            .enumerate()
            .map(move |(p, q)| ((name.clone(), p as i32), q))
    }
}

/// The queues of `topic`, created on first use (always `Some`; an `Option` because the map is
/// looked up by `&str`, without allocating per record).
fn topic_queues<'a>(
    topics: &'a mut HashMap<Arc<str>, TopicQueues>,
    topic: &str,
) -> Option<&'a mut TopicQueues> {
    if !topics.contains_key(topic) {
        let name: Arc<str> = Arc::from(topic);
        topics.insert(
            name.clone(),
            TopicQueues {
                name,
                sticky: Sticky::default(),
                partitions: Vec::new(),
            },
        );
    }
    topics.get_mut(topic)
}

#[derive(Default)]
struct Accumulator {
    /// By topic, then by partition id (looked up by `&str`: no allocation per record).
    topics: HashMap<Arc<str>, TopicQueues>,
    broker_in_flight: HashMap<i32, usize>,
    /// Batches created and not yet completed.
    outstanding: usize,
    flushing: usize,
}

struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    idempotent: bool,
    /// Producer id and epoch: set at creation (idempotent) or by `init_transactions`.
    producer: Mutex<(i64, i16)>,
    /// `Some` for a transactional producer.
    txn: Option<Transactions>,
    memory: Semaphore,
    accum: Mutex<Accumulator>,
    wake: Notify,
    idle: Notify,
    closing: AtomicBool,
    metadata_stale: AtomicBool,
    /// Batches sent again after a retriable error (Kafka's `record-retry-total`, per batch).
    retries: std::sync::atomic::AtomicU64,
    /// The request queue of each broker's [`broker_loop`].
    brokers: Mutex<HashMap<i32, tokio::sync::mpsc::UnboundedSender<Vec<Sealed>>>>,
}

impl Inner {
    fn producer_id(&self) -> (i64, i16) {
        *self.producer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch of the current transaction failed for good: the transaction must abort (or,
    /// fenced, the producer is finished).
    fn batch_failed(&self, e: &ClientError) {
        if let Some(txn) = &self.txn {
            txn.fail(e.clone());
        }
    }

    fn enqueue(self: &Arc<Self>, broker: i32, batches: Vec<Sealed>) {
        let mut queues = self.brokers.lock().unwrap_or_else(|p| p.into_inner());
        let tx = queues.entry(broker).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(broker_loop(self.clone(), broker, rx));
            tx
        });
        if let Err(returned) = tx.send(batches) {
            drop(queues);
            settle(self, broker, returned.0, Err(ClientError::Closed));
        }
    }
}

/// A Kafka producer. `send` is cheap (it appends to a batch); a background task sends.
///
/// ```no_run
/// # async fn demo() -> dmq_client::Result<()> {
/// use dmq_client::{Producer, ProducerConfig, ProducerRecord};
/// let producer = Producer::new(ProducerConfig::new("localhost:19092")).await?;
/// let ack = producer.send(ProducerRecord::new("orders", "hello").key("customer-7")).await?;
/// let meta = ack.await?; // acknowledged by every in-sync replica (acks=all)
/// println!("partition {} offset {}", meta.partition, meta.offset);
/// producer.close().await;
/// # Ok(()) }
/// ```
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// Connects, and with idempotence obtains a producer id.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        let idempotent = config.idempotent()?;
        if config.batch_size == 0 || config.max_in_flight == 0 {
            return Err(ClientError::Config(
                "batch_size and max_in_flight must be positive".into(),
            ));
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        let txn = config.transactional_id.clone().map(|id| {
            Transactions::new(
                id,
                config.transaction_timeout,
                config.max_block,
                config.retry_backoff,
            )
        });
        // A transactional producer gets its id from its coordinator in `init_transactions`.
        let producer = if idempotent && txn.is_none() {
            init_producer_id(&cluster, config.max_block).await?
        } else {
            (-1, -1)
        };
        let inner = Arc::new(Inner {
            memory: Semaphore::new(config.buffer_memory),
            cluster,
            idempotent,
            producer: Mutex::new(producer),
            txn,
            config,
            accum: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
            metadata_stale: AtomicBool::new(false),
            brokers: Mutex::new(HashMap::new()),
            retries: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(run_sender(inner.clone()));
        Ok(Producer { inner })
    }

    /// The cluster view this producer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// How many batches were sent again after a retriable error.
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// The producer id and epoch (`(-1, -1)` without idempotence, and for a transactional
    /// producer before `init_transactions`).
    pub fn producer_id(&self) -> (i64, i16) {
        self.inner.producer_id()
    }

    /// The transactional producer's state and coordinator requests.
    fn txn(&self, what: &str) -> Result<&Transactions> {
        self.inner.txn.as_ref().ok_or_else(|| {
            ClientError::InvalidState(format!("{what} needs a transactional_id in the config"))
        })
    }

    /// Registers the transactional id with its coordinator (FindCoordinator key type 1, then
    /// InitProducerId): obtains the producer id and a new epoch, which fences every earlier
    /// instance with the same transactional id and finishes their open transaction. Call once,
    /// before the first `begin_transaction` (Java's `initTransactions`).
    pub async fn init_transactions(&self) -> Result<()> {
        let txn = self.txn("init_transactions")?;
        let id = txn.init(&self.inner.cluster).await?;
        *self
            .inner
            .producer
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = id;
        Ok(())
    }

    /// Starts a transaction: the records sent until `commit_transaction` or
    /// `abort_transaction` become visible to `read_committed` consumers all together, or not
    /// at all. Needs no request (the coordinator learns of the transaction from its first
    /// partition).
    pub fn begin_transaction(&self) -> Result<()> {
        self.txn("begin_transaction")?.begin()
    }

    /// Adds a consumer group's offsets to the transaction (AddOffsetsToTxn, then TxnOffsetCommit
    /// at the group's coordinator): they become the group's committed offsets when the
    /// transaction commits, and are dropped when it aborts — the read-process-write loop's
    /// exactly-once step. `offsets` are the next offsets to read, as for a commit.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<crate::consumer::TopicPartition, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let txn = self.txn("send_offsets_to_transaction")?;
        txn.send_offsets(&self.inner.cluster, self.producer_id(), offsets, group)
            .await
    }

    /// Sends every record of the transaction and waits for their acknowledgements, then
    /// commits (EndTxn; the broker answers once the commit markers are written, so a
    /// `read_committed` consumer sees the records after this returns). If any record of the
    /// transaction failed, nothing is committed: the error is [`ClientError::AbortRequired`]
    /// and the transaction must be aborted.
    pub async fn commit_transaction(&self) -> Result<()> {
        let txn = self.txn("commit_transaction")?;
        txn.prepare_end(true)?;
        self.flush().await;
        // Records that failed while flushing made the transaction abortable (or the producer
        // fatal): checked again.
        let started = txn.prepare_end(true)?;
        txn.end(&self.inner.cluster, self.producer_id(), true, started)
            .await
    }

    /// Aborts the transaction: records not sent yet are dropped (their futures fail with
    /// [`ClientError::TransactionAborted`]), the batches in flight are waited for (whatever
    /// their outcome), then EndTxn(abort); `read_committed` consumers skip the transaction's
    /// records.
    pub async fn abort_transaction(&self) -> Result<()> {
        let txn = self.txn("abort_transaction")?;
        txn.prepare_end(false)?;
        discard_unsent(&self.inner);
        self.flush().await;
        let started = txn.prepare_end(false)?;
        txn.end(&self.inner.cluster, self.producer_id(), false, started)
            .await
    }

    /// Queues `record`, waiting (up to `max_block`) while the buffer is full or the topic's
    /// metadata is unknown. The returned future resolves when the record is acknowledged.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        if let Some(txn) = &inner.txn {
            txn.check_in_transaction("send")?;
        }
        let size = record.estimated_size();
        if size > inner.config.max_request_size {
            return Err(ClientError::RecordTooLarge {
                size,
                max: inner.config.max_request_size,
                what: "max_request_size",
            });
        }
        if size > inner.config.buffer_memory {
            return Err(ClientError::RecordTooLarge {
                size,
                max: inner.config.buffer_memory,
                what: "buffer_memory",
            });
        }
        let deadline = Instant::now() + inner.config.max_block;
        let permit = match inner.memory.try_acquire_many(size as u32) {
            Ok(p) => p,
            Err(_) => {
                tokio::time::timeout_at(deadline.into(), inner.memory.acquire_many(size as u32))
                    .await
                    .map_err(|_| {
                        ClientError::Timeout(format!(
                            "no buffer space for {:?} after {:?} (buffer_memory {} bytes)",
                            record.topic, inner.config.max_block, inner.config.buffer_memory
                        ))
                    })?
                    .map_err(|_| ClientError::Closed)?
            }
        };
        permit.forget();
        let partitions = match self.partition_count(&record.topic, deadline).await {
            Ok(n) => n,
            Err(e) => {
                inner.memory.add_permits(size);
                return Err(e);
            }
        };
        if let Some(p) = record.partition {
            if p < 0 || p >= partitions {
                inner.memory.add_permits(size);
                return Err(ClientError::kafka(
                    3,
                    format!(
                        "partition {p} of {:?} ({partitions} partitions)",
                        record.topic
                    ),
                ));
            }
        }
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let mut acc = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
                let Some(t) = topic_queues(&mut acc.topics, &record.topic) else {
                    inner.memory.add_permits(size);
                    return Err(ClientError::Closed);
                };
                t.sticky.next(partitions, inner.config.batch_size, size)
            }
        };
        if let Some(txn) = &inner.txn {
            // The partition joins the transaction before any of its records can be sent.
            if !txn.is_added(&record.topic, partition) {
                let added = txn
                    .add_partition(
                        &inner.cluster,
                        inner.producer_id(),
                        &record.topic,
                        partition,
                    )
                    .await;
                if let Err(e) = added {
                    inner.memory.add_permits(size);
                    return Err(e);
                }
            }
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let headers: Vec<(&[u8], Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_deref()))
            .collect();
        let mut wake = false;
        let future = {
            let mut acc = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
            let acc = &mut *acc;
            let Some(t) = topic_queues(&mut acc.topics, &record.topic) else {
                return Err(ClientError::Closed);
            };
            if t.partitions.len() < partitions as usize {
                t.partitions
                    .resize_with(partitions as usize, PartQueue::default);
            }
            let tp: TopicPartition = (t.name.clone(), partition);
            let q = &mut t.partitions[partition as usize];
            if let Some(open) = &q.open {
                if open.builder.size_bytes() + size > inner.config.batch_size {
                    q.seal(&tp);
                    wake = true;
                }
            }
            if q.open.is_none() {
                q.open = Some(OpenBatch {
                    builder: RecordBatchBuilder::with_capacity(
                        0,
                        inner.config.batch_size.min(256 * 1024).max(size),
                    ),
                    created: Instant::now(),
                    outcome: Arc::new(Outcome::new(tp.0.clone(), partition)),
                    reserved: 0,
                    records: 0,
                });
                acc.outstanding += 1;
                wake = true;
            }
            let Some(open) = q.open.as_mut() else {
                return Err(ClientError::Closed);
            };
            open.builder.push(
                timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &headers,
            );
            open.reserved += size;
            let future = DeliveryFuture {
                outcome: open.outcome.clone(),
                index: open.records,
                timestamp,
            };
            open.records += 1;
            if open.builder.size_bytes() >= inner.config.batch_size {
                q.seal(&tp);
                wake = true;
            }
            future
        };
        if wake {
            inner.wake.notify_one();
        }
        Ok(future)
    }

    async fn partition_count(&self, topic: &str, deadline: Instant) -> Result<i32> {
        loop {
            // Fresh metadata, else refreshed (partitions may have been added), else the stale
            // copy while refreshes fail: a metadata hiccup must not stop sends to a known topic.
            let failure = match self.inner.cluster.topic(topic, true).await {
                Ok(t) if !t.partitions.is_empty() => return Ok(t.partitions.len() as i32),
                // Not (yet) in the metadata: auto-creation may still be under way.
                Ok(_) | Err(ClientError::Kafka { code: 3, .. }) => None,
                Err(e) => Some(e),
            };
            if Instant::now() + self.inner.config.retry_backoff >= deadline {
                return Err(failure.unwrap_or_else(|| {
                    ClientError::Timeout(format!(
                        "topic {topic:?} not in the metadata after {:?}",
                        self.inner.config.max_block
                    ))
                }));
            }
            tokio::time::sleep(self.inner.config.retry_backoff).await;
        }
    }

    /// Sends every queued record now and waits until all of them are acknowledged or failed.
    pub async fn flush(&self) {
        let inner = &self.inner;
        inner
            .accum
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flushing += 1;
        inner.wake.notify_one();
        loop {
            let idle = inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if inner
                .accum
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .outstanding
                == 0
            {
                break;
            }
            idle.await;
        }
        inner
            .accum
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flushing -= 1;
    }

    /// Flushes, then stops the sender.
    pub async fn close(self) {
        self.flush().await;
        self.inner.closing.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Queued records are still delivered; the sender exits once nothing is outstanding.
        self.inner.closing.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

async fn init_producer_id(cluster: &Arc<Cluster>, max_block: Duration) -> Result<(i64, i16)> {
    let deadline = Instant::now() + max_block;
    loop {
        let attempt = async {
            let conn = cluster.any_broker().await?;
            let (resp, _) = conn
                .send(
                    &InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(-1)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                    Duration::ZERO,
                )
                .await?;
            if resp.error_code != 0 {
                return Err(ClientError::kafka(resp.error_code, "InitProducerId"));
            }
            Ok((resp.producer_id.0, resp.producer_epoch))
        };
        match attempt.await {
            Ok(id) => return Ok(id),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tracing::debug!("InitProducerId: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Completes every batch that has not been sent yet (no sequence assigned) with
/// `TransactionAborted`, as Java's producer does on abort: sending them would only add records
/// for the abort marker to cancel. Batches with a sequence were sent at least once and stay:
/// dropping one would leave a gap in the partition's sequence.
fn discard_unsent(inner: &Inner) {
    let mut guard = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
    let acc = &mut *guard;
    let mut dropped = Vec::new();
    for (tp, q) in acc.topics.values_mut().flat_map(TopicQueues::iter_mut) {
        q.seal(&tp);
        let (keep, unsent): (VecDeque<Sealed>, VecDeque<Sealed>) =
            q.ready.drain(..).partition(|b| b.sequence.is_some());
        q.ready = keep;
        dropped.extend(unsent);
    }
    acc.outstanding -= dropped.len();
    let idle = acc.outstanding == 0;
    drop(guard);
    for b in dropped {
        inner.memory.add_permits(b.reserved);
        b.outcome.complete(Err(ClientError::TransactionAborted));
    }
    if idle {
        inner.idle.notify_waiters();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The sender: turns ready batches into produce requests.
async fn run_sender(inner: Arc<Inner>) {
    let mut last_refresh: Option<Instant> = None;
    loop {
        let Drained {
            requests,
            deadline,
            done,
        } = drain(&inner);
        for (broker, batches) in requests {
            inner.enqueue(broker, batches);
        }
        if done {
            // Ends the broker loops (they hold the last references to `inner`).
            inner
                .brokers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            return;
        }
        if inner.metadata_stale.swap(false, Ordering::AcqRel) {
            let due = last_refresh.is_none_or(|t| t.elapsed() >= inner.config.retry_backoff);
            if due {
                last_refresh = Some(Instant::now());
                let inner2 = inner.clone();
                tokio::spawn(async move {
                    let topics: Vec<String> = {
                        let acc = inner2.accum.lock().unwrap_or_else(|p| p.into_inner());
                        let mut t: Vec<String> = acc.topics.keys().map(|t| t.to_string()).collect();
                        t.sort();
                        t.dedup();
                        t
                    };
                    if let Err(e) = inner2.cluster.refresh(Some(&topics), false).await {
                        tracing::debug!("metadata refresh failed: {e}");
                        inner2.metadata_stale.store(true, Ordering::Release);
                    }
                    inner2.wake.notify_one();
                });
            } else {
                inner.metadata_stale.store(true, Ordering::Release);
            }
        }
        let refresh_at = inner
            .metadata_stale
            .load(Ordering::Acquire)
            .then(|| last_refresh.map(|t| t + inner.config.retry_backoff))
            .flatten();
        let deadline = match (deadline, refresh_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                }
            }
            None => inner.wake.notified().await,
        }
    }
}

/// What one drain produced.
struct Drained {
    /// Produce requests to send: `(broker, batches)`.
    requests: Vec<(i32, Vec<Sealed>)>,
    /// When something next becomes due (a linger or a backoff).
    deadline: Option<Instant>,
    /// The producer is closed and nothing is outstanding.
    done: bool,
}

fn drain(inner: &Inner) -> Drained {
    let now = Instant::now();
    let meta = inner.cluster.metadata();
    let cfg = &inner.config;
    let mut acc = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
    let acc = &mut *acc;
    let closing = inner.closing.load(Ordering::Acquire);
    let force = acc.flushing > 0 || closing;
    let mut deadline: Option<Instant> = None;
    let mut soonest = |t: Instant| {
        deadline = Some(deadline.map_or(t, |d: Instant| d.min(t)));
    };
    let mut expired = Vec::new();
    for (tp, q) in acc.topics.values_mut().flat_map(TopicQueues::iter_mut) {
        if let Some(open) = &q.open {
            let due = open.created + cfg.linger;
            if force || due <= now {
                q.seal(&tp);
            } else {
                soonest(due);
            }
        }
        if let Some(b) = q.backoff_until {
            if b > now {
                soonest(b);
            } else {
                q.backoff_until = None;
            }
        }
        // Batches that waited past the delivery timeout fail here (e.g. no leader for long).
        while q
            .ready
            .front()
            .is_some_and(|b| b.sequence.is_none() && now >= b.created + cfg.delivery_timeout)
        {
            if let Some(b) = q.ready.pop_front() {
                expired.push(b);
            }
        }
    }
    let mut requests: Vec<(i32, Vec<Sealed>)> = Vec::new();
    let mut stale = false;
    // Passes: each takes at most one batch per partition into one new request per broker.
    loop {
        let mut this_pass: HashMap<i32, (Vec<Sealed>, usize)> = HashMap::new();
        for (tp, q) in acc.topics.values_mut().flat_map(TopicQueues::iter_mut) {
            if q.ready.is_empty() || q.backoff_until.is_some() {
                continue;
            }
            let limit = if q.retrying { 1 } else { cfg.max_in_flight };
            if q.in_flight.len() >= limit {
                continue;
            }
            let Some(leader) = meta.leader(&tp.0, tp.1) else {
                stale = true;
                continue;
            };
            // Idempotence: while batches are unresolved at a former leader, nothing goes to the
            // new one. Otherwise later batches could be acknowledged there while an earlier one
            // waits out its request timeout at the old broker; its retry would then fall behind
            // the broker's five-batch duplicate window and be refused as out of order although
            // it was written.
            if inner.idempotent && q.in_flight_to.is_some_and(|b| b != leader) {
                continue;
            }
            if acc.broker_in_flight.get(&leader).copied().unwrap_or(0) >= cfg.max_in_flight {
                continue;
            }
            let Some(front) = q.ready.front() else {
                continue;
            };
            let size = match (&front.bytes, &front.builder) {
                (Some(b), _) => b.len(),
                (None, Some(b)) => b.size_bytes(),
                (None, None) => 0,
            };
            let (batches, used) = this_pass.entry(leader).or_default();
            if *used > 0 && *used + size > cfg.max_request_size {
                continue;
            }
            *used += size;
            let Some(mut batch) = q.ready.pop_front() else {
                continue;
            };
            if inner.idempotent && batch.sequence.is_none() {
                batch.sequence = Some(q.next_sequence);
                q.next_sequence = q.next_sequence.wrapping_add(batch.records) & i32::MAX;
            }
            q.in_flight.push(batch.sequence.unwrap_or(-1));
            q.in_flight_to = Some(leader);
            batches.push(batch);
        }
        if this_pass.is_empty() {
            break;
        }
        for (broker, (batches, _)) in this_pass {
            *acc.broker_in_flight.entry(broker).or_default() += 1;
            requests.push((broker, batches));
        }
    }
    if stale {
        inner.metadata_stale.store(true, Ordering::Release);
    }
    let failed = expired.len();
    acc.outstanding -= failed;
    let done = closing && acc.outstanding == 0;
    let idle = acc.outstanding == 0;
    drop(meta);
    for b in expired {
        inner.memory.add_permits(b.reserved);
        let e = ClientError::Timeout(format!(
            "{}-{}: not sent within the delivery timeout of {:?}",
            b.tp.0, b.tp.1, cfg.delivery_timeout
        ));
        inner.batch_failed(&e);
        b.outcome.complete(Err(e));
    }
    if failed > 0 && idle {
        inner.idle.notify_waiters();
    }
    Drained {
        requests,
        deadline,
        done,
    }
}

/// Builds (first attempt: stamps producer fields, compresses) and sends one produce request,
/// then settles every batch in it.
/// One task per broker puts that broker's requests on its connection in drain order (so a
/// partition's batches reach the log in sequence order) and spawns a waiter for each answer.
async fn broker_loop(
    inner: Arc<Inner>,
    broker: i32,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<Sealed>>,
) {
    while let Some(batches) = rx.recv().await {
        match start_request(&inner, broker, batches).await {
            Ok((batches, answer)) => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let result = answer.await;
                    settle(&inner, broker, batches, result);
                });
            }
            Err((batches, e)) => settle(&inner, broker, batches, Err(e)),
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<PartitionResults>> + Send>>;

/// Builds the batches (first attempt: stamps producer fields, compresses) and queues the
/// produce request on the broker's connection.
async fn start_request(
    inner: &Inner,
    broker: i32,
    mut batches: Vec<Sealed>,
) -> std::result::Result<(Vec<Sealed>, Answer), (Vec<Sealed>, ClientError)> {
    let cfg = &inner.config;
    let mut build_error = None;
    for b in &mut batches {
        if b.bytes.is_some() {
            continue;
        }
        let Some(mut builder) = b.builder.take() else {
            continue;
        };
        if let Some(seq) = b.sequence {
            let (id, epoch) = inner.producer_id();
            builder = builder
                .producer(id, epoch, seq)
                .transactional(inner.txn.is_some());
        }
        match compress_batch(builder.build(), cfg.compression) {
            Ok(bytes) => b.bytes = Some(Bytes::from(bytes)),
            Err(e) => build_error = Some(e),
        }
    }
    if let Some(e) = build_error {
        return Err((batches, e));
    }
    match produce(inner, broker, &batches).await {
        Ok(answer) => Ok((batches, answer)),
        Err(e) => Err((batches, e)),
    }
}

/// Settles every batch of one request with its answer: completes it, or puts it back for a
/// retry.
fn settle(inner: &Inner, broker: i32, batches: Vec<Sealed>, result: Result<PartitionResults>) {
    let cfg = &inner.config;
    let mut guard = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
    let acc = &mut *guard;
    if let Some(n) = acc.broker_in_flight.get_mut(&broker) {
        *n = n.saturating_sub(1);
    }
    let now = Instant::now();
    let mut completed = 0;
    for mut b in batches {
        let outcome = match &result {
            Ok(codes) => codes
                .get(&(b.tp.0.to_string(), b.tp.1))
                .cloned()
                .unwrap_or_else(|| {
                    Err(ClientError::Protocol(format!(
                        "no answer for {}-{} in the produce response",
                        b.tp.0, b.tp.1
                    )))
                }),
            Err(e) => Err(e.clone()),
        };
        let Some(q) = acc
            .topics
            .get_mut(&*b.tp.0)
            .and_then(|t| t.partitions.get_mut(b.tp.1 as usize))
        else {
            continue;
        };
        if let Some(i) = q
            .in_flight
            .iter()
            .position(|s| *s == b.sequence.unwrap_or(-1))
        {
            q.in_flight.swap_remove(i);
        }
        if q.in_flight.is_empty() {
            q.in_flight_to = None;
        }
        let retry = match &outcome {
            Ok(_) => false,
            Err(e) => {
                let earlier_unacked = b.sequence.is_some_and(|seq| {
                    q.in_flight.iter().any(|s| *s >= 0 && *s < seq)
                        || q.ready.iter().any(|r| r.sequence.is_some_and(|s| s < seq))
                });
                // OUT_OF_ORDER_SEQUENCE_NUMBER while an earlier batch is still unacknowledged is
                // the broker telling us about the gap that batch's retry will fill. Without one,
                // the gap is permanent (an earlier batch failed for good) and so is the error.
                let out_of_order = e.code() == Some(45) && earlier_unacked;
                (e.is_retriable() || out_of_order) && now < b.created + cfg.delivery_timeout
            }
        };
        if retry {
            if let Err(e) = &outcome {
                tracing::debug!(
                    topic = &*b.tp.0,
                    partition = b.tp.1,
                    "produce failed, retrying: {e}"
                );
                if matches!(e.code(), Some(3 | 5 | 6 | 13) | None) {
                    inner.metadata_stale.store(true, Ordering::Release);
                }
            }
            if inner.idempotent {
                q.retrying = true;
            }
            q.backoff_until = Some(now + cfg.retry_backoff);
            inner.retries.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = &outcome {
                if b.attempts.len() == ATTEMPTS_KEPT {
                    b.attempts.remove(0);
                }
                let ms = now.duration_since(b.created).as_millis();
                b.attempts.push(format!("+{ms}ms broker {broker}: {e}"));
            }
            q.requeue(b);
            continue;
        }
        let outcome = match outcome {
            Err(ClientError::Kafka { code: 45, context }) => {
                let ms = now.duration_since(b.created).as_millis();
                Err(ClientError::kafka(
                    45,
                    format!(
                        "{context}; sequence {:?}, attempt {} at +{ms}ms to broker {broker}, earlier: [{}]",
                        b.sequence,
                        b.attempts.len() + 1,
                        b.attempts.join("; ")
                    ),
                ))
            }
            other => other,
        };
        if q.retrying && q.in_flight.is_empty() && !q.ready.iter().any(|r| r.sequence.is_some()) {
            q.retrying = false;
        }
        inner.memory.add_permits(b.reserved);
        if let Err(e) = &outcome {
            inner.batch_failed(e);
        }
        b.outcome.complete(outcome);
        completed += 1;
    }
    acc.outstanding -= completed;
    let idle = acc.outstanding == 0;
    drop(guard);
    if idle {
        inner.idle.notify_waiters();
    }
    inner.wake.notify_one();
}

type PartitionResults = HashMap<(String, i32), Result<(i64, i64)>>;

async fn produce(inner: &Inner, broker: i32, batches: &[Sealed]) -> Result<Answer> {
    let cfg = &inner.config;
    let topics: Vec<TopicProduceData> = by_topic(batches.iter().map(|b| {
        let data = PartitionProduceData::default()
            .with_index(b.tp.1)
            .with_records(b.bytes.clone());
        (&*b.tp.0, data)
    }))
    .into_iter()
    .map(|(t, data)| {
        TopicProduceData::default()
            .with_name(topic_name(t))
            .with_partition_data(data)
    })
    .collect();
    let timeout_ms = cfg.client.request_timeout.as_millis().min(i32::MAX as u128) as i32;
    let req = ProduceRequest::default()
        .with_acks(cfg.acks.wire())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics);
    let conn = inner.cluster.broker(broker).await?;
    if cfg.acks == Acks::None {
        let version = conn.version(kafka_protocol::messages::ApiKey::Produce)?;
        conn.send_oneway(&req, version).await?;
        let done: PartitionResults = batches
            .iter()
            .map(|b| ((b.tp.0.to_string(), b.tp.1), Ok((-1, -1))))
            .collect();
        return Ok(Box::pin(async move { Ok(done) }));
    }
    let version = conn.version(kafka_protocol::messages::ApiKey::Produce)?;
    let answer = conn.start(&req, version, Duration::ZERO).await?;
    Ok(Box::pin(async move { read_answer(answer.await?) }))
}

fn read_answer(resp: kafka_protocol::messages::ProduceResponse) -> Result<PartitionResults> {
    let mut out = HashMap::new();
    for t in resp.responses {
        for p in t.partition_responses {
            let r = match p.error_code {
                0 => Ok((p.base_offset, p.log_append_time_ms)),
                // The broker had this batch already (a retry after a lost answer).
                46 => Ok((-1, -1)),
                code => Err(ClientError::kafka(
                    code,
                    format!(
                        "producing to {}-{}{}",
                        t.name.0,
                        p.index,
                        p.error_message
                            .as_ref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ),
                )),
            };
            out.insert((t.name.0.to_string(), p.index), r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(seq: Option<i32>) -> Sealed {
        Sealed {
            tp: (Arc::from("t"), 0),
            builder: None,
            bytes: None,
            records: 1,
            outcome: Arc::new(Outcome::new(Arc::from("t"), 0)),
            reserved: 0,
            created: Instant::now(),
            sequence: seq,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn retried_batches_go_back_in_sequence_order_before_new_ones() {
        let mut q = PartQueue::default();
        q.ready.push_back(sealed(Some(20)));
        q.ready.push_back(sealed(None));
        q.requeue(sealed(Some(10)));
        q.requeue(sealed(Some(30)));
        let order: Vec<Option<i32>> = q.ready.iter().map(|b| b.sequence).collect();
        assert_eq!(order, vec![Some(10), Some(20), Some(30), None]);
    }

    #[test]
    fn idempotence_defaults_follow_acks() {
        let mut c = ProducerConfig::new("x:1");
        assert!(c.idempotent().expect("valid"));
        c.acks = Acks::Leader;
        assert!(!c.idempotent().expect("valid"));
        c.idempotence = Some(true);
        assert!(c.idempotent().is_err());
        assert!("2".parse::<Acks>().is_err());
        assert_eq!("all".parse::<Acks>().ok(), Some(Acks::All));
    }

    #[test]
    fn a_transactional_producer_is_idempotent_and_refuses_contradicting_settings() {
        let mut c = ProducerConfig::new("x:1");
        c.transactional_id = Some("tx".into());
        assert!(c.idempotent().expect("valid"));
        c.acks = Acks::Leader;
        assert!(matches!(c.idempotent(), Err(ClientError::Config(_))));
        c.acks = Acks::All;
        c.idempotence = Some(false);
        assert!(matches!(c.idempotent(), Err(ClientError::Config(_))));
        c.idempotence = None;
        c.max_in_flight = 6;
        assert!(matches!(c.idempotent(), Err(ClientError::Config(_))));
        c.max_in_flight = 5;
        c.transactional_id = Some(String::new());
        assert!(matches!(c.idempotent(), Err(ClientError::Config(_))));
    }

    #[tokio::test]
    async fn a_delivery_future_resolves_with_the_record_offset() {
        let outcome = Arc::new(Outcome::new(Arc::from("t"), 2));
        let f = DeliveryFuture {
            outcome: outcome.clone(),
            index: 3,
            timestamp: 77,
        };
        let waiter = tokio::spawn(f.into_future());
        outcome.complete(Ok((100, -1)));
        let meta = waiter.await.expect("join").expect("ok");
        assert_eq!((meta.partition, meta.offset, meta.timestamp), (2, 103, 77));
    }
}
