//! The seam between a simulated process and the world: a process handles one event and leaves
//! what it wants done (messages, timers) and what the checker should know (observations) in
//! an [`Io`]; the world performs them after the handler returns. No process touches the queue,
//! the network or another process directly, so every handler is a plain function of its state
//! and the event.

use dmq_types::BrokerId;

use crate::msg::{Msg, Timer};
use crate::net::Node;
use crate::trace::Trace;

/// Something a process wants done.
#[derive(Debug)]
pub enum Out {
    Send {
        to: Node,
        /// Deliver only to this incarnation of `to` (an answer to a request of that process);
        /// `None`: to whichever process runs there at delivery.
        to_inc: Option<u64>,
        msg: Msg,
    },
    Timer {
        after_us: i64,
        timer: Timer,
    },
}

/// What the checker needs to know beyond the processes' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Obs {
    /// A replica applied leadership of `partition` for `epoch`.
    BecameLeader {
        broker: BrokerId,
        partition: i32,
        epoch: i32,
    },
    /// A client received the acknowledgment of an acks=all record.
    Acked {
        partition: i32,
        offset: i64,
        value: u64,
    },
}

/// One handler's context.
pub struct Io<'a> {
    pub now_us: i64,
    pub me: Node,
    pub out: &'a mut Vec<Out>,
    pub obs: &'a mut Vec<Obs>,
    pub trace: &'a mut Trace,
}

impl Io<'_> {
    /// Virtual milliseconds, the unit every replication rule takes.
    pub fn now_ms(&self) -> i64 {
        self.now_us / 1000
    }

    pub fn send(&mut self, to: Node, msg: Msg) {
        self.out.push(Out::Send {
            to,
            to_inc: None,
            msg,
        });
    }

    /// An answer to a request of incarnation `inc` of `to`.
    pub fn reply(&mut self, to: Node, inc: u64, msg: Msg) {
        self.out.push(Out::Send {
            to,
            to_inc: Some(inc),
            msg,
        });
    }

    pub fn timer_ms(&mut self, after_ms: i64, timer: Timer) {
        self.out.push(Out::Timer {
            after_us: after_ms.max(0) * 1000,
            timer,
        });
    }

    pub fn observe(&mut self, obs: Obs) {
        self.out_note_obs(obs);
        self.obs.push(obs);
    }

    fn out_note_obs(&mut self, obs: Obs) {
        match obs {
            Obs::BecameLeader {
                partition, epoch, ..
            } => self.note(
                "became-leader p/epoch",
                [i64::from(partition), i64::from(epoch), 0, 0],
            ),
            Obs::Acked {
                partition,
                offset,
                value,
            } => self.note(
                "acked p/offset/value",
                [i64::from(partition), offset, value as i64, 0],
            ),
        }
    }

    /// A trace entry for something this process decided.
    pub fn note(&mut self, tag: &'static str, args: [i64; 4]) {
        self.trace.push(self.me, None, tag, args);
    }
}
