//! The simulated network: every message between two nodes takes a random delay (so messages
//! overtake each other), a few are lost, some are late by tens of milliseconds, and any directed
//! link can be cut (a network partition, possibly one-way).
//!
//! ```text
//!   send(from, to) ──▶ cut?  ──yes──▶ lost (the sender's timeout notices)
//!                        │no
//!                        ▼
//!                    drop_ppm? ─yes─▶ lost
//!                        │no
//!                        ▼
//!                    delay = U[delay_min, delay_max] (+ a spike now and then) ──▶ delivered
//! ```
//!
//! A message to a crashed process is answered by the "operating system" with a refused
//! connection when it was a request that expects an answer (see `Msg::refused`), as a real TCP
//! connect to a port nobody listens on would be; a paused process's messages wait until it
//! resumes.

use std::collections::BTreeSet;
use std::fmt;

use dmq_types::BrokerId;

use crate::rng::Rng;

/// A simulated process: the controller, a broker, or a client (producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Controller,
    Broker(BrokerId),
    Client(u8),
}

impl Node {
    /// A small number naming the node, for hashing.
    pub fn code(self) -> u32 {
        match self {
            Node::Controller => 0,
            Node::Broker(b) => 0x100 + b as u32,
            Node::Client(c) => 0x1000 + u32::from(c),
        }
    }
}

impl Node {
    /// A number for trace arguments: the broker id, 0 for the controller, -1-c for client c.
    pub fn label(self) -> i64 {
        match self {
            Node::Controller => 0,
            Node::Broker(b) => i64::from(b),
            Node::Client(c) => -1 - i64::from(c),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Controller => write!(f, "C"),
            Node::Broker(b) => write!(f, "B{b}"),
            Node::Client(c) => write!(f, "P{c}"),
        }
    }
}

/// Delay and loss settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub delay_min_us: i64,
    pub delay_max_us: i64,
    /// Probability (parts per million) that a message is late by a spike.
    pub spike_ppm: u64,
    pub spike_max_us: i64,
    /// Probability (parts per million) that a message is lost on a healthy link.
    pub drop_ppm: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay_min_us: 100,
            delay_max_us: 2_000,
            spike_ppm: 20_000,
            spike_max_us: 50_000,
            drop_ppm: 1_000,
        }
    }
}

/// The links and their state.
#[derive(Debug)]
pub struct Network {
    pub config: NetConfig,
    /// Directed links that deliver nothing.
    cut: BTreeSet<(Node, Node)>,
    /// Background loss is switched off while healing (liveness is checked on a clean network).
    pub lossy: bool,
}

impl Network {
    pub fn new(config: NetConfig) -> Network {
        Network {
            config,
            cut: BTreeSet::new(),
            lossy: true,
        }
    }

    /// The delay of a message from `from` to `to`, or `None` when it is lost.
    pub fn transit(&self, from: Node, to: Node, rng: &mut Rng) -> Option<i64> {
        if self.cut.contains(&(from, to)) {
            return None;
        }
        if self.lossy && rng.below(1_000_000) < self.config.drop_ppm {
            return None;
        }
        let c = &self.config;
        let mut delay = rng.range(c.delay_min_us, c.delay_max_us);
        if self.lossy && rng.below(1_000_000) < c.spike_ppm {
            delay += rng.range(c.delay_max_us, c.spike_max_us);
        }
        Some(delay)
    }

    pub fn cut(&mut self, from: Node, to: Node) {
        self.cut.insert((from, to));
    }

    pub fn heal(&mut self, from: Node, to: Node) {
        self.cut.remove(&(from, to));
    }

    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    /// Whether any cut link touches `node` (towards or from any node in `peers`).
    pub fn isolated_from_any(&self, node: Node, peers: impl Fn(Node) -> bool) -> bool {
        self.cut
            .iter()
            .any(|(a, b)| (*a == node && peers(*b)) || (*b == node && peers(*a)))
    }

    pub fn is_cut(&self, from: Node, to: Node) -> bool {
        self.cut.contains(&(from, to))
    }

    pub fn cut_links(&self) -> usize {
        self.cut.len()
    }
}
