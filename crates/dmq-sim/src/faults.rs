//! The fault schedule: episodes drawn from the seed, each a short script of timed actions,
//! at most two at a time, every harmful action checked by the guard when it fires.
//!
//! **The fault model.** Faults are process crashes (the page cache survives), power losses
//! (the host loses the log's unflushed tail, possibly with a torn last record), pauses (a
//! stopped process: its timers and messages wait), network cuts (any directed link between
//! brokers, the controller and clients; one-way or both ways), and at all times random delays,
//! delay spikes, reordering and a 0.1 % message loss. The controller itself never fails.
//!
//! **The guard** keeps the faults within what Kafka promises to survive with
//! `min.insync.replicas = 2` and no unclean election: a harmful action (crash, power loss,
//! pause, cut) runs only if, once it ran, at least one broker is still *healthy* — running,
//! not paused, no cut link to a broker or the controller, ONLINE in its current incarnation
//! and heard from by the controller within two heartbeat intervals (not about to be fenced
//! for a session that ran out during an earlier cut), and in the ISR of every partition as the
//! controller committed it and as its leader sees it, caught up within a third of
//! `replica.lag.time.max.ms` (not about to be shrunk out for a lag an earlier fault caused, and
//! not dropped by a pending shrink). Every acknowledged record is on every ISR member, so a
//! healthy one keeps all of them and stays electable. Healing actions always run.
//!
//! In other words: at most one broker at a time may be impaired in a way that costs it data or
//! its place in the ISR, plus any others as long as one broker stays whole; a broker is
//! impaired from the fault until it is back in every ISR, caught up and heartbeating. A power
//! loss takes the host down: what it sent that is still in flight is lost, and connections to
//! it time out (no refusal: only a killed process's host answers with one), so the controller
//! fences it after the session timeout rather than at the first probe.
//!
//! **Episodes** (weights in [`EPISODES`]): a crash or power loss with a restart, a pause, a
//! broker cut from the controller / the other brokers / both / everything, a one-way cut; and
//! two scenarios that known bugs need:
//! - *restart-then-leader-crash* (KIP-903, issue 15's scenario 1): in a quiet moment of a
//!   partition, power-loss its first follower F, restart it cut off from the leader L, then
//!   crash L. Correct code left F out of the ISR at its re-registration, so the third replica
//!   takes over; a leader that re-admits F on progress from its previous life lets the
//!   controller elect F, whose log lost acknowledged records.
//! - *twice-deposed* (issue 15's scenario 2): on a partition without writes, cut the leader from
//!   the controller past the session timeout, heal, then do the same to the leader elected in
//!   its place, which wrote nothing in its epoch. That epoch must leave its cache when it
//!   truncates, or every fetch it makes diverges and it never rejoins the ISR.

use std::collections::{BTreeMap, VecDeque};

use dmq_types::BrokerId;

use crate::net::Node;
use crate::rng::Rng;

/// Something the fault schedule does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Crash {
        broker: BrokerId,
        power_loss: bool,
    },
    Restart {
        broker: BrokerId,
    },
    Pause {
        broker: BrokerId,
    },
    Resume {
        broker: BrokerId,
    },
    Cut {
        from: Node,
        to: Node,
    },
    Heal {
        from: Node,
        to: Node,
    },
    /// No client writes to `partition` for this long.
    Quiet {
        partition: i32,
        ms: i64,
    },
    /// Episode control: cut the current leader of `partition` from the controller (both
    /// ways) and remember it; [`Action::HealVictim`] heals it.
    CutLeaderFromController {
        partition: i32,
    },
    HealVictim,
}

impl Action {
    /// Whether the guard must allow it.
    pub fn harmful(&self) -> bool {
        matches!(
            self,
            Action::Crash { .. }
                | Action::Pause { .. }
                | Action::Cut { .. }
                | Action::CutLeaderFromController { .. }
        )
    }

    pub fn describe(&self) -> (&'static str, [i64; 4]) {
        let node = |n: &Node| n.label();
        match self {
            Action::Crash { broker, power_loss } => (
                "fault:crash broker/power_loss",
                [i64::from(*broker), i64::from(*power_loss), 0, 0],
            ),
            Action::Restart { broker } => ("fault:restart broker", [i64::from(*broker), 0, 0, 0]),
            Action::Pause { broker } => ("fault:pause broker", [i64::from(*broker), 0, 0, 0]),
            Action::Resume { broker } => ("fault:resume broker", [i64::from(*broker), 0, 0, 0]),
            Action::Cut { from, to } => (
                "fault:cut from/to(0=controller,-1=client0)",
                [node(from), node(to), 0, 0],
            ),
            Action::Heal { from, to } => (
                "fault:heal from/to(0=controller,-1=client0)",
                [node(from), node(to), 0, 0],
            ),
            Action::Quiet { partition, ms } => {
                ("fault:quiet p/ms", [i64::from(*partition), *ms, 0, 0])
            }
            Action::CutLeaderFromController { partition } => (
                "fault:cut-leader-from-controller p",
                [i64::from(*partition), 0, 0, 0],
            ),
            Action::HealVictim => ("fault:heal-victim", [0; 4]),
        }
    }
}

