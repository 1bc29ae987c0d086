//! The world: the event queue, the virtual clock, the processes, the network, the disks, the
//! fault schedule, and the checker after every step.
//!
//! ```text
//!   queue (time, seq) ─pop─▶ Deliver / Timer ─▶ process handler ─▶ Io { messages, timers, observations }
//!        ▲                                                              │
//!        └──────── network (delay, loss, cuts) ◀── route ◀──────────────┘
//!   after every step: Checker::after_step (invariants 1–4); after healing: Checker::converged
//! ```
//!
//! One step is one event. Ties in time are broken by the order of scheduling, so a run is a
//! pure function of the seed and the configuration.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;

use dmq_types::BrokerId;

use crate::broker::Broker;
use crate::check::{Brokers, Checker, Invariant, Violation};
use crate::config::SimConfig;
use crate::controller::Controller;
use crate::disk::Disk;
use crate::faults::{Action, Cluster, Episode, Faults, EPISODES};
use crate::io::{Io, Obs, Out};
use crate::msg::{Msg, Timer, TOPIC};
use crate::net::{Network, Node};
use crate::producer::Producer;
use crate::rng::Rng;
use crate::trace::{Trace, TraceEntry};

/// Virtual time starts here (µs), so that "never" (0) is long ago for every timeout.
const EPOCH_US: i64 = 1_000_000_000;
/// When the first fault may strike (the topic is created and traffic flows by then).
const FIRST_FAULT_MS: i64 = 3_000;
/// Episodes running at once.
const EPISODES_CONCURRENT_MAX: usize = 2;
/// A partition chosen to stay idle writes only this long after the start.
const IDLE_WRITES_MS: i64 = 2_000;

/// An [`Io`] for `me` over the world's buffers (a macro, so the other fields stay borrowable).
macro_rules! io {
    ($w:expr, $me:expr) => {
        Io {
            now_us: $w.now_us,
            me: $me,
            out: &mut $w.out,
            obs: &mut $w.obs,
            trace: &mut $w.trace,
        }
    };
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: Node,
        from_inc: u64,
        to: Node,
        to_inc: Option<u64>,
        msg: Msg,
    },
    Timer {
        node: Node,
        inc: u64,
        timer: Timer,
    },
    EpisodeStart,
    EpisodeStep(u64),
}

#[derive(Debug)]
struct Scheduled {
    at_us: i64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: the heap pops the earliest (then first scheduled) event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

#[derive(Debug)]
enum Proc {
    Up(Box<Broker>),
    Down(Disk),
}

/// One broker's place in the world: its process (or its disk while it is down).
#[derive(Debug)]
struct Slot {
    id: BrokerId,
    inc: u64,
    proc: Proc,
    paused: bool,
    /// Events that reached the paused process, in order.
    stash: Vec<Event>,
    /// Incarnations that died with their host (power loss): what they sent and the network
    /// has not delivered yet is gone with the host's queues.
    lost_with_host: Vec<u64>,
}

/// Which partitions clients write to, and when.
#[derive(Debug, Clone, Copy)]
struct Load {
    active: bool,
    until_us: i64,
    quiet_until_us: i64,
    /// No writes after [`IDLE_WRITES_MS`].
    idle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Faults,
    Healing,
}

/// Counts for the report.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub produced: u64,
    pub acked: u64,
    pub produce_failed: u64,
    pub acked_records_checked: usize,
    pub episodes: Vec<(&'static str, u32)>,
    pub guard_refusals: u32,
    pub crashes: u32,
    pub records_lost_to_power_loss: usize,
    /// Virtual ms from healing until the cluster converged.
    pub converged_after_ms: Option<i64>,
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub steps: u64,
    pub virtual_ms: i64,
    pub violation: Option<Violation>,
    pub trace_hash: u64,
    /// The last trace entries (all of them with `keep_trace`).
    pub trace: Vec<TraceEntry>,
    pub stats: Stats,
}

/// Runs one seed to its end: the fault phase, healing, liveness and the final checks.
pub fn run(seed: u64, cfg: &SimConfig) -> Outcome {
    let mut w = World::new(seed, cfg.clone());
    let violation = w.run_to_end().err();
    let trace = match w.trace.take_all() {
        Some(all) => all,
        None => w.trace.recent(),
    };
    Outcome {
        seed,
        steps: w.steps,
        virtual_ms: (w.now_us - EPOCH_US) / 1000,
        violation,
        trace_hash: w.trace.hash(),
        trace,
        stats: w.stats(),
    }
}

fn brokers_view(slots: &[Slot]) -> Brokers<'_> {
    Brokers {
        up: slots
            .iter()
            .map(|s| match &s.proc {
                Proc::Up(b) => Some(&**b),
                Proc::Down(_) => None,
            })
            .collect(),
    }
}

