//! Named limits. Units come last in every name (TigerStyle): `_MS`, `_BYTES`, `_COUNT`.

/// Partitions per topic, inclusive upper bound (SPEC §6).
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// Largest HTTP request body the metadata API reads before answering 413.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Largest Kafka request frame a broker reads before closing the connection (SPEC §6).
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Default largest record batch (`message.max.bytes`).
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

/// Default Raft election timeout: followers campaign 1.0–1.2 × this after the leader falls silent.
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1_000;

/// Default interval between Raft heartbeats from the leader.
pub const RAFT_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;

/// Default interval between broker heartbeats to the controller: five per session, so a broker
/// is fenced only after five heartbeats in a row failed to arrive (Kafka: 2 s in a 9 s session).
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 500;

/// Default time without a heartbeat after which the controller fences a broker and moves its
/// leaderships; a broker that has not reached the controller for this long stops acknowledging
/// writes as a leader. It is what a leader cut off from the quorum costs: at most this plus one
/// controller tick (measured 2.1–2.6 s from the cut to the new leader in `tests/isolation.rs`;
/// 5.3–6.2 s with the former 6 s session and 1 s heartbeat). It must outlast a controller
/// failover (election 1.0–1.2 × `ELECTION_TIMEOUT_MS_DEFAULT`, then the new controller's push),
/// during which heartbeats have nowhere to go, with a heartbeat to spare.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 2_500;

/// Default time a follower may go without catching up before it leaves the ISR (Kafka's
/// `replica.lag.time.max.ms` is 30 s; ours is shorter, like the other timings).
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 10_000;

/// Default number of applied Raft entries between two state-machine snapshots.
pub const SNAPSHOT_INTERVAL_ENTRIES_DEFAULT: u64 = 10_000;

/// Default number of entries kept in the Raft log behind a snapshot, so that a follower that is
/// only a little behind catches up from the log instead of by snapshot.
pub const SNAPSHOT_LOG_ENTRIES_KEPT_DEFAULT: u64 = 500;
