//! Pre-vote (Raft thesis §9.6) in front of openraft 0.9, which has none.
//!
//! Without it a node that was cut off for longer than the election timeout (paused, partitioned)
//! campaigns with a higher term as soon as it is back, and that term makes the healthy leader step
//! down: metadata writes are refused until a new leader is elected. openraft's leader lease does
//! not help, because the rejected candidate keeps its higher term.
//!
//! So openraft's own election timer is off (`Config::enable_elect = false`) and [`PreVote::run`]
//! decides when this node campaigns:
//!
//! ```text
//!  silent for a campaign timeout ─▶ POST /api/v1/raft/pre-vote {candidateId, nextTerm, lastLogId}
//!  (no leader heard, no attempt)       to every other voter; nobody changes its term
//!                                   ─▶ a majority (counting itself) grants ─▶ raft.trigger().elect()
//!                                   ─▶ otherwise: wait another campaign timeout, ask again
//! ```
//!
//! A voter grants ([`decide`]) unless it is the leader, it has heard from a leader within the
//! stickiness window, or the candidate's log is behind its own — the checks openraft's real vote
//! makes, minus the term change. A leader can therefore only be deposed once a majority has lost
//! it.
//!
//! "Heard from a leader" is openraft's own record: the vote's last-modified time, which every
//! AppendEntries (heartbeats included) or InstallSnapshot from the current leader refreshes, and
//! which is set at startup, so a node that just restarted does not help anyone depose a leader it
//! has not had time to hear from. A committed vote is a leader's; an uncommitted one belongs to an
//! election (this node campaigned, or granted its vote), when no leader is known.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::{LogId, ServerState, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Raft;

/// The pre-vote RPC's path under a member's base URL.
pub const PRE_VOTE_PATH: &str = "/api/v1/raft/pre-vote";

/// "Would you vote for me if I campaigned now?" Answering changes nothing on the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreVoteRequest {
    pub candidate_id: u64,
    /// The term the candidate would campaign in (its current term + 1); for the logs only.
    pub next_term: u64,
    /// The candidate's last log id, compared as openraft's vote compares it.
    pub last_log_id: Option<LogId<u64>>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreVoteResponse {
    pub granted: bool,
    /// The receiver's current term.
    pub term: u64,
    /// Why the pre-vote was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// What a node knows of itself when it asks for or answers a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalView {
    pub state: ServerState,
    /// This node's vote: committed when it is a leader's (the leader this node follows).
    pub vote: Vote<u64>,
    /// How long ago the vote was last set or refreshed (by the leader's AppendEntries, by granting
    /// a vote, by campaigning, or by starting up). `None`: never.
    pub vote_age: Option<Duration>,
    pub last_log_id: Option<LogId<u64>>,
    /// The voters of the effective membership.
    pub voters: Vec<u64>,
}

impl LocalView {
    /// The state of this node's Raft, read from openraft's core. `None` once it has stopped.
    pub async fn read(raft: &Raft) -> Option<Self> {
        let (state, vote, vote_age, voters) = raft
            .with_raft_state(|st| {
                (
                    st.server_state,
                    *st.vote_ref(),
                    st.vote_last_modified().map(|t| t.elapsed()),
                    st.membership_state
                        .effective()
                        .voter_ids()
                        .collect::<Vec<_>>(),
                )
            })
            .await
            .ok()?;
        // The core reports its last log id in the data metrics after every step it takes.
        let last_log_id = raft.data_metrics().borrow().last_log;
        Some(Self {
            state,
            vote,
            vote_age,
            last_log_id,
            voters,
        })
    }

    /// True when a leader refreshed this node's vote less than `window` ago.
    fn heard_leader_within(&self, window: Duration) -> bool {
        self.vote.is_committed() && self.vote_age.is_some_and(|age| age < window)
    }
}

