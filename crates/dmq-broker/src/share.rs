//! The broker's share-group state (KIP-932), in memory for now: the groups this broker
//! coordinates (`dmq_share::group::ShareGroup`), the share sessions of members fetching from
//! the partitions it leads, and those partitions' record states (`dmq_share::SharePartition`).
//!
//! Not durable yet (issue #19): a broker restart or a leader change starts a share-partition
//! over at the high watermark and members rejoin. The Kafka APIs are in `kafka/share.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use dmq_share::group::ShareGroup;
use dmq_share::SharePartition;

/// A member's share session on this broker (KIP-932 ShareFetch/ShareAcknowledge epochs).
#[derive(Debug, Clone, Default)]
pub struct ShareSession {
    /// The epoch the member's next request must carry.
    pub epoch: i32,
    /// (topic, partition) it fetches from here.
    pub partitions: BTreeSet<(String, i32)>,
}

/// What one share session request did to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStep {
    Opened,
    Continued,
    Closed,
}

impl ShareSession {
    /// The next epoch after `epoch` (wrapping past `i32::MAX` to 1, as Kafka does).
    pub fn next_epoch(epoch: i32) -> i32 {
        if epoch == i32::MAX {
            1
        } else {
            epoch + 1
        }
    }
}

/// Everything share-related on one broker, behind one lock (requests are short: no I/O but
/// page-cache reads happens under it, and never an await).
#[derive(Default)]
pub struct Shares {
    pub state: Mutex<ShareState>,
}

#[derive(Default)]
pub struct ShareState {
    /// Groups this broker coordinates, by group id.
    pub groups: HashMap<String, ShareGroup>,
    /// Share sessions, by (group, member).
    pub sessions: HashMap<(String, String), ShareSession>,
    /// Share-partitions this broker leads, by (group, topic, partition).
    pub partitions: HashMap<(String, String, i32), SharePartition>,
}

/// Kafka's share session errors.
pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

impl ShareState {
    /// Applies a request's session epoch (`0` opens, `-1` closes, else must match) and the
    /// partitions it adds and forgets. `Err` is the top-level error code.
    pub fn step_session(
        &mut self,
        group: &str,
        member: &str,
        epoch: i32,
        add: &[(String, i32)],
        forget: &[(String, i32)],
    ) -> Result<SessionStep, i16> {
        let key = (group.to_string(), member.to_string());
        match epoch {
            0 => {
                self.sessions.insert(
                    key,
                    ShareSession {
                        epoch: 1,
                        partitions: add.iter().cloned().collect(),
                    },
                );
                Ok(SessionStep::Opened)
            }
            -1 => match self.sessions.remove(&key) {
                Some(_) => Ok(SessionStep::Closed),
                None => Err(SHARE_SESSION_NOT_FOUND),
            },
            n => {
                let Some(s) = self.sessions.get_mut(&key) else {
                    return Err(SHARE_SESSION_NOT_FOUND);
                };
                if s.epoch != n {
                    return Err(INVALID_SHARE_SESSION_EPOCH);
                }
                s.partitions.extend(add.iter().cloned());
                for f in forget {
                    s.partitions.remove(f);
                }
                s.epoch = ShareSession::next_epoch(n);
                Ok(SessionStep::Continued)
            }
        }
    }

    /// The member is gone (session closed, left the group, or expired): its records in every
    /// share-partition of the group here are released.
    pub fn member_left(&mut self, group: &str, member: &str, now_ms: i64) {
        self.sessions
            .remove(&(group.to_string(), member.to_string()));
        for ((g, _, _), sp) in self.partitions.iter_mut() {
            if g == group {
                sp.member_left(member, now_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kip932_share_session_epochs() {
        let mut s = ShareState::default();
        let p = |n: i32| ("t".to_string(), n);
        assert_eq!(
            s.step_session("g", "m", 1, &[], &[]),
            Err(SHARE_SESSION_NOT_FOUND)
        );
        assert_eq!(
            s.step_session("g", "m", 0, &[p(0)], &[]),
            Ok(SessionStep::Opened)
        );
        assert_eq!(
            s.step_session("g", "m", 2, &[], &[]),
            Err(INVALID_SHARE_SESSION_EPOCH)
        );
        assert_eq!(
            s.step_session("g", "m", 1, &[p(1)], &[p(0)]),
            Ok(SessionStep::Continued)
        );
        let session = &s.sessions[&("g".to_string(), "m".to_string())];
        assert_eq!(session.epoch, 2);
        assert_eq!(session.partitions, BTreeSet::from([p(1)]));
        assert_eq!(
            s.step_session("g", "m", 1, &[], &[]),
            Err(INVALID_SHARE_SESSION_EPOCH)
        );
        assert_eq!(
            s.step_session("g", "m", -1, &[], &[]),
            Ok(SessionStep::Closed)
        );
        assert_eq!(
            s.step_session("g", "m", -1, &[], &[]),
            Err(SHARE_SESSION_NOT_FOUND)
        );
        assert_eq!(ShareSession::next_epoch(i32::MAX), 1);
    }
}
