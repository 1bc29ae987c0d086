//! What happened, step by step: a ring of the last events (printed when an invariant fails) and
//! a hash over every event of the run (two runs of one seed must hash the same).
//!
//! Entries are small `Copy` values formatted only when printed, so tracing costs little on the
//! hot path: `tag` names the event and its arguments, e.g. `fetch p/off/lfe/cle` with
//! `args = [0, 12, 3, 4]` prints as `fetch p/off/lfe/cle=0/12/3/4`.

use std::collections::VecDeque;
use std::fmt;

use crate::net::Node;
use crate::rng::mix64;

/// How many of the last entries are kept for the failure report.
pub const TRACE_KEPT: usize = 200;

/// One traced event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time, µs since the start of the run.
    pub at_us: i64,
    /// The simulation step (event number) the entry belongs to.
    pub step: u64,
    /// Where it happened.
    pub node: Node,
    /// The other end of a message, if any.
    pub peer: Option<Node>,
    /// What happened; after a space, the `/`-separated names of `args`.
    pub tag: &'static str,
    pub args: [i64; 4],
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<8} {:>9.3}ms {:<4}",
            self.step,
            self.at_us as f64 / 1000.0,
            self.node.to_string()
        )?;
        match self.peer {
            Some(p) => write!(f, " <> {:<4} ", p.to_string())?,
            None => write!(f, "         ")?,
        }
        let (name, labels) = self.tag.split_once(' ').unwrap_or((self.tag, ""));
        write!(f, "{name}")?;
        if !labels.is_empty() {
            let n = labels.split('/').count().min(4);
            let values: Vec<String> = self.args[..n].iter().map(i64::to_string).collect();
            write!(f, " {labels}={}", values.join("/"))?;
        }
        Ok(())
    }
}

/// The ring of recent entries and the running hash of all of them.
#[derive(Debug)]
pub struct Trace {
    ring: VecDeque<TraceEntry>,
    hash: u64,
    count: u64,
    /// Also keep every entry (for `--trace-all`); off by default.
    all: Option<Vec<TraceEntry>>,
    /// The current step and time, stamped on every entry.
    pub step: u64,
    pub now_us: i64,
}

impl Trace {
    pub fn new(keep_all: bool) -> Trace {
        Trace {
            ring: VecDeque::with_capacity(TRACE_KEPT + 1),
            hash: 0xCBF2_9CE4_8422_2325,
            count: 0,
            all: keep_all.then(Vec::new),
            step: 0,
            now_us: 0,
        }
    }

    pub fn push(&mut self, node: Node, peer: Option<Node>, tag: &'static str, args: [i64; 4]) {
        let e = TraceEntry {
            at_us: self.now_us,
            step: self.step,
            node,
            peer,
            tag,
            args,
        };
        let mut h = self.hash ^ mix64(e.at_us as u64) ^ u64::from(node.code());
        h = mix64(h ^ peer.map_or(0xFFFF, |p| u64::from(p.code())));
        for b in tag.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        for a in args {
            h = mix64(h ^ a as u64);
        }
        self.hash = h;
        self.count += 1;
        if self.ring.len() == TRACE_KEPT {
            self.ring.pop_front();
        }
        self.ring.push_back(e);
        if let Some(all) = &mut self.all {
            all.push(e);
        }
    }

    /// The hash of every entry so far: equal for two runs of one seed.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The last [`TRACE_KEPT`] entries, oldest first.
    pub fn recent(&self) -> Vec<TraceEntry> {
        self.ring.iter().copied().collect()
    }

    /// Every entry, if kept.
    pub fn take_all(&mut self) -> Option<Vec<TraceEntry>> {
        self.all.take()
    }
}