/// The kinds of episode and their weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeKind {
    Kill,
    PowerLoss,
    Pause,
    IsolateFromController,
    IsolateFromBrokers,
    IsolateFromClusterNotClients,
    IsolateFully,
    OneWayCut,
    RestartThenLeaderCrash,
    TwiceDeposed,
}

pub const EPISODES: [(EpisodeKind, u32); 10] = [
    (EpisodeKind::Kill, 10),
    (EpisodeKind::PowerLoss, 12),
    (EpisodeKind::Pause, 10),
    (EpisodeKind::IsolateFromController, 8),
    (EpisodeKind::IsolateFromBrokers, 8),
    (EpisodeKind::IsolateFromClusterNotClients, 10),
    (EpisodeKind::IsolateFully, 5),
    (EpisodeKind::OneWayCut, 6),
    (EpisodeKind::RestartThenLeaderCrash, 14),
    (EpisodeKind::TwiceDeposed, 12),
];

impl EpisodeKind {
    pub fn name(self) -> &'static str {
        match self {
            EpisodeKind::Kill => "kill",
            EpisodeKind::PowerLoss => "power-loss",
            EpisodeKind::Pause => "pause",
            EpisodeKind::IsolateFromController => "isolate-from-controller",
            EpisodeKind::IsolateFromBrokers => "isolate-from-brokers",
            EpisodeKind::IsolateFromClusterNotClients => "isolate-from-cluster",
            EpisodeKind::IsolateFully => "isolate-fully",
            EpisodeKind::OneWayCut => "one-way-cut",
            EpisodeKind::RestartThenLeaderCrash => "restart-then-leader-crash",
            EpisodeKind::TwiceDeposed => "twice-deposed",
        }
    }
}

/// A running episode: actions, each after a delay from the previous one.
#[derive(Debug, Clone)]
pub struct Episode {
    pub kind: EpisodeKind,
    pub steps: VecDeque<(i64, Action)>,
    /// The broker [`Action::CutLeaderFromController`] cut, until healed.
    pub victim: Option<BrokerId>,
}

/// What an episode needs to know of the cluster when it is drawn.
pub struct Cluster {
    pub brokers: Vec<BrokerId>,
    pub clients: Vec<Node>,
    /// Per partition: leader (if any, as the controller names it) and replicas in order.
    pub partitions: Vec<(Option<BrokerId>, Vec<BrokerId>)>,
    /// Partitions clients write to now.
    pub writable: Vec<bool>,
    /// Partitions that never receive writes after the start.
    pub idle: Vec<bool>,
    pub healthy: Vec<BrokerId>,
    pub session_timeout_ms: i64,
}

fn both_ways(a: Node, b: Node) -> [Action; 2] {
    [
        Action::Cut { from: a, to: b },
        Action::Cut { from: b, to: a },
    ]
}

fn heal_both(a: Node, b: Node) -> [Action; 2] {
    [
        Action::Heal { from: a, to: b },
        Action::Heal { from: b, to: a },
    ]
}

impl Episode {
    /// Draws an episode of `kind`, or `None` when the cluster offers no target for it.
    pub fn draw(kind: EpisodeKind, c: &Cluster, rng: &mut Rng) -> Option<Episode> {
        let steps = match kind {
            EpisodeKind::RestartThenLeaderCrash => restart_then_leader_crash(c, rng)?,
            EpisodeKind::TwiceDeposed => twice_deposed(c, rng)?,
            _ => simple(kind, c, rng)?,
        };
        Some(Episode {
            kind,
            steps: steps.into(),
            victim: None,
        })
    }
}

/// A target: half the time the leader of a random partition, else any broker.
fn target(c: &Cluster, rng: &mut Rng) -> Option<BrokerId> {
    if rng.chance(0.5) {
        let p = rng.index(c.partitions.len())?;
        if let Some(l) = c.partitions[p].0 {
            return Some(l);
        }
    }
    c.brokers.get(rng.index(c.brokers.len())?).copied()
}

