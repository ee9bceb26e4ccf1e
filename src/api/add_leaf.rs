//! add-leaf: the checks in Sigsum's order, deduplication, group commit, and forwarding
//! from followers to the leader.
//!
//! Any node takes the request. It parses the body and the token header (400), and answers
//! 200 at once if the leaf is already in its tree (a known leaf costs no rate limit). A
//! follower then forwards the raw request to the leader over the cluster's mutually
//! authenticated gRPC channel and relays the leader's answer; one base URL behind a load
//! balancer therefore works. The leader checks the token against DNS (400; 503 if DNS fails), the rate
//! limit (429) and the submitter's signature (403), then commits the leaf through group
//! commit: 200 once it is committed by a majority and applied, 202 if that takes longer
//! than the configured wait (the leaf is still committed; a retry then gets 200).

use super::dns::TxtResolver;
use super::rate_limit::RateLimiter;
use super::submit_token::verify_token;
use crate::merkle::Hash;
use crate::metrics::Metrics;
use crate::replicated::{GroupCommit, LeafState, ProposeError};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::leaf::AddLeafRequest;
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

    fn to_wire(&self) -> wire::AddLeafAnswer {
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
        }
    }

    /// Decodes the leader's answer; an answer this node cannot read is its own failure.
    fn from_wire(bytes: &[u8]) -> AddLeafOutcome {
        use wire::AddLeafOutcome as W;
        let answer = match wire::AddLeafAnswer::decode(bytes) {
            Ok(a) => a,
            Err(e) => {
                return AddLeafOutcome::Failed(format!("undecodable answer from the leader: {e}"))
            }
        };
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
        loop {
            let outcome = if node.raft().is_leader() {
                self.on_leader(request, token).await
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

    async fn forward(&self, node: &NodeHandle, body: &[u8], token: Option<&str>) -> AddLeafOutcome {
        let forwarded = wire::ForwardedAddLeaf {
            body: body.to_vec(),
            token: token.map(str::to_string),
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

    /// The leader's part: token, rate limit, signature, commit.
    async fn on_leader(&self, request: AddLeafRequest, token: Option<&str>) -> AddLeafOutcome {
        let domain = match token.map(SubmitToken::parse_header) {
            None => None,
            Some(Err(e)) => return AddLeafOutcome::Invalid(e.to_string()),
            Some(Ok(t)) => {
                match verify_token(
                    self.resolver.as_ref(),
                    &t,
                    self.log_key(),
                    self.allow_test_domain,
                )
                .await
                {
                    Ok(d) => Some(d),
                    // sigsum-submit gives up on a 4xx: a DNS outage must not look final.
                    Err(e) if e.is_transient() => {
                        return AddLeafOutcome::Unavailable(format!(
                            "cannot check the submit token now: {e}"
                        ))
                    }
                    Err(e) => return AddLeafOutcome::Invalid(format!("invalid submit token: {e}")),
                }
            }
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
        match tokio::time::timeout(self.wait, self.group_commit.propose(vec![leaf])).await {
            Ok(Ok(_)) => AddLeafOutcome::Added,
            // The proposal goes on; a retry finds the leaf and gets 200.
            Err(_) => AddLeafOutcome::Pending,
            Ok(Err(e)) => {
                self.limiter.refund(charge);
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

    /// The leader's part for a request a follower forwarded; returns the encoded answer.
    pub async fn forwarded(&self, payload: &[u8]) -> Vec<u8> {
        let outcome = match wire::ForwardedAddLeaf::decode(payload) {
            Err(e) => AddLeafOutcome::Invalid(format!("undecodable forwarded request: {e}")),
            Ok(f) => match AddLeafRequest::parse(&f.body) {
                Err(e) => AddLeafOutcome::Invalid(format!("invalid add-leaf request: {e}")),
                Ok(r) => self.on_leader(r, f.token.as_deref()).await,
            },
        };
        self.metrics
            .add_leaf_answered(outcome.http_status().as_u16());
        outcome.to_wire().encode_to_vec()
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
            assert_eq!(AddLeafOutcome::from_wire(&o.to_wire().encode_to_vec()), o);
        }
    }

    #[test]
    fn an_unknown_or_garbled_answer_is_a_failure() {
        let unknown = wire::AddLeafAnswer {
            outcome: 99,
            message: "from the future".into(),
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