/// Why a pre-vote is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node is the leader: it has not lost itself.
    Leader,
    /// This node is shutting down.
    Stopped,
    /// The candidate is not a voter of this node's membership.
    NotVoter,
    /// A leader was heard from this recently (leader stickiness).
    LeaderHeard { ago: Duration },
    /// The candidate's last log id is not at least as up to date as this node's.
    LogBehind {
        candidate: Option<LogId<u64>>,
        mine: Option<LogId<u64>>,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Leader => write!(f, "I am the leader"),
            Self::Stopped => write!(f, "I am shutting down"),
            Self::NotVoter => write!(f, "the candidate is not a voter"),
            Self::LeaderHeard { ago } => write!(f, "I heard from the leader {ago:?} ago"),
            Self::LogBehind { candidate, mine } => write!(
                f,
                "candidate's last log id {} is behind mine {}",
                show(candidate),
                show(mine)
            ),
        }
    }
}

fn show(log_id: &Option<LogId<u64>>) -> String {
    log_id.map_or_else(|| "none".to_string(), |l| l.to_string())
}

/// The pre-vote decision of a voter in state `me` for candidate `candidate` whose last log id is
/// `candidate_last_log_id`. `stickiness`: how long a leader's message keeps this node from
/// granting.
pub fn decide(
    me: &LocalView,
    candidate: u64,
    candidate_last_log_id: Option<&LogId<u64>>,
    stickiness: Duration,
) -> Result<(), Refusal> {
    match me.state {
        ServerState::Leader => return Err(Refusal::Leader),
        ServerState::Shutdown => return Err(Refusal::Stopped),
        ServerState::Follower | ServerState::Candidate | ServerState::Learner => {}
    }
    if !me.voters.contains(&candidate) {
        return Err(Refusal::NotVoter);
    }
    if me.heard_leader_within(stickiness) {
        return Err(Refusal::LeaderHeard {
            ago: me.vote_age.unwrap_or_default(),
        });
    }
    // openraft's vote check: LogId is ordered by (term, leader node, index); `None` is the
    // smallest. A log id that is not comparable is not "at least as up to date".
    if candidate_last_log_id >= me.last_log_id.as_ref() {
        Ok(())
    } else {
        Err(Refusal::LogBehind {
            candidate: candidate_last_log_id.copied(),
            mine: me.last_log_id,
        })
    }
}

/// How long this node waits without hearing from a leader (and since its last attempt) before it
/// asks for pre-votes: openraft's own rule with our timings. While it follows a leader (committed
/// vote): `election_timeout` + up to a fifth of it. While an election is under way (uncommitted
/// vote): 0.4–0.6 × `election_timeout`, as openraft retries a failed campaign. `jitter` ∈ [0, 1).
pub fn campaign_timeout(follows_leader: bool, election_timeout: Duration, jitter: f64) -> Duration {
    let base = if follows_leader {
        election_timeout
    } else {
        election_timeout * 2 / 5
    };
    base + (election_timeout / 5).mul_f64(jitter.clamp(0.0, 1.0))
}

/// How recently a leader must have been heard from for a voter to refuse a pre-vote: one election
/// timeout less one heartbeat interval (a candidate waits at least the election timeout since the
/// leader's last heartbeat reached *it*; the voter's may have come up to one interval later), and
/// never less than openraft's leader lease (`election_timeout_max` = 0.6 × `election_timeout`),
/// which refuses the real vote that follows a granted pre-vote.
pub fn stickiness(election_timeout: Duration, heartbeat_interval: Duration) -> Duration {
    election_timeout
        .saturating_sub(heartbeat_interval)
        .max(election_timeout * 3 / 5 + Duration::from_millis(1))
}

/// A uniformly random number in [0, 1).
fn random_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// The pre-vote machinery of one node: answers other voters and runs this node's election timer.
#[derive(Clone)]
pub struct PreVote {
    raft: Raft,
    node_id: u64,
    /// Quorum members: Raft id → HTTP base URL.
    members: BTreeMap<u64, String>,
    http: reqwest::Client,
    election_timeout: Duration,
    heartbeat_interval: Duration,
}