struct World {
    cfg: Rc<SimConfig>,
    now_us: i64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    net: Network,
    rng_net: Rng,
    rng_faults: Rng,
    rng_disk: Rng,
    rng_load: Rng,
    rng_clients: Rng,
    controller: Controller,
    slots: Vec<Slot>,
    producers: Vec<Producer>,
    load: Vec<Load>,
    faults: Faults,
    check: Checker,
    trace: Trace,
    out: Vec<Out>,
    obs: Vec<Obs>,
    phase: Phase,
    steps: u64,
    healed_at_us: i64,
    crashes: u32,
    lost_records: usize,
    converged_after_ms: Option<i64>,
}

impl World {
    fn new(seed: u64, cfg: SimConfig) -> World {
        let cfg = Rc::new(cfg);
        let mut rng_load = Rng::fork(seed, 4);
        let idle_partition = rng_load.chance(0.5);
        let load = (0..cfg.partitions)
            .map(|p| Load {
                active: true,
                until_us: EPOCH_US + rng_load.range(500, 4_000) * 1000,
                quiet_until_us: 0,
                idle: idle_partition && p + 1 == cfg.partitions,
            })
            .collect();
        let mut trace = Trace::new(cfg.keep_trace);
        let mut out = Vec::new();
        let mut obs = Vec::new();
        let mut io = Io {
            now_us: EPOCH_US,
            me: Node::Controller,
            out: &mut out,
            obs: &mut obs,
            trace: &mut trace,
        };
        let controller = Controller::new(cfg.clone(), &mut io);
        let cfg_skip = cfg.skip_invariants.clone();
        let mut w = World {
            net: Network::new(cfg.net.clone()),
            cfg,
            now_us: EPOCH_US,
            seq: 0,
            queue: BinaryHeap::new(),
            rng_net: Rng::fork(seed, 1),
            rng_faults: Rng::fork(seed, 2),
            rng_disk: Rng::fork(seed, 3),
            rng_load,
            rng_clients: Rng::fork(seed, 5),
            controller,
            slots: Vec::new(),
            producers: Vec::new(),
            load,
            faults: Faults::default(),
            check: Checker::new(cfg_skip.clone()),
            trace,
            out,
            obs,
            phase: Phase::Faults,
            steps: 0,
            healed_at_us: 0,
            crashes: 0,
            lost_records: 0,
            converged_after_ms: None,
        };
        w.route(Node::Controller, 0);
        for i in 0..w.cfg.brokers {
            let id = i as BrokerId + 1;
            w.slots.push(Slot {
                id,
                inc: 0,
                proc: Proc::Down(Disk::default()),
                paused: false,
                stash: Vec::new(),
                lost_with_host: Vec::new(),
            });
            w.restart(id);
        }
        for c in 0..w.cfg.producers {
            let node = Node::Client(c as u8);
            let mut io = io!(w, node);
            let p = Producer::new(c as u8, w.cfg.clone(), &mut io);
            w.producers.push(p);
            w.route(node, 0);
        }
        w.schedule(FIRST_FAULT_MS * 1000, Event::EpisodeStart);
        w
    }

