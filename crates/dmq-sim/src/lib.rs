//! A seeded deterministic simulation of partition replication (issue 15).
//!
//! ```text
//!   seed ─▶ Rng streams (network, faults, disks, workload, clients)
//!              │
//!   ┌──────────┴─────────────────────────── World (virtual clock, one event per step) ───────┐
//!   │ Controller: real MetadataState::apply, partition_changes, Liveness,                    │
//!   │             check_alter_partition, assign_replicas                                      │
//!   │ Broker ×N:  real ReplicaState per partition + a shell like dmq-broker's (membership,    │
//!   │             fetcher, Fetch/OffsetForLeaderEpoch/Produce handlers, ISR manager)          │
//!   │             over a simulated Disk (flushed prefix, epoch cache, HW checkpoint)          │
//!   │ Producers:  acks=all and acks=1 writes to the leader their metadata names               │
//!   │ Network:    delays, spikes, reordering, loss, directed cuts                             │
//!   │ Faults:     crash, power loss, pause, cuts; scenarios for known bugs; a guard that      │
//!   │             keeps them within Kafka's promise                                           │
//!   └──────────────────────────────── Checker after every step (invariants 1–4) ─────────────┘
//!   after the fault phase: heal everything, then liveness (invariant 5) within a budget
//! ```
//!
//! Everything is a function of the seed and the [`SimConfig`]: two runs of one seed produce the
//! same trace (its hash is in the [`Outcome`]). See `check.rs` for the invariants and
//! `faults.rs` for the fault model.

pub mod broker;
pub mod check;
pub mod config;
pub mod controller;
pub mod disk;
pub mod faults;
mod fetcher;
pub mod io;
pub mod msg;
pub mod net;
pub mod producer;
pub mod rng;
pub mod trace;
pub mod world;

pub use check::{Invariant, Violation};
pub use config::SimConfig;
pub use dmq_replica::Mutation;
pub use world::{run, Outcome, Stats};

/// The first seed in `seeds` whose run violates an invariant, with that outcome, and how many
/// seeds ran.
pub fn first_failure(
    seeds: impl IntoIterator<Item = u64>,
    cfg: &SimConfig,
) -> (Option<Outcome>, u64) {
    let mut ran = 0;
    for seed in seeds {
        ran += 1;
        let outcome = run(seed, cfg);
        if outcome.violation.is_some() {
            return (Some(outcome), ran);
        }
    }
    (None, ran)
}
