//! The follower's side of replication, mirroring `dmq-broker/src/fetcher.rs`: one fetcher per
//! leader broker, one request in flight at a time.
//!
//! ```text
//!   loop:
//!     partitions needing truncation? ─▶ OffsetForLeaderEpoch ─▶ truncate_to_leader each
//!                                        all done: loop at once; else back off (wakes on metadata)
//!     else Fetch(log end, last fetched epoch) ─▶ per partition:
//!        OFFSET_OUT_OF_RANGE ─▶ fetch_out_of_range (truncate again)   ┐ back off 50 ms → 1 s,
//!        other error        ─▶                                      ┘ wakes on metadata
//!        data               ─▶ append, take the leader's HW;  no error: loop at once
//!     connection error / timeout ─▶ sleep the back-off (not woken by metadata)
//! ```
//!
//! An answer is applied to the partitions of the request it answers, even if their leader
//! changed meanwhile (the real task keeps its `parts` snapshot); the core's
//! `check_follower_append` is what refuses batches for a partition that must truncate first.

use std::collections::BTreeMap;

use dmq_replica::{LogView, Refusal, Reset};
use dmq_types::BrokerId;

use crate::broker::{Broker, Fetcher, InFlight};
use crate::io::Io;
use crate::msg::{EpochAnswer, EpochAsk, FetchData, FetchPart, Msg, Timer};
use crate::net::Node;

/// First back-off after a failed round (the real `Duration::from_millis(50)`).
const BACKOFF_MIN_MS: i64 = 50;
/// Longest back-off (the real `Duration::from_secs(1)`).
const BACKOFF_MAX_MS: i64 = 1_000;

impl Broker {
    /// Points one fetcher per leader at the partitions this broker follows (the replica
    /// manager's `FollowerGroups` and `FetcherManager::update`).
    pub(crate) fn update_fetchers(&mut self, io: &mut Io<'_>) {
        let mut groups: BTreeMap<BrokerId, Vec<i32>> = BTreeMap::new();
        for (p, core) in &self.replicas {
            if core.role() == dmq_replica::Role::Follower && core.leader() >= 0 {
                groups.entry(core.leader()).or_default().push(*p);
            }
        }
        // A fetcher whose leader leads nothing we follow is aborted: its answers are ignored.
        self.fetchers
            .retain(|leader, _| groups.contains_key(leader));
        for (leader, parts) in groups {
            let f = self.fetchers.entry(leader).or_insert_with(|| Fetcher {
                parts: Vec::new(),
                inflight: None,
                backoff_ms: BACKOFF_MIN_MS,
                sleeping: None,
                gen: 0,
            });
            f.parts = parts;
            // `send_replace` on the watch: a back-off waiting on `partitions.changed()` ends.
            if let Some((_, true)) = f.sleeping {
                f.sleeping = None;
            }
            self.fetcher_step(leader, io);
        }
    }