fn simple(kind: EpisodeKind, c: &Cluster, rng: &mut Rng) -> Option<Vec<(i64, Action)>> {
    let b = target(c, rng)?;
    let me = Node::Broker(b);
    let others: Vec<Node> = c
        .brokers
        .iter()
        .filter(|x| **x != b)
        .map(|x| Node::Broker(*x))
        .collect();
    let mut steps = Vec::new();
    let cut_all = |steps: &mut Vec<(i64, Action)>, peers: &[Node], ms: i64| {
        for p in peers {
            steps.extend(both_ways(me, *p).map(|a| (0, a)));
        }
        let mut first = true;
        for p in peers {
            for a in heal_both(me, *p) {
                steps.push((if first { ms } else { 0 }, a));
                first = false;
            }
        }
    };
    match kind {
        EpisodeKind::Kill | EpisodeKind::PowerLoss => {
            let power_loss = kind == EpisodeKind::PowerLoss;
            steps.push((
                0,
                Action::Crash {
                    broker: b,
                    power_loss,
                },
            ));
            steps.push((rng.range(50, 3_000), Action::Restart { broker: b }));
        }
        EpisodeKind::Pause => {
            steps.push((0, Action::Pause { broker: b }));
            steps.push((rng.range(100, 4_000), Action::Resume { broker: b }));
        }
        EpisodeKind::IsolateFromController => {
            cut_all(&mut steps, &[Node::Controller], rng.range(200, 5_000))
        }
        EpisodeKind::IsolateFromBrokers => cut_all(&mut steps, &others, rng.range(200, 5_000)),
        EpisodeKind::IsolateFromClusterNotClients => {
            let mut peers = others.clone();
            peers.push(Node::Controller);
            cut_all(&mut steps, &peers, rng.range(200, 5_000));
        }
        EpisodeKind::IsolateFully => {
            let mut peers = others.clone();
            peers.push(Node::Controller);
            peers.extend(c.clients.iter().copied());
            cut_all(&mut steps, &peers, rng.range(200, 5_000));
        }
        EpisodeKind::OneWayCut => {
            let mut peers = others.clone();
            peers.push(Node::Controller);
            let peer = peers[rng.index(peers.len())?];
            let (from, to) = if rng.chance(0.5) {
                (me, peer)
            } else {
                (peer, me)
            };
            steps.push((0, Action::Cut { from, to }));
            steps.push((rng.range(200, 5_000), Action::Heal { from, to }));
        }
        EpisodeKind::RestartThenLeaderCrash | EpisodeKind::TwiceDeposed => return None,
    }
    Some(steps)
}

/// Issue 15's scenario 1, see the module docs.
fn restart_then_leader_crash(c: &Cluster, rng: &mut Rng) -> Option<Vec<(i64, Action)>> {
    let candidates: Vec<usize> = (0..c.partitions.len())
        .filter(|p| c.writable[*p] && c.partitions[*p].0.is_some())
        .collect();
    let p = candidates[rng.index(candidates.len())?];
    let (leader, replicas) = &c.partitions[p];
    let l = (*leader)?;
    let f = *replicas.iter().find(|r| **r != l)?;
    if replicas.iter().any(|r| !c.healthy.contains(r)) {
        return None;
    }
    let (ln, fnode) = (Node::Broker(l), Node::Broker(f));
    let mut steps = vec![(
        0,
        Action::Quiet {
            partition: p as i32,
            ms: 8_000,
        },
    )];
    steps.push((
        rng.range(100, 250),
        Action::Crash {
            broker: f,
            power_loss: true,
        },
    ));
    let [a, b] = both_ways(fnode, ln);
    steps.push((rng.range(100, 1_500), a));
    steps.push((0, b));
    steps.push((0, Action::Restart { broker: f }));
    let power_loss = rng.chance(0.5);
    steps.push((
        rng.range(400, 1_200),
        Action::Crash {
            broker: l,
            power_loss,
        },
    ));
    let [a, b] = heal_both(fnode, ln);
    steps.push((rng.range(1_000, 3_000), a));
    steps.push((0, b));
    steps.push((0, Action::Restart { broker: l }));
    Some(steps)
}

/// Issue 15's scenario 2, see the module docs.
fn twice_deposed(c: &Cluster, rng: &mut Rng) -> Option<Vec<(i64, Action)>> {
    let idle: Vec<usize> = (0..c.partitions.len()).filter(|p| c.idle[*p]).collect();
    let p = match rng.index(idle.len()) {
        Some(i) => idle[i],
        None => rng.index(c.partitions.len())?,
    } as i32;
    // Past the session timeout, so the controller fences the victim and elects another.
    let away = c.session_timeout_ms + 1_000;
    let mut steps = vec![(
        0,
        Action::Quiet {
            partition: p,
            ms: 16_000,
        },
    )];
    for round in 0..2 {
        let settle = if round == 0 {
            rng.range(300, 800)
        } else {
            rng.range(1_000, 2_500)
        };
        steps.push((settle, Action::CutLeaderFromController { partition: p }));
        steps.push((away + rng.range(0, 800), Action::HealVictim));
    }
    Some(steps)
}

/// The running episodes.
#[derive(Debug, Default)]
pub struct Faults {
    pub episodes: BTreeMap<u64, Episode>,
    next_id: u64,
    /// Episodes started, actions run and actions the guard refused, by name.
    pub started: BTreeMap<&'static str, u32>,
    pub refused: u32,
}

impl Faults {
    pub fn add(&mut self, e: Episode) -> u64 {
        self.next_id += 1;
        *self.started.entry(e.kind.name()).or_default() += 1;
        self.episodes.insert(self.next_id, e);
        self.next_id
    }
}
