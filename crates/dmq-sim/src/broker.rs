//! One simulated broker process: the shell around its [`ReplicaState`]s, mirroring
//! `dmq-broker` (membership.rs, replica_manager.rs, partition.rs, the Kafka Fetch /
//! OffsetForLeaderEpoch / Produce handlers, node.rs's ISR manager) and, in `fetcher.rs`, the
//! follower's fetch loop. Every replication rule is the real core's; this file only feeds it
//! events and performs its effects, as the real shell does.
//!
//! ```text
//!   start ─▶ Register(incarnation) ─▶ RegisterOk(broker epoch) ─▶ pull metadata ─▶ heartbeats
//!   metadata ─▶ apply_metadata per hosted partition ─▶ BecameLeader: epoch into the cache
//!                                                 └─▶ regroup fetchers by leader
//!   Produce ─▶ check_append ─▶ log append ─▶ leader_appended ─▶ await_ack (acks=all)
//!   Fetch (from a follower) ─▶ follower_fetch ─▶ records up to the log end, or a long poll
//!   ISR tick ─▶ isr_change ─▶ AlterPartition ─▶ isr_change_done
//! ```
//!
//! A broker's state is lost when it crashes; only its [`Disk`] survives.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use dmq_replica::{
    AckWait, Effects, FollowerFetch, IsrAnswer, IsrChange, Mutation, Refusal, ReplicaState,
    RoleChange, WaiterId,
};
use dmq_types::model::Partition;
use dmq_types::BrokerId;

use crate::config::SimConfig;
use crate::disk::Disk;
use crate::io::{Io, Obs};
use crate::msg::{partition_meta, EpochAsk, FetchData, FetchPart, Image, Msg, ProduceError, Timer};
use crate::net::Node;

/// Longest registration retry back-off, as a multiple of the metadata timeout.
const REGISTER_BACKOFF_FACTOR_MAX: i64 = 4;
/// Heartbeats that may fail in a row before the broker registers again.
const FAILED_HEARTBEATS_BEFORE_REREGISTER: u32 = 3;

/// A producer waiting for its acks=all verdict.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    client: Node,
    req: u64,
    offset: i64,
}

/// An ISR change sent to the controller and not settled yet.
#[derive(Debug, Clone)]
struct PendingAlter {
    seq: u64,
    change: IsrChange,
    /// Refused: settled by the next metadata this broker applies (see [`Broker::alter_refused`]).
    awaiting_metadata: bool,
}

/// A follower's Fetch held by the leader until data arrives or its wait expires.
#[derive(Debug, Clone)]
pub(crate) struct ParkedFetch {
    pub(crate) from: BrokerId,
    pub(crate) from_inc: u64,
    pub(crate) seq: u64,
    pub(crate) parts: Vec<FetchPart>,
    pub(crate) deadline_ms: i64,
    /// The follower's broker epoch in this broker's metadata when the request arrived: the
    /// real handler looks it up once per request, not at each wake-up of the long poll.
    pub(crate) broker_epoch: Option<u64>,
}

/// The request a fetcher waits on.
#[derive(Debug, Clone)]
pub(crate) enum InFlight {
    Epochs { seq: u64, asks: Vec<EpochAsk> },
    Fetch { seq: u64, parts: Vec<FetchPart> },
}

/// One leader's fetcher (`fetcher.rs`'s `run_fetcher` task).
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    /// The partitions it fetches (the `watch` the replica manager updates).
    pub(crate) parts: Vec<i32>,
    pub(crate) inflight: Option<InFlight>,
    pub(crate) backoff_ms: i64,
    /// Sleeping until the wake timer of this generation; `true` when new partitions (a
    /// metadata update) end the sleep early.
    pub(crate) sleeping: Option<(u64, bool)>,
    pub(crate) gen: u64,
}