    fn schedule(&mut self, after_us: i64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at_us: self.now_us + after_us.max(0),
            seq: self.seq,
            event,
        });
    }

    /// Sends what `me` (incarnation `inc`) asked for through the network; sets its timers.
    fn route(&mut self, me: Node, inc: u64) {
        for o in std::mem::take(&mut self.out) {
            match o {
                Out::Send { to, to_inc, msg } => {
                    match self.net.transit(me, to, &mut self.rng_net) {
                        Some(delay_us) => {
                            let event = Event::Deliver {
                                from: me,
                                from_inc: inc,
                                to,
                                to_inc,
                                msg,
                            };
                            self.schedule(delay_us, event);
                        }
                        None => {
                            let (tag, args) = msg.describe();
                            self.trace.push(me, Some(to), "lost", [0; 4]);
                            self.trace.push(me, Some(to), tag, args);
                        }
                    }
                }
                Out::Timer { after_us, timer } => {
                    let event = Event::Timer {
                        node: me,
                        inc,
                        timer,
                    };
                    self.schedule(after_us, event);
                }
            }
        }
    }

    fn slot_index(&self, id: BrokerId) -> Option<usize> {
        usize::try_from(id - 1)
            .ok()
            .filter(|i| *i < self.slots.len())
    }

    // -----------------------------------------------------------------------------------
    // The loop
    // -----------------------------------------------------------------------------------

    fn run_to_end(&mut self) -> Result<(), Violation> {
        loop {
            let Some(s) = self.queue.pop() else {
                return Err(Violation {
                    invariant: Invariant::Liveness,
                    detail: "nothing left to happen".into(),
                });
            };
            self.now_us = s.at_us;
            self.steps += 1;
            self.trace.step = self.steps;
            self.trace.now_us = self.now_us - EPOCH_US;
            if self.phase == Phase::Faults && self.steps >= self.cfg.fault_steps {
                self.heal();
            }
            self.handle(s.event);
            let obs = std::mem::take(&mut self.obs);
            let brokers = brokers_view(&self.slots);
            self.check
                .after_step(&self.controller.state, &brokers, &obs)?;
            if self.phase == Phase::Healing && self.healing_done()? {
                return Ok(());
            }
        }
    }

    /// After healing: `Ok(true)` once converged and the final checks hold.
    fn healing_done(&mut self) -> Result<bool, Violation> {
        let brokers = brokers_view(&self.slots);
        match self.check.converged(&self.controller.state, &brokers) {
            Ok(()) => {
                self.check.final_check(&self.controller.state, &brokers)?;
                self.converged_after_ms = Some((self.now_us - self.healed_at_us) / 1000);
                Ok(true)
            }
            Err(why) => {
                if self.cfg.skip_invariants.contains(&Invariant::Liveness) {
                    return Ok(self.now_us - self.healed_at_us > self.cfg.liveness_ms * 1000);
                }
                let late = self.now_us - self.healed_at_us > self.cfg.liveness_ms * 1000;
                let spinning = self.steps > self.cfg.fault_steps + self.cfg.liveness_steps;
                if late || spinning {
                    return Err(Violation {
                        invariant: Invariant::Liveness,
                        detail: format!(
                            "not converged {} after healing ({} steps): {why}",
                            if late {
                                format!("{} ms", self.cfg.liveness_ms)
                            } else {
                                "within the step budget".into()
                            },
                            self.steps - self.cfg.fault_steps
                        ),
                    });
                }
                Ok(false)
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                from,
                from_inc,
                to,
                to_inc,
                msg,
            } => self.deliver(from, from_inc, to, to_inc, msg),
            Event::Timer { node, inc, timer } => self.timer(node, inc, timer),
            Event::EpisodeStart => self.episode_start(),
            Event::EpisodeStep(id) => self.episode_step(id),
        }
    }

    fn deliver(&mut self, from: Node, from_inc: u64, to: Node, to_inc: Option<u64>, msg: Msg) {
        let (tag, args) = msg.describe();
        if let Node::Broker(b) = from {
            let lost = self
                .slot_index(b)
                .is_some_and(|i| self.slots[i].lost_with_host.contains(&from_inc));
            if lost {
                self.trace
                    .push(to, Some(from), "lost-with-sender-host", [0; 4]);
                return;
            }
        }
        match to {
            Node::Controller => {
                self.trace.push(to, Some(from), tag, args);
                let mut io = io!(self, to);
                self.controller.on_message(from, from_inc, msg, &mut io);
                self.route(to, 0);
            }
            Node::Client(c) => {
                self.trace.push(to, Some(from), tag, args);
                let mut io = io!(self, to);
                if let Some(p) = self.producers.get_mut(usize::from(c)) {
                    p.on_message(msg, &mut io);
                }
                self.route(to, 0);
            }
            Node::Broker(b) => {
                let Some(i) = self.slot_index(b) else { return };
                let slot = &mut self.slots[i];
                if slot.paused {
                    let event = Event::Deliver {
                        from,
                        from_inc,
                        to,
                        to_inc,
                        msg,
                    };
                    slot.stash.push(event);
                    return;
                }
                let inc = slot.inc;
                match &mut slot.proc {
                    Proc::Down(_) => {
                        self.trace.push(to, Some(from), "to-dead-process", [0; 4]);
                        if let Some(answer) = msg.refused() {
                            // The host answers for the dead process (a refused connection).
                            self.out.push(Out::Send {
                                to: from,
                                to_inc: Some(from_inc),
                                msg: answer,
                            });
                            self.route(to, inc);
                        }
                    }
                    Proc::Up(broker) => {
                        if to_inc.is_some_and(|x| x != inc) {
                            self.trace
                                .push(to, Some(from), "to-previous-incarnation", [0; 4]);
                            return;
                        }
                        self.trace.push(to, Some(from), tag, args);
                        let mut io = io!(self, to);
                        broker.on_message(from, from_inc, msg, &mut io);
                        self.route(to, inc);
                    }
                }
            }
        }
    }

    fn timer(&mut self, node: Node, inc: u64, timer: Timer) {
        match node {
            Node::Controller => {
                let (tag, args) = timer.describe();
                self.trace.push(node, None, tag, args);
                let mut io = io!(self, node);
                self.controller.on_timer(timer, &mut io);
                self.route(node, 0);
            }
            Node::Client(c) => self.client_timer(c, timer),
            Node::Broker(b) => {
                let Some(i) = self.slot_index(b) else { return };
                let slot = &mut self.slots[i];
                if slot.inc != inc {
                    return;
                }
                if slot.paused {
                    slot.stash.push(Event::Timer { node, inc, timer });
                    return;
                }
                let Proc::Up(broker) = &mut slot.proc else {
                    return;
                };
                let (tag, args) = timer.describe();
                self.trace.push(node, None, tag, args);
                let mut io = io!(self, node);
                broker.on_timer(timer, &mut io);
                self.route(node, inc);
            }
        }
    }

    fn client_timer(&mut self, c: u8, timer: Timer) {
        let node = Node::Client(c);
        if timer == Timer::ProduceTick {
            let writable = self.writable();
            let mut io = io!(self, node);
            if let Some(p) = self.producers.get_mut(usize::from(c)) {
                p.on_tick(&writable, &mut self.rng_clients, &mut io);
            }
        } else {
            let (tag, args) = timer.describe();
            self.trace.push(node, None, tag, args);
            let mut io = io!(self, node);
            if let Some(p) = self.producers.get_mut(usize::from(c)) {
                p.on_timer(timer, &mut io);
            }
        }
        self.route(node, 0);
    }

    /// Which partitions clients write to now (bursts and quiet periods).
    fn writable(&mut self) -> Vec<bool> {
        let now = self.now_us;
        let faults = self.phase == Phase::Faults;
        self.load
            .iter_mut()
            .map(|l| {
                if now >= l.until_us {
                    l.active = !l.active;
                    let (lo, hi) = if l.active { (500, 4_000) } else { (300, 2_500) };
                    l.until_us = now + self.rng_load.range(lo, hi) * 1000;
                }
                let idle = l.idle && now - EPOCH_US > IDLE_WRITES_MS * 1000;
                faults && l.active && !idle && now >= l.quiet_until_us
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------
    // Faults
    // -----------------------------------------------------------------------------------

    fn restart(&mut self, id: BrokerId) {
        let Some(i) = self.slot_index(id) else { return };
        let slot = &mut self.slots[i];
        let Proc::Down(disk) = &mut slot.proc else {
            return;
        };
        let disk = std::mem::take(disk);
        slot.inc += 1;
        let inc = slot.inc;
        let (lo, hi) = self.cfg.flush_interval_ms;
        let flush_ms = self.rng_disk.range(lo, hi);
        let node = Node::Broker(id);
        let cfg = self.cfg.clone();
        let mut io = io!(self, node);
        io.note("start inc", [inc as i64, 0, 0, 0]);
        let broker = Broker::start(id, inc, disk, cfg, flush_ms, &mut io);
        self.slots[i].proc = Proc::Up(Box::new(broker));
        self.route(node, inc);
    }

    fn crash(&mut self, id: BrokerId, power_loss: bool) {
        let Some(i) = self.slot_index(id) else { return };
        let slot = &mut self.slots[i];
        let Proc::Up(broker) = &mut slot.proc else {
            return;
        };
        let mut disk = std::mem::take(&mut broker.disk);
        let lost = disk.crash(power_loss, &mut self.rng_disk);
        slot.proc = Proc::Down(disk);
        if power_loss {
            slot.lost_with_host.push(slot.inc);
        }
        slot.paused = false;
        slot.stash.clear();
        self.crashes += 1;
        self.lost_records += lost;
        self.trace.push(
            Node::Broker(id),
            None,
            "crashed power_loss/records_lost",
            [i64::from(power_loss), lost as i64, 0, 0],
        );
    }

    fn resume(&mut self, id: BrokerId) {
        let Some(i) = self.slot_index(id) else { return };
        let slot = &mut self.slots[i];
        if !slot.paused {
            return;
        }
        slot.paused = false;
        for event in std::mem::take(&mut slot.stash) {
            self.schedule(0, event);
        }
    }

    /// Brokers that keep every acknowledged record and can lead: see the fault model.
    fn healthy(&self) -> Vec<BrokerId> {
        let state = &self.controller.state;
        let brokers = brokers_view(&self.slots);
        let parts = state
            .topics
            .get(TOPIC)
            .map(|t| t.partitions.as_slice())
            .unwrap_or(&[]);
        self.slots
            .iter()
            .filter(|s| !s.paused)
            .filter_map(|s| match &s.proc {
                Proc::Up(b) => Some(&**b),
                Proc::Down(_) => None,
            })
            .filter(|b| {
                let node = Node::Broker(b.id);
                // Heard from lately: a broker whose session is running out (its heartbeats
                // were cut until a moment ago) is about to be fenced and leave the ISRs.
                let fresh_ms = (2 * self.cfg.heartbeat_interval_ms) as u64;
                let now_ms = (self.now_us / 1000) as u64;
                let registered = state
                    .brokers
                    .get(&b.id)
                    .is_some_and(|x| Some(x.broker_epoch) == b.registered_epoch)
                    && state.is_online(b.id)
                    && self
                        .controller
                        .last_heartbeat_ms(b.id)
                        .is_some_and(|seen| now_ms.saturating_sub(seen) <= fresh_ms);
                let connected = !self
                    .net
                    .isolated_from_any(node, |n| !matches!(n, Node::Client(_)));
                let in_sync = parts.iter().all(|p| {
                    let leader_view = brokers
                        .get(p.leader)
                        .and_then(|l| l.replicas.get(&p.partition_id))
                        .filter(|c| c.role() == dmq_replica::Role::Leader);
                    // As its leader sees it: in the ISR, not dropped by a pending shrink, and
                    // caught up lately (not about to be dropped for lag after an earlier cut).
                    let caught_up = |c: &dmq_replica::ReplicaState| {
                        p.leader == b.id
                            || c.followers().get(&b.id).is_some_and(|f| {
                                now_ms as i64 - f.last_caught_up_ms
                                    <= self.cfg.replica_lag_max_ms / 3
                            })
                    };
                    let seen = leader_view.is_none_or(|c| {
                        c.isr().contains(&b.id)
                            && c.pending_isr().is_none_or(|i| i.contains(&b.id))
                            && caught_up(c)
                    });
                    p.isr.contains(&b.id) && seen
                });
                registered && connected && in_sync
            })
            .map(|b| b.id)
            .collect()
    }

    /// Whether the guard lets `action` run: some broker stays healthy after it.
    fn allowed(&self, action: &Action, victim: Option<BrokerId>) -> bool {
        let hit: Vec<BrokerId> = match action {
            Action::Crash { broker, .. } | Action::Pause { broker } => vec![*broker],
            Action::Cut { from, to } => [from, to]
                .iter()
                .filter_map(|n| match n {
                    Node::Broker(b) => Some(*b),
                    _ => None,
                })
                .collect(),
            Action::CutLeaderFromController { .. } => victim.into_iter().collect(),
            _ => return true,
        };
        self.healthy().iter().any(|b| !hit.contains(b))
    }

    fn cluster(&mut self) -> Cluster {
        let writable = self.writable();
        let state = &self.controller.state;
        let partitions = state
            .topics
            .get(TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| ((p.leader >= 0).then_some(p.leader), p.replicas.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Cluster {
            brokers: self.slots.iter().map(|s| s.id).collect(),
            clients: (0..self.cfg.producers)
                .map(|c| Node::Client(c as u8))
                .collect(),
            partitions,
            writable,
            idle: self.load.iter().map(|l| l.idle).collect(),
            healthy: self.healthy(),
            session_timeout_ms: self.cfg.session_timeout_ms,
        }
    }

    fn episode_start(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let gap_ms = self.rng_faults.range(500, 3_000);
        self.schedule(gap_ms * 1000, Event::EpisodeStart);
        if self.faults.episodes.len() >= EPISODES_CONCURRENT_MAX {
            return;
        }
        let weights: Vec<u32> = EPISODES.iter().map(|(_, w)| *w).collect();
        let Some(k) = self.rng_faults.weighted(&weights) else {
            return;
        };
        let cluster = self.cluster();
        let Some(episode) = Episode::draw(EPISODES[k].0, &cluster, &mut self.rng_faults) else {
            return;
        };
        self.trace
            .push(Node::Controller, None, episode.kind.name(), [0; 4]);
        let id = self.faults.add(episode);
        self.episode_step(id);
    }

    /// Runs the episode's due actions, then waits for the next one's delay.
    fn episode_step(&mut self, id: u64) {
        loop {
            let Some(e) = self.faults.episodes.get_mut(&id) else {
                return;
            };
            let Some((_, action)) = e.steps.pop_front() else {
                self.faults.episodes.remove(&id);
                return;
            };
            self.act(id, action);
            let Some(e) = self.faults.episodes.get(&id) else {
                return;
            };
            match e.steps.front() {
                None => {
                    self.faults.episodes.remove(&id);
                    return;
                }
                Some((0, _)) => continue,
                Some((delay_ms, _)) => {
                    let delay_us = delay_ms * 1000;
                    if let Some(e) = self.faults.episodes.get_mut(&id) {
                        if let Some(front) = e.steps.front_mut() {
                            front.0 = 0;
                        }
                    }
                    self.schedule(delay_us, Event::EpisodeStep(id));
                    return;
                }
            }
        }
    }

    fn act(&mut self, episode: u64, action: Action) {
        let victim = match action {
            Action::CutLeaderFromController { partition } => self
                .controller
                .state
                .partition(TOPIC, partition)
                .map(|p| p.leader)
                .filter(|l| *l >= 0),
            _ => None,
        };
        if action.harmful() && !self.allowed(&action, victim) {
            self.faults.refused += 1;
            let (tag, args) = action.describe();
            self.trace
                .push(Node::Controller, None, "guard-refused", [0; 4]);
            self.trace.push(Node::Controller, None, tag, args);
            return;
        }
        let (tag, args) = action.describe();
        self.trace.push(Node::Controller, None, tag, args);
        match action {
            Action::Crash { broker, power_loss } => self.crash(broker, power_loss),
            Action::Restart { broker } => self.restart(broker),
            Action::Pause { broker } => {
                if let Some(i) = self.slot_index(broker) {
                    if matches!(self.slots[i].proc, Proc::Up(_)) {
                        self.slots[i].paused = true;
                    }
                }
            }
            Action::Resume { broker } => self.resume(broker),
            Action::Cut { from, to } => self.net.cut(from, to),
            Action::Heal { from, to } => self.net.heal(from, to),
            Action::Quiet { partition, ms } => {
                if let Some(l) = usize::try_from(partition)
                    .ok()
                    .and_then(|p| self.load.get_mut(p))
                {
                    l.quiet_until_us = l.quiet_until_us.max(self.now_us + ms * 1000);
                }
            }
            Action::CutLeaderFromController { .. } => {
                let Some(b) = victim else { return };
                self.net.cut(Node::Broker(b), Node::Controller);
                self.net.cut(Node::Controller, Node::Broker(b));
                if let Some(e) = self.faults.episodes.get_mut(&episode) {
                    e.victim = Some(b);
                }
                self.trace
                    .push(Node::Broker(b), None, "victim", [i64::from(b), 0, 0, 0]);
            }
            Action::HealVictim => {
                let victim = self
                    .faults
                    .episodes
                    .get_mut(&episode)
                    .and_then(|e| e.victim.take());
                if let Some(b) = victim {
                    self.net.heal(Node::Broker(b), Node::Controller);
                    self.net.heal(Node::Controller, Node::Broker(b));
                }
            }
        }
    }

    /// The end of the fault phase: every process runs again, every link heals, clients stop.
    fn heal(&mut self) {
        self.phase = Phase::Healing;
        self.healed_at_us = self.now_us;
        self.trace
            .push(Node::Controller, None, "heal-everything", [0; 4]);
        self.faults.episodes.clear();
        self.net.heal_all();
        let ids: Vec<BrokerId> = self.slots.iter().map(|s| s.id).collect();
        for id in ids {
            self.resume(id);
            self.restart(id);
        }
    }

    fn stats(&self) -> Stats {
        let (mut produced, mut acked, mut failed) = (0, 0, 0);
        for p in &self.producers {
            produced += p.sent;
            acked += p.acked;
            failed += p.failed;
        }
        Stats {
            produced,
            acked,
            produce_failed: failed,
            acked_records_checked: self.check.acked_records(),
            episodes: self.faults.started.iter().map(|(k, v)| (*k, *v)).collect(),
            guard_refusals: self.faults.refused,
            crashes: self.crashes,
            records_lost_to_power_loss: self.lost_records,
            converged_after_ms: self.converged_after_ms,
        }
    }
}
