//! add-leaf: the checks in Sigsum's order, deduplication, group commit, and forwarding
//! from followers to the leader.
//!
//! Any node takes the request. It parses the body and the token header (400), and answers
//! 200 at once if the leaf is already in its tree (a known leaf costs no rate limit). The
//! leader checks the token against DNS (400; 503 if DNS fails), the rate limit (429) and
//! the submitter's signature (403), then commits the leaf through group commit: 200 once it
//! is committed by a majority and applied, 202 if that takes longer than the configured
//! wait (the leaf is still committed; a retry then gets 200).
//!
//! A follower checks token and signature itself and forwards only the checked leaf, batched
//! with others ([`super::forward`]), over the cluster's mutually authenticated gRPC channel;
//! the leader then charges the rate limit and commits. So signature checks, the bulk of the
//! per-leaf CPU, spread over every node that takes requests. With
//! `check_submissions_on = "leader"` a follower forwards the raw request instead. Either way
//! one base URL behind a load balancer works.

use super::dns::TxtResolver;
use super::forward::{CheckedLeaf, ForwardQueue, Forwarded};
use super::rate_limit::{Charge, RateLimiter};
use super::submit_token::verify_token;
use crate::merkle::Hash;
use crate::metrics::Metrics;
use crate::replicated::{GroupCommit, LeafState, ProposeError};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::leaf::{AddLeafRequest, TreeLeaf};
use crate::sigsum::token::SubmitToken;
use crate::wire;
use axum::http::StatusCode;
use prost::Message;
use quorumlog_raft::{NodeHandle, WriteError};
use std::sync::Arc;
use std::time::Duration;

/// What became of one add-leaf request. It crosses from the leader to the follower that
/// forwarded the request (as `AddLeafAnswer`, proto/log.proto); the node that answers the
/// client maps it to HTTP ([`AddLeafOutcome::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddLeafOutcome {
    /// Committed by a majority and applied.
    Added,
    /// Proposed; the commit outlasted the wait. The leaf is still committed, and a retry
    /// finds it.
    Pending,
    /// The request or its token is malformed or invalid.
    Invalid(String),
    /// The submitter's signature does not verify.
    BadSignature(String),
    /// Over the submitter's rate limit.
    RateLimited(String),
    /// Cannot be handled now (no leader, leadership moving, DNS down): retry.
    Unavailable(String),
    /// The node failed to handle it.
    Failed(String),
}