/// One broker process.
#[derive(Debug)]
pub struct Broker {
    pub id: BrokerId,
    /// Which start of this broker this process is (its incarnation id).
    pub inc: u64,
    pub disk: Disk,
    pub(crate) cfg: Rc<SimConfig>,
    mutation: Option<Mutation>,
    /// The broker epoch of this process's registration, once acknowledged.
    pub registered_epoch: Option<u64>,
    registering: bool,
    register_attempt: u64,
    register_backoff_ms: i64,
    /// When a heartbeat (or the registration) last got through.
    heartbeat_ok_ms: i64,
    hb_outstanding: Option<u64>,
    hb_failures: u32,
    /// When the next heartbeat is due (set as one is sent, like `next_beat`).
    hb_next_due_ms: i64,
    pub image: Rc<Image>,
    /// The hosted replicas' cores; their logs are `disk.logs`.
    pub replicas: BTreeMap<i32, ReplicaState>,
    pub(crate) fetchers: BTreeMap<BrokerId, Fetcher>,
    pub(crate) parked: BTreeMap<u64, ParkedFetch>,
    next_parked: u64,
    waiters: BTreeMap<(i32, WaiterId), Waiter>,
    /// Per partition, the ISR change on its way to the controller.
    alter_pending: BTreeMap<i32, PendingAlter>,
    pub(crate) seq: u64,
    /// Partitions whose log end or role moved during this event: parked fetches re-run.
    pub(crate) woken: BTreeSet<i32>,
    was_cut_off: bool,
    /// This host's page-cache write-back period.
    flush_interval_ms: i64,
}

