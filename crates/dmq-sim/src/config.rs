//! The knobs of one simulation run. Timings are the broker's and controller's defaults
//! (`dmq_types::limits`) scaled down so that faults interact within a few virtual seconds:
//! heartbeat 500 ms → 400 ms and session 2.5 s → 2 s (five heartbeats a session, as there),
//! `replica.lag.time.max.ms` 10 s → 3 s. The derived periods use the real formulas (controller tick = session / 20 within 20–250 ms, liveness probe after 1.2
//! heartbeat intervals, ISR check every lag / 4 within 20–200 ms).

use dmq_replica::Mutation;

use crate::net::NetConfig;

/// One run's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub brokers: usize,
    pub partitions: usize,
    pub replication_factor: usize,
    pub min_insync: usize,
    pub producers: usize,
    /// A known bug re-introduced in every replica core.
    pub mutation: Option<Mutation>,
    /// Steps (events) of the fault phase; then everything heals.
    pub fault_steps: u64,
    /// Virtual time allowed after healing for every replica to be back in the ISR and caught
    /// up (liveness).
    pub liveness_ms: i64,
    /// Steps allowed after healing (a bound on a spinning livelock).
    pub liveness_steps: u64,
    pub heartbeat_interval_ms: i64,
    pub session_timeout_ms: i64,
    pub replica_lag_max_ms: i64,
    /// Bound on one call to the controller (register, heartbeat, AlterPartition).
    pub metadata_timeout_ms: i64,
    /// Follower fetch long-poll (`MAX_WAIT_MS`).
    pub fetch_max_wait_ms: i64,
    /// Connection timeout of the follower's Kafka connection (added to the long poll).
    pub fetch_conn_timeout_ms: i64,
    /// Records per partition in one Fetch answer (`partition_max_bytes`).
    pub fetch_max_records: usize,
    /// acks=all wait at the broker before REQUEST_TIMED_OUT.
    pub produce_timeout_ms: i64,
    /// The client's own request timeout.
    pub client_timeout_ms: i64,
    /// Produce requests in flight per client.
    pub client_inflight_max: usize,
    /// Mean gap between one client's produce attempts.
    pub produce_gap_ms: (i64, i64),
    /// Share of produce requests with acks=all (the rest acks=1), per mille.
    pub acks_all_permille: u64,
    /// Page-cache write-back period, drawn per broker.
    pub flush_interval_ms: (i64, i64),
    pub hw_checkpoint_interval_ms: i64,
    pub net: NetConfig,
    /// Settle an unanswered or refused AlterPartition as refused at once, as dmq-broker's ISR
    /// manager did before it was fixed (which loses the pending ISR before the committed one
    /// is known). Off, as in dmq-broker now: unanswered changes are sent again and refused
    /// ones settled with the next metadata.
    pub isr_unanswered_as_refused: bool,
    /// Invariants not checked (`--skip-invariant`, to see what a violation leads to).
    pub skip_invariants: Vec<crate::check::Invariant>,
    /// Keep every trace entry (for `--trace-all`).
    pub keep_trace: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            brokers: 3,
            partitions: 3,
            replication_factor: 3,
            min_insync: 2,
            producers: 2,
            mutation: None,
            fault_steps: 40_000,
            liveness_ms: 30_000,
            liveness_steps: 400_000,
            heartbeat_interval_ms: 400,
            session_timeout_ms: 2_000,
            replica_lag_max_ms: 3_000,
            metadata_timeout_ms: 1_000,
            fetch_max_wait_ms: 500,
            fetch_conn_timeout_ms: 2_000,
            fetch_max_records: 64,
            produce_timeout_ms: 1_500,
            client_timeout_ms: 2_000,
            client_inflight_max: 5,
            produce_gap_ms: (4, 30),
            acks_all_permille: 800,
            flush_interval_ms: (1_000, 5_000),
            hw_checkpoint_interval_ms: 5_000,
            net: NetConfig::default(),
            isr_unanswered_as_refused: false,
            skip_invariants: Vec::new(),
            keep_trace: false,
        }
    }
}

impl SimConfig {
    /// The controller loop's period (`node.rs`: session / 20, within 20–250 ms).
    pub fn controller_tick_ms(&self) -> i64 {
        (self.session_timeout_ms / 20).clamp(20, 250)
    }

    /// When a late heartbeat makes the controller probe the broker (`overdue_after_ms`).
    pub fn overdue_after_ms(&self) -> i64 {
        (self.heartbeat_interval_ms * 6 / 5).max(200)
    }

    /// The broker's ISR manager period (`node.rs`: lag / 4, within 20–200 ms).
    pub fn isr_tick_ms(&self) -> i64 {
        (self.replica_lag_max_ms / 4).clamp(20, 200)
    }
}