impl AddLeafOutcome {
    /// The HTTP status a client gets for it.
    pub fn http_status(&self) -> StatusCode {
        match self {
            AddLeafOutcome::Added => StatusCode::OK,
            AddLeafOutcome::Pending => StatusCode::ACCEPTED,
            AddLeafOutcome::Invalid(_) => StatusCode::BAD_REQUEST,
            AddLeafOutcome::BadSignature(_) => StatusCode::FORBIDDEN,
            AddLeafOutcome::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AddLeafOutcome::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AddLeafOutcome::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The explanation sent with an error (empty for `Added` and `Pending`).
    pub fn message(&self) -> &str {
        match self {
            AddLeafOutcome::Added | AddLeafOutcome::Pending => "",
            AddLeafOutcome::Invalid(m)
            | AddLeafOutcome::BadSignature(m)
            | AddLeafOutcome::RateLimited(m)
            | AddLeafOutcome::Unavailable(m)
            | AddLeafOutcome::Failed(m) => m,
        }
    }

    pub(crate) fn to_answer(&self) -> wire::AddLeafAnswer {
        use wire::AddLeafOutcome as W;
        let outcome = match self {
            AddLeafOutcome::Added => W::Added,
            AddLeafOutcome::Pending => W::Pending,
            AddLeafOutcome::Invalid(_) => W::Invalid,
            AddLeafOutcome::BadSignature(_) => W::BadSignature,
            AddLeafOutcome::RateLimited(_) => W::RateLimited,
            AddLeafOutcome::Unavailable(_) => W::Unavailable,
            AddLeafOutcome::Failed(_) => W::Failed,
        };
        wire::AddLeafAnswer {
            outcome: outcome.into(),
            message: self.message().to_string(),
            checked: Vec::new(),
            kt: None,
        }
    }

    /// Decodes the leader's answer; an answer this node cannot read is its own failure.
    fn from_wire(bytes: &[u8]) -> AddLeafOutcome {
        match wire::AddLeafAnswer::decode(bytes) {
            Ok(a) => AddLeafOutcome::from_answer(a),
            Err(e) => AddLeafOutcome::Failed(format!("undecodable answer from the leader: {e}")),
        }
    }

    /// The outcome a decoded answer carries (its per-leaf answers are not looked at).
    pub(crate) fn from_answer(answer: wire::AddLeafAnswer) -> AddLeafOutcome {
        use wire::AddLeafOutcome as W;
        let m = answer.message;
        match W::try_from(answer.outcome) {
            Ok(W::Added) => AddLeafOutcome::Added,
            Ok(W::Pending) => AddLeafOutcome::Pending,
            Ok(W::Invalid) => AddLeafOutcome::Invalid(m),
            Ok(W::BadSignature) => AddLeafOutcome::BadSignature(m),
            Ok(W::RateLimited) => AddLeafOutcome::RateLimited(m),
            Ok(W::Unavailable) => AddLeafOutcome::Unavailable(m),
            Ok(W::Failed) => AddLeafOutcome::Failed(m),
            Ok(W::Unspecified) | Err(_) => AddLeafOutcome::Failed(format!(
                "the leader answered with outcome {} this node does not know: {m}",
                answer.outcome
            )),
        }
    }
}

/// Everything add-leaf needs on one node.
pub struct Submitter {
    /// The replicated state (for deduplication).
    pub state: Arc<LeafState>,
    /// Group commit (used when this node leads).
    pub group_commit: GroupCommit,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// TXT lookups for submit tokens.
    pub resolver: Arc<dyn TxtResolver>,
    /// Accept tokens for the test domain.
    pub allow_test_domain: bool,
    /// Longest wait for a commit before answering 202.
    pub wait: Duration,
    /// Whether a follower checks token and signature itself and forwards checked leaves
    /// (through `forwarder`), or forwards the raw request for the leader to check.
    pub check_on_follower: bool,
    pub forwarder: ForwardQueue,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl Submitter {
    fn log_key(&self) -> &PublicKey {
        self.state.log_key()
    }

    /// Handles one add-leaf request on this node, forwarding it if this node does not lead.
    pub async fn submit(
        &self,
        node: &NodeHandle,
        body: &[u8],
        token: Option<&str>,
    ) -> AddLeafOutcome {
        let outcome = self.submit_inner(node, body, token).await;
        self.metrics
            .add_leaf_answered(outcome.http_status().as_u16());
        outcome
    }

    async fn submit_inner(
        &self,
        node: &NodeHandle,
        body: &[u8],
        token: Option<&str>,
    ) -> AddLeafOutcome {
        let request = match AddLeafRequest::parse(body) {
            Ok(r) => r,
            Err(e) => return AddLeafOutcome::Invalid(format!("invalid add-leaf request: {e}")),
        };
        if let Some(t) = token {
            if let Err(e) = SubmitToken::parse_header(t) {
                return AddLeafOutcome::Invalid(e.to_string());
            }
        }
        if self.known(&request.leaf().leaf_hash()) {
            return AddLeafOutcome::Added;
        }
        // During an election no node leads for a moment: keep trying (leader or forward)
        // until the wait runs out, so a failover costs clients latency, not errors.
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut pause = Duration::from_millis(20);
        let mut checked = None;
        loop {
            let outcome = if node.raft().is_leader() {
                self.on_leader(request, token).await
            } else if self.check_on_follower {
                self.check_and_forward(node, &request, body, token, &mut checked)
                    .await
            } else {
                self.forward(node, body, token).await
            };
            let AddLeafOutcome::Unavailable(reason) = &outcome else {
                return outcome;
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return outcome;
            }
            tracing::debug!(%reason, "no leader to take add-leaf; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// A follower's part when it checks submissions itself: check once (kept in `checked`
    /// across retries), then queue the leaf for the leader.
    async fn check_and_forward(
        &self,
        node: &NodeHandle,
        request: &AddLeafRequest,
        body: &[u8],
        token: Option<&str>,
        checked: &mut Option<CheckedLeaf>,
    ) -> AddLeafOutcome {
        let leaf = match checked {
            Some(c) => c.clone(),
            None => {
                let domain = match self.check_token(token).await {
                    Ok(d) => d,
                    Err(o) => return o,
                };
                let leaf = request.leaf();
                if let Err(e) = leaf.verify(&request.public_key) {
                    return AddLeafOutcome::BadSignature(e.to_string());
                }
                checked.insert(CheckedLeaf { leaf, domain }).clone()
            }
        };
        match self.forwarder.forward(leaf).await {
            Forwarded::Answer(o) => o,
            Forwarded::LeaderTooOld => self.forward(node, body, token).await,
        }
    }

    async fn forward(&self, node: &NodeHandle, body: &[u8], token: Option<&str>) -> AddLeafOutcome {
        let forwarded = wire::ForwardedAddLeaf {
            body: body.to_vec(),
            token: token.map(str::to_string),
            checked: Vec::new(),
            kt_update: None,
        };
        match node.forward_to_leader(forwarded.encode_to_vec()).await {
            Ok(reply) => AddLeafOutcome::from_wire(&reply),
            Err(WriteError::NotLeader { .. }) => AddLeafOutcome::Unavailable(
                "no leader is known right now (an election may be in progress); retry shortly"
                    .into(),
            ),
            Err(e) => AddLeafOutcome::Unavailable(format!("the leader could not be reached: {e}")),
        }
    }

    /// Whether the leaf is already in this node's tree (then it is committed).
    fn known(&self, hash: &Hash) -> bool {
        self.state
            .tree()
            .and_then(|t| t.index_of(hash).ok().flatten())
            .is_some()
    }

    /// Verifies the submit token, if any, against DNS: its domain, or the answer to give.
    async fn check_token(&self, token: Option<&str>) -> Result<Option<String>, AddLeafOutcome> {
        let Some(header) = token else {
            return Ok(None);
        };
        let t = SubmitToken::parse_header(header)
            .map_err(|e| AddLeafOutcome::Invalid(e.to_string()))?;
        match verify_token(
            self.resolver.as_ref(),
            &t,
            self.log_key(),
            self.allow_test_domain,
        )
        .await
        {
            Ok(d) => Ok(Some(d)),
            // sigsum-submit gives up on a 4xx: a DNS outage must not look final.
            Err(e) if e.is_transient() => Err(AddLeafOutcome::Unavailable(format!(
                "cannot check the submit token now: {e}"
            ))),
            Err(e) => Err(AddLeafOutcome::Invalid(format!(
                "invalid submit token: {e}"
            ))),
        }
    }

    /// The leader's part: token, rate limit, signature, commit.
    async fn on_leader(&self, request: AddLeafRequest, token: Option<&str>) -> AddLeafOutcome {
        let domain = match self.check_token(token).await {
            Ok(d) => d,
            Err(o) => return o,
        };
        let leaf = request.leaf();
        let charge = match self.limiter.acquire(&leaf.key_hash, domain.as_deref()) {
            Ok(c) => c,
            Err(e) => return AddLeafOutcome::RateLimited(e.to_string()),
        };
        if let Err(e) = leaf.verify(&request.public_key) {
            // Nothing is added, so nothing is charged.
            self.limiter.refund(charge);
            return AddLeafOutcome::BadSignature(e.to_string());
        }
        if self.known(&leaf.leaf_hash()) {
            self.limiter.refund(charge);
            return AddLeafOutcome::Added;
        }
        self.commit(vec![leaf], vec![charge]).await
    }

    /// The leader's part for leaves a follower checked: rate limits, then one proposal
    /// for all of them. One outcome per leaf, in order.
    async fn admit_checked(&self, leaves: Vec<CheckedLeaf>) -> Vec<AddLeafOutcome> {
        let mut outcomes: Vec<Option<AddLeafOutcome>> = vec![None; leaves.len()];
        let (mut admitted, mut charges) = (Vec::new(), Vec::new());
        for (slot, c) in outcomes.iter_mut().zip(&leaves) {
            if self.known(&c.leaf.leaf_hash()) {
                *slot = Some(AddLeafOutcome::Added);
                continue;
            }
            match self.limiter.acquire(&c.leaf.key_hash, c.domain.as_deref()) {
                Ok(charge) => {
                    admitted.push(c.leaf);
                    charges.push(charge);
                }
                Err(e) => *slot = Some(AddLeafOutcome::RateLimited(e.to_string())),
            }
        }
        // A batch from a follower may exceed what one proposal takes.
        let per_proposal = self.group_commit.max_leaves();
        let mut proposals = Vec::new();
        let mut charges = charges.into_iter();
        for leaves in admitted.chunks(per_proposal) {
            let c: Vec<Charge> = charges.by_ref().take(leaves.len()).collect();
            proposals.push(self.commit(leaves.to_vec(), c));
        }
        let mut results = futures::future::join_all(proposals).await.into_iter();
        let mut current: Option<(AddLeafOutcome, usize)> = None;
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    if current.as_ref().is_none_or(|(_, left)| *left == 0) {
                        let next = results.next().unwrap_or_else(|| {
                            AddLeafOutcome::Failed("a proposal lost its answer".into())
                        });
                        current = Some((next, per_proposal));
                    }
                    let (outcome, left) = current.as_mut().expect("set just above");
                    *left -= 1;
                    outcome.clone()
                })
            })
            .collect()
    }

    /// Commits `leaves` (charged `charges`) through group commit; on failure the charges
    /// are refunded, since nothing was added.
    async fn commit(&self, leaves: Vec<TreeLeaf>, charges: Vec<Charge>) -> AddLeafOutcome {
        match tokio::time::timeout(self.wait, self.group_commit.propose(leaves)).await {
            Ok(Ok(_)) => AddLeafOutcome::Added,
            // The proposal goes on; a retry finds the leaf and gets 200.
            Err(_) => AddLeafOutcome::Pending,
            Ok(Err(e)) => {
                for c in charges {
                    self.limiter.refund(c);
                }
                match e {
                    ProposeError::Write(WriteError::NotLeader { .. }) => {
                        AddLeafOutcome::Unavailable(
                            "leadership changed while committing; retry shortly".into(),
                        )
                    }
                    ProposeError::Invalid(e) => {
                        AddLeafOutcome::Failed(format!("the leaf could not be committed: {e}"))
                    }
                    e => {
                        AddLeafOutcome::Unavailable(format!("the leaf could not be committed: {e}"))
                    }
                }
            }
        }
    }

    /// The leader's part for what a follower forwarded: one raw request, or a batch of
    /// checked leaves. Returns the encoded answer.
    pub async fn forwarded(&self, f: wire::ForwardedAddLeaf) -> Vec<u8> {
        if f.checked.is_empty() {
            let outcome = match AddLeafRequest::parse(&f.body) {
                Err(e) => AddLeafOutcome::Invalid(format!("invalid add-leaf request: {e}")),
                Ok(r) => self.on_leader(r, f.token.as_deref()).await,
            };
            self.metrics
                .add_leaf_answered(outcome.http_status().as_u16());
            return outcome.to_answer().encode_to_vec();
        }
        let n = f.checked.len();
        let mut leaves = Vec::with_capacity(n);
        let mut bad = Vec::new();
        for (i, w) in f.checked.into_iter().enumerate() {
            match CheckedLeaf::from_wire(w) {
                Some(c) => leaves.push(c),
                None => bad.push(i),
            }
        }
        let mut outcomes = self.admit_checked(leaves).await.into_iter();
        let answers: Vec<AddLeafOutcome> = (0..n)
            .map(|i| {
                if bad.contains(&i) {
                    AddLeafOutcome::Invalid(format!("forwarded leaf {i} is not a 128-byte leaf"))
                } else {
                    outcomes.next().unwrap_or_else(|| {
                        AddLeafOutcome::Failed("a forwarded leaf lost its answer".into())
                    })
                }
            })
            .collect();
        self.metrics
            .add_leaf_answered_all(answers.iter().map(|o| o.http_status().as_u16()));
        wire::AddLeafAnswer {
            outcome: wire::AddLeafOutcome::Added.into(),
            message: String::new(),
            checked: answers.iter().map(AddLeafOutcome::to_answer).collect(),
            kt: None,
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_survives_the_wire() {
        for o in [
            AddLeafOutcome::Added,
            AddLeafOutcome::Pending,
            AddLeafOutcome::Invalid("bad".into()),
            AddLeafOutcome::BadSignature("sig".into()),
            AddLeafOutcome::RateLimited("slow down".into()),
            AddLeafOutcome::Unavailable("election".into()),
            AddLeafOutcome::Failed("disk".into()),
        ] {
            assert_eq!(AddLeafOutcome::from_wire(&o.to_answer().encode_to_vec()), o);
        }
    }

    #[test]
    fn an_unknown_or_garbled_answer_is_a_failure() {
        let unknown = wire::AddLeafAnswer {
            outcome: 99,
            message: "from the future".into(),
            checked: Vec::new(),
            kt: None,
        };
        let got = AddLeafOutcome::from_wire(&unknown.encode_to_vec());
        assert!(
            matches!(&got, AddLeafOutcome::Failed(m) if m.contains("99") && m.contains("from the future")),
            "{got:?}"
        );
        let got = AddLeafOutcome::from_wire(&[0xff, 0xff, 0xff]);
        assert!(matches!(got, AddLeafOutcome::Failed(_)), "{got:?}");
    }
}