impl Broker {
    /// A new process on `disk` (recovered); it registers with the controller at once.
    pub fn start(
        id: BrokerId,
        inc: u64,
        disk: Disk,
        cfg: Rc<SimConfig>,
        flush_interval_ms: i64,
        io: &mut Io<'_>,
    ) -> Broker {
        let mut b = Broker {
            id,
            inc,
            disk,
            mutation: cfg.mutation,
            registered_epoch: None,
            registering: false,
            register_attempt: 0,
            register_backoff_ms: cfg.metadata_timeout_ms,
            heartbeat_ok_ms: 0,
            hb_outstanding: None,
            hb_failures: 0,
            hb_next_due_ms: 0,
            image: Rc::new(Image::empty()),
            replicas: BTreeMap::new(),
            fetchers: BTreeMap::new(),
            parked: BTreeMap::new(),
            next_parked: 0,
            waiters: BTreeMap::new(),
            alter_pending: BTreeMap::new(),
            seq: 0,
            woken: BTreeSet::new(),
            was_cut_off: false,
            flush_interval_ms,
            cfg,
        };
        b.register(io);
        io.timer_ms(b.cfg.heartbeat_interval_ms, Timer::Heartbeat);
        io.timer_ms(b.cfg.isr_tick_ms(), Timer::IsrTick);
        io.timer_ms(flush_interval_ms, Timer::Flush);
        io.timer_ms(b.cfg.hw_checkpoint_interval_ms, Timer::HwCheckpoint);
        b
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// No heartbeat got through for a session: the controller has fenced this broker, so as a
    /// leader it acknowledges nothing (`BrokerShared::lost_the_controller`).
    pub fn cut_off(&self, now_ms: i64) -> bool {
        self.registered_epoch.is_some()
            && now_ms - self.heartbeat_ok_ms > self.cfg.session_timeout_ms
    }

    pub fn on_message(&mut self, from: Node, from_inc: u64, msg: Msg, io: &mut Io<'_>) {
        match (from, msg) {
            (Node::Controller, Msg::RegisterOk { broker_epoch }) => {
                self.registered(broker_epoch, io)
            }
            (Node::Controller, Msg::HeartbeatOk { seq, version }) => {
                self.heartbeat_answered(seq, Some(version), io)
            }
            (Node::Controller, Msg::HeartbeatUnknown { seq }) => {
                if self.hb_outstanding == Some(seq) {
                    self.heartbeat_answered(seq, None, io);
                    self.register(io);
                }
            }
            (Node::Controller, Msg::Metadata(image)) => self.metadata(image, io),
            (Node::Controller, Msg::AlterPartitionOk { seq, partition }) => {
                self.alter_answered(partition.partition_id, seq, Some(&partition), io);
            }
            (Node::Controller, Msg::AlterPartitionRefused { seq, partition, .. }) => {
                self.alter_refused(partition, seq, io)
            }
            (Node::Controller, Msg::Probe) => {}
            (Node::Broker(f), Msg::Fetch { seq, parts }) => {
                let deadline_ms = io.now_ms() + self.cfg.fetch_max_wait_ms;
                let pf = ParkedFetch {
                    from: f,
                    from_inc,
                    seq,
                    parts,
                    deadline_ms,
                    broker_epoch: self.image.broker_epoch(f),
                };
                self.serve_fetch(None, pf, io);
            }
            (Node::Broker(f), Msg::EpochRequest { seq, parts }) => {
                self.offset_for_leader_epoch(f, from_inc, seq, &parts, io)
            }
            (Node::Broker(l), Msg::EpochResponse { seq, parts }) => {
                self.epochs_answered(l, seq, parts, io)
            }
            (Node::Broker(l), Msg::FetchResponse { seq, parts }) => {
                self.fetch_answered(l, seq, parts, io)
            }
            (Node::Broker(l), Msg::ConnRefused { seq }) => self.fetch_failed(l, seq, io),
            (
                Node::Client(_),
                Msg::Produce {
                    req,
                    partition,
                    value,
                    acks,
                },
            ) => self.produce(from, req, partition, value, acks, io),
            (_, msg) => {
                let (tag, args) = msg.describe();
                io.note("unexpected", [0; 4]);
                io.note(tag, args);
            }
        }
        self.wake_parked(io);
    }

    pub fn on_timer(&mut self, timer: Timer, io: &mut Io<'_>) {
        match timer {
            Timer::Heartbeat => self.heartbeat(io),
            Timer::HeartbeatTimeout { seq } => {
                if self.hb_outstanding == Some(seq) {
                    self.hb_failures += 1;
                    self.heartbeat_answered(seq, None, io);
                    if self.hb_failures >= FAILED_HEARTBEATS_BEFORE_REREGISTER {
                        io.note("heartbeats-failed-reregistering", [0; 4]);
                        self.hb_failures = 0;
                        self.register(io);
                    }
                }
            }
            Timer::RegisterRetry { attempt } => {
                if self.registering && attempt == self.register_attempt {
                    self.register_backoff_ms = (self.register_backoff_ms * 2)
                        .min(self.cfg.metadata_timeout_ms * REGISTER_BACKOFF_FACTOR_MAX);
                    self.register(io);
                }
            }
            Timer::IsrTick => {
                io.timer_ms(self.cfg.isr_tick_ms(), Timer::IsrTick);
                self.isr_tick(io);
            }
            Timer::Flush => {
                self.disk.flush();
                io.timer_ms(self.flush_interval_ms, Timer::Flush);
            }
            Timer::HwCheckpoint => {
                io.timer_ms(self.cfg.hw_checkpoint_interval_ms, Timer::HwCheckpoint);
                for (p, core) in &self.replicas {
                    if let Some(log) = self.disk.logs.get_mut(p) {
                        log.hw_checkpoint = Some(core.high_watermark());
                    }
                }
            }
            Timer::FetcherWake { leader, gen } => self.fetcher_woken(leader, gen, io),
            Timer::FetchTimeout { leader, seq } => self.fetch_failed(leader, seq, io),
            Timer::LongPollExpired { id } => {
                if let Some(pf) = self.parked.remove(&id) {
                    self.serve_fetch(Some(id), pf, io);
                }
            }
            Timer::AckTimeout {
                partition,
                waiter,
                offset,
            } => {
                if let Some(w) = self.waiters.remove(&(partition, waiter)) {
                    if let Some(core) = self.replicas.get_mut(&partition) {
                        core.cancel_ack(waiter, offset);
                    }
                    io.send(
                        w.client,
                        Msg::ProduceResponse {
                            req: w.req,
                            partition,
                            result: Err(ProduceError::TimedOut),
                        },
                    );
                }
            }
            Timer::AlterTimeout { partition, seq } => self.alter_unanswered(partition, seq, io),
            Timer::ControllerTick
            | Timer::ProduceTick
            | Timer::RequestTimeout { .. }
            | Timer::MetadataRefresh => {}
        }
        self.wake_parked(io);
    }

    // -----------------------------------------------------------------------------------
    // Membership (membership.rs)
    // -----------------------------------------------------------------------------------

    fn register(&mut self, io: &mut Io<'_>) {
        self.registering = true;
        self.register_attempt += 1;
        io.send(
            Node::Controller,
            Msg::Register {
                incarnation: self.inc,
            },
        );
        io.timer_ms(
            self.register_backoff_ms,
            Timer::RegisterRetry {
                attempt: self.register_attempt,
            },
        );
    }

    fn registered(&mut self, broker_epoch: u64, io: &mut Io<'_>) {
        if !self.registering {
            return;
        }
        self.registering = false;
        self.register_backoff_ms = self.cfg.metadata_timeout_ms;
        self.registered_epoch = Some(broker_epoch);
        self.heartbeat_ok_ms = io.now_ms();
        self.hb_failures = 0;
        io.send(Node::Controller, Msg::MetadataRequest);
    }

    fn heartbeat(&mut self, io: &mut Io<'_>) {
        if self.registering || self.registered_epoch.is_none() || self.hb_outstanding.is_some() {
            // Not in the heartbeat loop (or one is on its way): look again later.
            io.timer_ms(self.cfg.heartbeat_interval_ms, Timer::Heartbeat);
            return;
        }
        let seq = self.next_seq();
        self.hb_outstanding = Some(seq);
        self.hb_next_due_ms = io.now_ms() + self.cfg.heartbeat_interval_ms;
        io.send(
            Node::Controller,
            Msg::Heartbeat {
                seq,
                version: self.image.version,
            },
        );
        io.timer_ms(
            self.cfg.metadata_timeout_ms,
            Timer::HeartbeatTimeout { seq },
        );
    }

    /// A heartbeat completed: answered with the controller's version, or failed (`None`).
    fn heartbeat_answered(&mut self, seq: u64, version: Option<u64>, io: &mut Io<'_>) {
        if self.hb_outstanding != Some(seq) {
            return;
        }
        self.hb_outstanding = None;
        if let Some(version) = version {
            let was_cut_off = self.cut_off(io.now_ms());
            self.heartbeat_ok_ms = io.now_ms();
            self.hb_failures = 0;
            if was_cut_off {
                io.note("controller-reachable-again", [0; 4]);
            }
            if version > self.image.version {
                io.send(Node::Controller, Msg::MetadataRequest);
            }
        }
        io.timer_ms(self.hb_next_due_ms - io.now_ms(), Timer::Heartbeat);
    }

    // -----------------------------------------------------------------------------------
    // Metadata (replica_manager.rs, Partition::apply_metadata)
    // -----------------------------------------------------------------------------------

    fn metadata(&mut self, image: Rc<Image>, io: &mut Io<'_>) {
        // Pushes reach a process that has not registered yet (the controller still counts its
        // predecessor ONLINE); like the real broker it pulls only after registering.
        if self.registered_epoch.is_none() || image.version < self.image.version {
            return;
        }
        let now_ms = io.now_ms();
        for meta in &image.partitions {
            if !meta.replicas.contains(&self.id) {
                continue;
            }
            let p = meta.partition_id;
            let log = self.disk.logs.entry(p).or_default();
            let core = self.replicas.entry(p).or_insert_with(|| {
                // The HW checkpoint, within the recovered log (`Partition::open`).
                let hw = log.hw_checkpoint.map_or(0, |h| h.clamp(0, log.end()));
                ReplicaState::new(self.id, hw, image.min_insync).with_mutation(self.mutation)
            });
            let update = core.apply_metadata(&partition_meta(meta), image.min_insync, log, now_ms);
            match update.role_change {
                RoleChange::Unchanged => {}
                RoleChange::BecameLeader {
                    epoch,
                    start_offset,
                } => {
                    log.assign_epoch(epoch, start_offset);
                    io.observe(Obs::BecameLeader {
                        broker: self.id,
                        partition: p,
                        epoch,
                    });
                }
                RoleChange::BecameFollower => io.note(
                    "became-follower p/epoch/leader",
                    [
                        i64::from(p),
                        i64::from(meta.leader_epoch),
                        i64::from(meta.leader),
                        0,
                    ],
                ),
            }
            if update.role_change != RoleChange::Unchanged {
                self.woken.insert(p);
            }
            self.perform(p, update.effects, io);
        }
        self.image = image;
        self.settle_refused(io);
        self.update_fetchers(io);
    }

    /// Performs what a core decided: answers the acks=all producers it decided.
    pub(crate) fn perform(&mut self, p: i32, effects: Effects, io: &mut Io<'_>) {
        if let Some(hw) = effects.high_watermark {
            io.note("hw p/hw", [i64::from(p), hw, 0, 0]);
        }
        for (id, verdict) in effects.acks {
            if let Some(w) = self.waiters.remove(&(p, id)) {
                let result = verdict.map(|()| w.offset).map_err(ProduceError::Refused);
                io.send(
                    w.client,
                    Msg::ProduceResponse {
                        req: w.req,
                        partition: p,
                        result,
                    },
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Produce (produce.rs, Partition::append_as_leader)
    // -----------------------------------------------------------------------------------

    fn produce(&mut self, client: Node, req: u64, p: i32, value: u64, acks: i16, io: &mut Io<'_>) {
        let cut_off = self.cut_off(io.now_ms());
        if cut_off != self.was_cut_off {
            self.was_cut_off = cut_off;
            io.note("cut-off", [i64::from(cut_off), 0, 0, 0]);
        }
        let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get_mut(&p))
        else {
            io.send(client, produce_answer(req, p, Err(ProduceError::NotHosted)));
            return;
        };
        let epoch = match core.check_append(acks, cut_off) {
            Ok(epoch) => epoch,
            Err(r) => {
                io.send(
                    client,
                    produce_answer(req, p, Err(ProduceError::Refused(r))),
                );
                return;
            }
        };
        let offset = log.append_as_leader(epoch, value);
        let effects = core.leader_appended(offset + 1);
        let wait = (acks == -1).then(|| core.await_ack(offset, epoch));
        self.woken.insert(p);
        self.perform(p, effects, io);
        match wait {
            None => io.send(client, produce_answer(req, p, Ok(offset))),
            Some(AckWait::Done(verdict)) => {
                let result = verdict.map(|()| offset).map_err(ProduceError::Refused);
                io.send(client, produce_answer(req, p, result));
            }
            Some(AckWait::Pending(id)) => {
                self.waiters.insert(
                    (p, id),
                    Waiter {
                        client,
                        req,
                        offset,
                    },
                );
                io.timer_ms(
                    self.cfg.produce_timeout_ms,
                    Timer::AckTimeout {
                        partition: p,
                        waiter: id,
                        offset,
                    },
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Leader: Fetch and OffsetForLeaderEpoch (kafka/handlers.rs)
    // -----------------------------------------------------------------------------------

    /// Serves a follower's Fetch, or parks it (long poll) when there is nothing to send yet.
    /// `parked_id`: the fetch was parked under this id before (it keeps its deadline).
    fn serve_fetch(&mut self, parked_id: Option<u64>, pf: ParkedFetch, io: &mut Io<'_>) {
        let now_ms = io.now_ms();
        let expired = now_ms >= pf.deadline_ms;
        let broker_epoch = pf.broker_epoch;
        let mut results = Vec::with_capacity(pf.parts.len());
        let mut effects = Vec::new();
        let (mut total, mut any_error, mut hosted) = (0usize, false, false);
        for fp in &pf.parts {
            let p = fp.partition;
            let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get(&p))
            else {
                any_error = true;
                results.push((p, Err(self.not_hosted(p))));
                continue;
            };
            hosted = true;
            let fetch = FollowerFetch {
                replica: pf.from,
                fetch_offset: fp.fetch_offset,
                last_fetched_epoch: fp.last_fetched_epoch,
                current_leader_epoch: fp.current_leader_epoch,
                broker_epoch,
                log_start_offset: fp.log_start_offset,
            };
            match core.follower_fetch(&fetch, log, now_ms) {
                Ok((grant, e)) => {
                    effects.push((p, e));
                    let records =
                        log.read(fp.fetch_offset, grant.upper, self.cfg.fetch_max_records);
                    total += records.len();
                    let data = FetchData {
                        records,
                        high_watermark: grant.high_watermark,
                        log_start_offset: 0,
                    };
                    results.push((p, Ok(data)));
                }
                Err(r) => {
                    any_error = true;
                    results.push((p, Err(r)));
                }
            }
        }
        for (p, e) in effects {
            self.perform(p, e, io);
        }
        if total >= 1 || any_error || expired || !hosted {
            let msg = Msg::FetchResponse {
                seq: pf.seq,
                parts: results,
            };
            io.reply(Node::Broker(pf.from), pf.from_inc, msg);
            return;
        }
        let id = parked_id.unwrap_or_else(|| {
            self.next_parked += 1;
            io.timer_ms(
                pf.deadline_ms - now_ms,
                Timer::LongPollExpired {
                    id: self.next_parked,
                },
            );
            self.next_parked
        });
        self.parked.insert(id, pf);
    }

    /// Re-runs the parked fetches of partitions whose log end or role moved.
    fn wake_parked(&mut self, io: &mut Io<'_>) {
        while !self.woken.is_empty() {
            let woken = std::mem::take(&mut self.woken);
            let ids: Vec<u64> = self
                .parked
                .iter()
                .filter(|(_, pf)| pf.parts.iter().any(|fp| woken.contains(&fp.partition)))
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(pf) = self.parked.remove(&id) {
                    self.serve_fetch(Some(id), pf, io);
                }
            }
        }
    }

    fn not_hosted(&self, p: i32) -> Refusal {
        let leader = self
            .image
            .partitions
            .iter()
            .find(|m| m.partition_id == p)
            .map(|m| m.leader)
            .filter(|l| *l >= 0);
        Refusal::NotLeader { leader }
    }

    fn offset_for_leader_epoch(
        &mut self,
        from: BrokerId,
        from_inc: u64,
        seq: u64,
        asks: &[EpochAsk],
        io: &mut Io<'_>,
    ) {
        let parts = asks
            .iter()
            .map(|a| {
                let p = a.partition;
                let answer = match (self.replicas.get(&p), self.disk.logs.get(&p)) {
                    (Some(core), Some(log)) => core
                        .check_leader(a.current_leader_epoch)
                        .map(|_| dmq_replica::LogView::end_offset_for_epoch(log, a.leader_epoch)),
                    _ => Err(self.not_hosted(p)),
                };
                (p, answer)
            })
            .collect();
        io.reply(
            Node::Broker(from),
            from_inc,
            Msg::EpochResponse { seq, parts },
        );
    }

    // -----------------------------------------------------------------------------------
    // Leader: ISR changes (node.rs isr_manager)
    // -----------------------------------------------------------------------------------

    fn isr_tick(&mut self, io: &mut Io<'_>) {
        let now_ms = io.now_ms();
        let lag = self.cfg.replica_lag_max_ms;
        let image = self.image.clone();
        let parts: Vec<i32> = self.replicas.keys().copied().collect();
        for p in parts {
            let Some(core) = self.replicas.get_mut(&p) else {
                continue;
            };
            let Some(change) = core.isr_change(now_ms, lag, |id| image.broker_epoch(id)) else {
                continue;
            };
            self.send_alter(p, change, io);
        }
    }

    fn send_alter(&mut self, p: i32, change: IsrChange, io: &mut Io<'_>) {
        let seq = self.next_seq();
        let pending = PendingAlter {
            seq,
            change: change.clone(),
            awaiting_metadata: false,
        };
        self.alter_pending.insert(p, pending);
        let msg = Msg::AlterPartition {
            seq,
            partition: p,
            change,
        };
        io.send(Node::Controller, msg);
        io.timer_ms(
            self.cfg.metadata_timeout_ms,
            Timer::AlterTimeout { partition: p, seq },
        );
    }

    fn pending_alter(&self, p: i32, seq: u64) -> Option<&PendingAlter> {
        self.alter_pending.get(&p).filter(|a| a.seq == seq)
    }

    /// No answer in time: the change may or may not be committed. The shell keeps the change
    /// pending and sends it again, as Kafka's leader retries AlterPartition (and as
    /// dmq-broker's ISR manager does). Settling it as refused at once would drop the core's
    /// pending ISR, so the HW would move on over the old ISR although the controller may have
    /// committed a larger one: the bug `--isr-unanswered-as-refused` re-introduces.
    fn alter_unanswered(&mut self, p: i32, seq: u64, io: &mut Io<'_>) {
        let Some(pending) = self.pending_alter(p, seq) else {
            return;
        };
        if pending.awaiting_metadata {
            return;
        }
        if self.cfg.isr_unanswered_as_refused {
            self.alter_answered(p, seq, None, io);
            return;
        }
        let change = pending.change.clone();
        io.note("alter-partition-retry p", [i64::from(p), 0, 0, 0]);
        self.send_alter(p, change, io);
    }

    /// Refused: our metadata is behind (pull it). A refusal may follow our own earlier attempt
    /// that was committed, so the pending ISR stays until the pulled metadata is applied.
    fn alter_refused(&mut self, p: i32, seq: u64, io: &mut Io<'_>) {
        if self.pending_alter(p, seq).is_none() {
            return;
        }
        io.send(Node::Controller, Msg::MetadataRequest);
        if self.cfg.isr_unanswered_as_refused {
            self.alter_answered(p, seq, None, io);
            return;
        }
        if let Some(a) = self.alter_pending.get_mut(&p) {
            a.awaiting_metadata = true;
        }
    }

    /// After applying metadata: refused changes are settled now (the core has the committed
    /// ISR; if the partition epoch moved, `apply_metadata` already cleared the pending one).
    fn settle_refused(&mut self, io: &mut Io<'_>) {
        let refused: Vec<(i32, u64)> = self
            .alter_pending
            .iter()
            .filter(|(_, a)| a.awaiting_metadata)
            .map(|(p, a)| (*p, a.seq))
            .collect();
        for (p, seq) in refused {
            let pending = self
                .replicas
                .get(&p)
                .is_some_and(|c| c.pending_isr().is_some());
            if pending {
                self.alter_answered(p, seq, None, io);
            } else {
                self.alter_pending.remove(&p);
            }
        }
    }

    /// The controller answered (or did not) ISR change `seq` of `p`; `false` when that change
    /// was no longer awaited.
    fn alter_answered(
        &mut self,
        p: i32,
        seq: u64,
        committed: Option<&Partition>,
        io: &mut Io<'_>,
    ) -> bool {
        if self.pending_alter(p, seq).is_none() {
            return false;
        }
        self.alter_pending.remove(&p);
        let (Some(core), Some(log)) = (self.replicas.get_mut(&p), self.disk.logs.get(&p)) else {
            return true;
        };
        let committed = committed.map(partition_meta);
        let answer = match &committed {
            Some(p) => IsrAnswer::Committed(p),
            None => IsrAnswer::Refused,
        };
        let effects = core.isr_change_done(answer, log, io.now_ms());
        self.perform(p, effects, io);
        true
    }
}

fn produce_answer(req: u64, partition: i32, result: Result<i64, ProduceError>) -> Msg {
    Msg::ProduceResponse {
        req,
        partition,
        result,
    }
}