    /// One turn of the fetcher loop, unless it waits on a request or a back-off.
    pub(crate) fn fetcher_step(&mut self, leader: BrokerId, io: &mut Io<'_>) {
        let Some(f) = self.fetchers.get(&leader) else {
            return;
        };
        if f.inflight.is_some() || f.sleeping.is_some() || f.parts.is_empty() {
            return;
        }
        let parts = f.parts.clone();
        let mut asks = Vec::new();
        let mut fetches = Vec::new();
        for p in parts {
            let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get(&p))
            else {
                continue;
            };
            match core.truncation_needed(log) {
                Some((current, latest)) => asks.push(EpochAsk {
                    partition: p,
                    current_leader_epoch: current,
                    leader_epoch: latest,
                }),
                None => fetches.push(FetchPart {
                    partition: p,
                    fetch_offset: log.log_end_offset(),
                    last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
                    current_leader_epoch: core.leader_epoch(),
                    log_start_offset: log.log_start_offset(),
                }),
            }
        }
        let seq = self.next_seq();
        let (inflight, msg, timeout_ms) = if !asks.is_empty() {
            let msg = Msg::EpochRequest {
                seq,
                parts: asks.clone(),
            };
            let inflight = InFlight::Epochs { seq, asks };
            (inflight, msg, self.cfg.fetch_conn_timeout_ms)
        } else if !fetches.is_empty() {
            let msg = Msg::Fetch {
                seq,
                parts: fetches.clone(),
            };
            let inflight = InFlight::Fetch {
                seq,
                parts: fetches,
            };
            let timeout = self.cfg.fetch_conn_timeout_ms + self.cfg.fetch_max_wait_ms;
            (inflight, msg, timeout)
        } else {
            return;
        };
        if let Some(f) = self.fetchers.get_mut(&leader) {
            f.inflight = Some(inflight);
        }
        io.send(Node::Broker(leader), msg);
        io.timer_ms(timeout_ms, Timer::FetchTimeout { leader, seq });
    }

    /// Takes the request `seq` of `leader`'s fetcher off the wire, if that is the one it waits on.
    fn take_inflight(&mut self, leader: BrokerId, seq: u64) -> Option<InFlight> {
        let f = self.fetchers.get_mut(&leader)?;
        let matches = match &f.inflight {
            Some(InFlight::Epochs { seq: s, .. }) | Some(InFlight::Fetch { seq: s, .. }) => {
                *s == seq
            }
            None => false,
        };
        if matches {
            f.inflight.take()
        } else {
            None
        }
    }

    /// Back off (doubling up to 1 s); `interruptible`: new metadata ends the wait.
    fn fetcher_sleep(&mut self, leader: BrokerId, interruptible: bool, io: &mut Io<'_>) {
        let Some(f) = self.fetchers.get_mut(&leader) else {
            return;
        };
        f.gen += 1;
        f.sleeping = Some((f.gen, interruptible));
        io.timer_ms(f.backoff_ms, Timer::FetcherWake { leader, gen: f.gen });
        io.note(
            "fetcher-backoff leader/ms",
            [i64::from(leader), f.backoff_ms, 0, 0],
        );
        f.backoff_ms = (f.backoff_ms * 2).min(BACKOFF_MAX_MS);
    }

    pub(crate) fn fetcher_woken(&mut self, leader: BrokerId, gen: u64, io: &mut Io<'_>) {
        let Some(f) = self.fetchers.get_mut(&leader) else {
            return;
        };
        if f.sleeping.is_some_and(|(g, _)| g == gen) {
            f.sleeping = None;
            self.fetcher_step(leader, io);
        }
    }

    /// The connection failed (timeout, refused): drop it and sleep the back-off.
    pub(crate) fn fetch_failed(&mut self, leader: BrokerId, seq: u64, io: &mut Io<'_>) {
        if self.take_inflight(leader, seq).is_some() {
            self.fetcher_sleep(leader, false, io);
        }
    }

    pub(crate) fn epochs_answered(
        &mut self,
        leader: BrokerId,
        seq: u64,
        parts: Vec<EpochAnswer>,
        io: &mut Io<'_>,
    ) {
        let Some(InFlight::Epochs { asks, .. }) = self.take_inflight(leader, seq) else {
            return;
        };
        let mut all_done = true;
        for (p, answer) in parts {
            let Some(ask) = asks.iter().find(|a| a.partition == p) else {
                continue;
            };
            match answer {
                Ok((epoch, end_offset)) => {
                    if !self.truncate_to_leader(p, ask.leader_epoch, epoch, end_offset, io) {
                        all_done = false;
                    }
                }
                Err(_) => all_done = false,
            }
        }
        if all_done {
            self.fetcher_step(leader, io);
        } else {
            self.fetcher_sleep(leader, true, io);
        }
    }

    /// `Partition::truncate_to_leader`: the core's target, through the log also when no data
    /// goes. `false` when the core refused (no longer a follower).
    fn truncate_to_leader(
        &mut self,
        p: i32,
        asked: i32,
        epoch: i32,
        end_offset: i64,
        io: &mut Io<'_>,
    ) -> bool {
        let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get_mut(&p))
        else {
            return false;
        };
        let leo = log.end();
        let Ok(target) = core.truncation_target(asked, epoch, end_offset, log) else {
            return false;
        };
        let new_end = match target {
            Some(target) => log.truncate_to(target),
            None => leo,
        };
        io.note(
            "truncated p/from/to/leader_epoch_answer",
            [i64::from(p), leo, new_end, i64::from(epoch)],
        );
        let effects = core.truncated(new_end);
        self.perform(p, effects, io);
        true
    }

    pub(crate) fn fetch_answered(
        &mut self,
        leader: BrokerId,
        seq: u64,
        parts: Vec<(i32, Result<FetchData, Refusal>)>,
        io: &mut Io<'_>,
    ) {
        let Some(InFlight::Fetch { parts: asked, .. }) = self.take_inflight(leader, seq) else {
            return;
        };
        let mut backoff_needed = false;
        for (p, answer) in parts {
            let Some(fp) = asked.iter().find(|fp| fp.partition == p) else {
                continue;
            };
            match answer {
                Err(Refusal::OffsetOutOfRange { .. } | Refusal::Diverging { .. }) => {
                    backoff_needed = true;
                    self.out_of_range(p, io);
                }
                Err(_) => backoff_needed = true,
                Ok(data) => {
                    if !self.append_replicated(p, fp.fetch_offset, data, io) {
                        backoff_needed = true;
                    }
                }
            }
        }
        if backoff_needed {
            self.fetcher_sleep(leader, true, io);
        } else {
            if let Some(f) = self.fetchers.get_mut(&leader) {
                f.backoff_ms = BACKOFF_MIN_MS;
            }
            self.fetcher_step(leader, io);
        }
    }

    /// `Partition::fetch_out_of_range`. The real Fetch handler answers a partition error with
    /// log start -1, so the follower always looks for the divergence again.
    fn out_of_range(&mut self, p: i32, io: &mut Io<'_>) {
        let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get(&p)) else {
            return;
        };
        match core.fetch_out_of_range(-1, log) {
            Reset::Nothing | Reset::Retruncate => {}
            Reset::StartOver(start) => {
                // Unreachable with log start -1 and logs that start at 0.
                io.note("start-over p/start", [i64::from(p), start, 0, 0]);
            }
        }
    }

    /// `Partition::append_replicated`: `false` when refused (must truncate first, or the
    /// batches do not start at the log end).
    fn append_replicated(&mut self, p: i32, base: i64, data: FetchData, io: &mut Io<'_>) -> bool {
        let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get_mut(&p))
        else {
            return false;
        };
        if core.check_follower_append().is_err() {
            return false;
        }
        if !data.records.is_empty() {
            if let Err(e) = log.append_replicated(base, &data.records) {
                io.note(
                    "append-refused p/log_end/base",
                    [i64::from(p), e.log_end, e.base_offset, 0],
                );
                return false;
            }
            self.woken.insert(p);
        }
        let effects = core.follower_appended(data.high_watermark, log);
        self.perform(p, effects, io);
        true
    }
}