impl PreVote {
    pub fn new(
        raft: Raft,
        node_id: u64,
        members: BTreeMap<u64, String>,
        http: reqwest::Client,
        election_timeout: Duration,
        heartbeat_interval: Duration,
    ) -> Self {
        Self {
            raft,
            node_id,
            members,
            http,
            election_timeout,
            heartbeat_interval,
        }
    }

    /// Answers another voter's pre-vote request. Changes nothing here.
    pub async fn answer(&self, req: &PreVoteRequest) -> PreVoteResponse {
        let Some(me) = LocalView::read(&self.raft).await else {
            return PreVoteResponse {
                granted: false,
                term: 0,
                refused: Some(Refusal::Stopped.to_string()),
            };
        };
        let verdict = decide(
            &me,
            req.candidate_id,
            req.last_log_id.as_ref(),
            stickiness(self.election_timeout, self.heartbeat_interval),
        );
        tracing::debug!(
            candidate = req.candidate_id,
            next_term = req.next_term,
            ?verdict,
            "pre-vote request"
        );
        PreVoteResponse {
            granted: verdict.is_ok(),
            term: me.vote.leader_id.term,
            refused: verdict.err().map(|r| r.to_string()),
        }
    }

    /// The election timer: campaigns (`raft.trigger().elect()`) only after a majority of voters
    /// granted a pre-vote. Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut jitter = random_fraction();
        let mut last_attempt: Option<Instant> = None;
        loop {
            let wait = match LocalView::read(&self.raft).await {
                None => self.heartbeat_interval,
                Some(me)
                    if me.state == ServerState::Leader || !me.voters.contains(&self.node_id) =>
                {
                    self.heartbeat_interval
                }
                Some(me) => {
                    let timeout =
                        campaign_timeout(me.vote.is_committed(), self.election_timeout, jitter);
                    let quiet = me
                        .vote_age
                        .unwrap_or(Duration::MAX)
                        .min(last_attempt.map_or(Duration::MAX, |t| t.elapsed()));
                    if quiet >= timeout {
                        last_attempt = Some(Instant::now());
                        jitter = random_fraction();
                        self.try_campaign(&me).await;
                        Duration::ZERO
                    } else {
                        timeout - quiet
                    }
                }
            };
            // Re-read at least every heartbeat interval: a leader may step down, or an election
            // end, at any time.
            let wait = wait
                .min(self.heartbeat_interval)
                .max(Duration::from_millis(5));
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pre-vote round; campaigns when a majority granted and nothing changed meanwhile.
    async fn try_campaign(&self, me: &LocalView) {
        let req = PreVoteRequest {
            candidate_id: self.node_id,
            next_term: me.vote.leader_id.term + 1,
            last_log_id: me.last_log_id,
        };
        let (won, refusals) = self.pre_vote_round(&me.voters, &req).await;
        if !won {
            tracing::info!(
                node = self.node_id,
                next_term = req.next_term,
                refusals = ?refusals,
                "pre-vote lost: not campaigning"
            );
            return;
        }
        // A leader may have appeared (or this node granted someone's vote) during the round.
        let Some(now) = LocalView::read(&self.raft).await else {
            return;
        };
        if now.state == ServerState::Leader || now.vote != me.vote {
            tracing::info!(
                node = self.node_id,
                vote = %now.vote,
                "pre-vote won, but the vote changed meanwhile: not campaigning"
            );
            return;
        }
        tracing::info!(
            node = self.node_id,
            term = req.next_term,
            "pre-vote won by a majority: campaigning"
        );
        if let Err(e) = self.raft.trigger().elect().await {
            tracing::warn!("cannot start an election: {e}");
        }
    }

    /// Asks every other voter at once; returns as soon as a majority (counting this node) has
    /// granted, else when every answer is in, with the refusals.
    async fn pre_vote_round(&self, voters: &[u64], req: &PreVoteRequest) -> (bool, Vec<String>) {
        let needed = voters.len() / 2 + 1;
        let mut granted = usize::from(voters.contains(&self.node_id));
        let mut refusals = Vec::new();
        if granted >= needed {
            return (true, refusals);
        }
        let mut answers: FuturesUnordered<_> = voters
            .iter()
            .filter(|id| **id != self.node_id)
            .map(|id| async move { (*id, self.ask(*id, req).await) })
            .collect();
        while let Some((id, answer)) = answers.next().await {
            match answer {
                Ok(resp) if resp.granted => {
                    granted += 1;
                    if granted >= needed {
                        return (true, refusals);
                    }
                }
                Ok(resp) => refusals.push(format!(
                    "node {id} (term {}): {}",
                    resp.term,
                    resp.refused.unwrap_or_default()
                )),
                Err(e) => refusals.push(format!("node {id}: {e}")),
            }
        }
        (false, refusals)
    }

    async fn ask(&self, id: u64, req: &PreVoteRequest) -> Result<PreVoteResponse, String> {
        let base = self
            .members
            .get(&id)
            .ok_or_else(|| "not a known member".to_string())?;
        let resp = self
            .http
            .post(format!("{}{PRE_VOTE_PATH}", base.trim_end_matches('/')))
            // A voter that does not answer within half an election timeout counts as a refusal;
            // the round ends as soon as a majority granted anyway.
            .timeout(self.election_timeout / 2)
            .json(req)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        resp.json().await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_id(term: u64, leader: u64, index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(
            openraft::CommittedLeaderId::new(term, leader),
            index,
        ))
    }

    fn view(
        state: ServerState,
        vote: Vote<u64>,
        vote_age_ms: Option<u64>,
        last: Option<LogId<u64>>,
    ) -> LocalView {
        LocalView {
            state,
            vote,
            vote_age: vote_age_ms.map(Duration::from_millis),
            last_log_id: last,
            voters: vec![1, 2, 3],
        }
    }

    /// (what the case shows, the voter, the candidate's last log id, grant or the refusal's kind)
    type Case = (
        &'static str,
        LocalView,
        Option<LogId<u64>>,
        Result<(), &'static str>,
    );

    #[test]
    fn pre_vote_decisions() {
        use ServerState::*;
        let window = Duration::from_millis(900);
        let led = Vote::new_committed(5, 1); // following leader 1 in term 5
        let campaign = Vote::new(6, 2); // voted for candidate 2 in term 6 (no leader known)
        let mine = log_id(5, 1, 40);
        let cases: Vec<Case> = vec![
            (
                "a leader never grants",
                view(Leader, Vote::new_committed(5, 3), Some(5_000), mine),
                log_id(5, 1, 99),
                Err("leader"),
            ),
            (
                "a stopping node never grants",
                view(Shutdown, led, Some(5_000), mine),
                log_id(5, 1, 99),
                Err("stopped"),
            ),
            (
                "leader heard 100 ms ago: sticky",
                view(Follower, led, Some(100), mine),
                log_id(5, 1, 40),
                Err("heard"),
            ),
            (
                "leader heard just inside the window: sticky",
                view(Follower, led, Some(899), mine),
                log_id(6, 3, 1),
                Err("heard"),
            ),
            (
                "leader silent for the window, same log: grant",
                view(Follower, led, Some(900), mine),
                log_id(5, 1, 40),
                Ok(()),
            ),
            (
                "leader silent, candidate's log longer: grant",
                view(Follower, led, Some(3_000), mine),
                log_id(5, 1, 41),
                Ok(()),
            ),
            (
                "leader silent, candidate's last entry of a later term: grant",
                view(Follower, led, Some(3_000), mine),
                log_id(6, 2, 30),
                Ok(()),
            ),
            (
                "leader silent, candidate's log shorter: refuse",
                view(Follower, led, Some(3_000), mine),
                log_id(5, 1, 39),
                Err("log"),
            ),
            (
                "leader silent, candidate's last entry of an earlier term: refuse",
                view(Follower, led, Some(3_000), mine),
                log_id(4, 1, 60),
                Err("log"),
            ),
            (
                "leader silent, candidate has no log at all: refuse",
                view(Follower, led, Some(3_000), mine),
                None,
                Err("log"),
            ),
            (
                "election under way (uncommitted vote), just granted: no leader to protect",
                view(Follower, campaign, Some(10), mine),
                log_id(5, 1, 40),
                Ok(()),
            ),
            (
                "a candidate grants an up-to-date peer",
                view(Candidate, Vote::new(6, 3), Some(10), mine),
                log_id(5, 1, 40),
                Ok(()),
            ),
            (
                "a candidate refuses a peer that is behind",
                view(Candidate, Vote::new(6, 3), Some(10), mine),
                log_id(5, 1, 20),
                Err("log"),
            ),
            (
                "pristine node (term 0, empty log): grant the first election",
                view(Follower, Vote::default(), Some(10), None),
                log_id(0, 0, 0),
                Ok(()),
            ),
            (
                "restarted node: startup counts as hearing its leader",
                view(Follower, led, Some(50), mine),
                log_id(5, 1, 40),
                Err("heard"),
            ),
            (
                "a candidate outside the membership: refuse",
                LocalView {
                    voters: vec![1, 3, 4],
                    ..view(Follower, led, Some(3_000), mine)
                },
                log_id(5, 1, 40),
                Err("not a voter"),
            ),
            (
                "no record of the vote's time: treated as silent",
                view(Follower, led, None, mine),
                log_id(5, 1, 40),
                Ok(()),
            ),
        ];
        for (name, me, candidate, expected) in cases {
            let got = decide(&me, 2, candidate.as_ref(), window);
            let kind = got.as_ref().map_err(|r| match r {
                Refusal::Leader => "leader",
                Refusal::Stopped => "stopped",
                Refusal::NotVoter => "not a voter",
                Refusal::LeaderHeard { .. } => "heard",
                Refusal::LogBehind { .. } => "log",
            });
            assert_eq!(kind.copied(), expected, "{name}: {got:?}");
        }
    }

    #[test]
    fn deciding_changes_nothing_and_refusals_explain_themselves() {
        let me = view(
            ServerState::Follower,
            Vote::new_committed(5, 1),
            Some(100),
            log_id(5, 1, 40),
        );
        let before = me.clone();
        let refused = decide(
            &me,
            2,
            log_id(5, 1, 40).as_ref(),
            Duration::from_millis(900),
        );
        assert_eq!(me, before);
        let text = refused.err().map(|r| r.to_string()).unwrap_or_default();
        assert!(text.contains("heard from the leader"), "{text}");
    }

    #[test]
    fn timings() {
        let t = Duration::from_millis(1_000);
        assert_eq!(campaign_timeout(true, t, 0.0), t);
        assert_eq!(campaign_timeout(true, t, 0.5), Duration::from_millis(1_100));
        assert!(campaign_timeout(true, t, 0.999_999) < Duration::from_millis(1_200));
        assert_eq!(campaign_timeout(false, t, 0.0), Duration::from_millis(400));
        assert!(campaign_timeout(false, t, 0.999_999) < Duration::from_millis(600));
        // A voter refuses for one election timeout less one heartbeat interval…
        assert_eq!(
            stickiness(t, Duration::from_millis(100)),
            Duration::from_millis(900)
        );
        // …and always longer than openraft's leader lease (0.6 T), so that a granted pre-vote
        // is followed by a vote the lease does not refuse.
        assert_eq!(
            stickiness(t, Duration::from_millis(500)),
            Duration::from_millis(601)
        );
        // The earliest campaign (T after the candidate's last heartbeat) comes after the window.
        assert!(campaign_timeout(true, t, 0.0) >= stickiness(t, Duration::from_millis(100)));
        for _ in 0..1_000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
