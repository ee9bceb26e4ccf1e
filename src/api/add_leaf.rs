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
use super::rate_limit::{verify_token, RateLimiter};
use crate::merkle::Hash;
use crate::metrics::Metrics;
use crate::replicated::{GroupCommit, LeafState, ProposeError};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::leaf::AddLeafRequest;
use crate::sigsum::token::SubmitToken;
use quorumlog_raft::{ForwardFn, NodeHandle, WriteError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// An HTTP answer: status and, for errors, a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Body text (empty for 200 and 202).
    pub message: String,
}

impl Answer {
    fn ok() -> Answer {
        Answer {
            status: 200,
            message: String::new(),
        }
    }
    fn accepted() -> Answer {
        Answer {
            status: 202,
            message: String::new(),
        }
    }
    fn error(status: u16, message: impl Into<String>) -> Answer {
        Answer {
            status,
            message: message.into(),
        }
    }
}

/// What a follower sends the leader.
#[derive(Serialize, Deserialize)]
struct Forwarded {
    body: Vec<u8>,
    token: Option<String>,
}

/// Everything add-leaf needs on one node.
pub struct Submitter {
    pub node: NodeHandle,
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
    pub async fn submit(&self, body: &[u8], token: Option<&str>) -> Answer {
        let answer = self.submit_inner(body, token).await;
        self.metrics.add_leaf_answered(answer.status);
        answer
    }

    async fn submit_inner(&self, body: &[u8], token: Option<&str>) -> Answer {
        let request = match AddLeafRequest::parse(body) {
            Ok(r) => r,
            Err(e) => return Answer::error(400, format!("invalid add-leaf request: {e}")),
        };
        if let Some(t) = token {
            if let Err(e) = SubmitToken::parse_header(t) {
                return Answer::error(400, e.to_string());
            }
        }
        if self.known(&request.leaf().leaf_hash()) {
            return Answer::ok();
        }
        // During an election no node leads for a moment: keep trying (leader or forward)
        // until the wait runs out, so a failover costs clients latency, not errors.
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let answer = if self.node.raft().is_leader() {
                self.on_leader(request, token).await
            } else {
                self.forward(body, token).await
            };
            if answer.status != 503 || tokio::time::Instant::now() + pause >= deadline {
                return answer;
            }
            tracing::debug!(reason = %answer.message, "no leader to take add-leaf; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    async fn forward(&self, body: &[u8], token: Option<&str>) -> Answer {
        let forwarded = Forwarded {
            body: body.to_vec(),
            token: token.map(str::to_string),
        };
        let payload = match postcard::to_allocvec(&forwarded) {
            Ok(p) => p,
            Err(e) => return Answer::error(500, format!("encoding a forwarded request: {e}")),
        };
        match self.node.forward_to_leader(payload).await {
            Ok(reply) => postcard::from_bytes(&reply).unwrap_or_else(|e| {
                Answer::error(502, format!("undecodable answer from the leader: {e}"))
            }),
            Err(WriteError::NotLeader { .. }) => Answer::error(
                503,
                "no leader is known right now (an election may be in progress); retry shortly",
            ),
            Err(e) => Answer::error(503, format!("the leader could not be reached: {e}")),
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
    async fn on_leader(&self, request: AddLeafRequest, token: Option<&str>) -> Answer {
        let domain = match token.map(SubmitToken::parse_header) {
            None => None,
            Some(Err(e)) => return Answer::error(400, e.to_string()),
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
                        return Answer::error(
                            503,
                            format!("cannot check the submit token now: {e}"),
                        )
                    }
                    Err(e) => return Answer::error(400, format!("invalid submit token: {e}")),
                }
            }
        };
        let leaf = request.leaf();
        let charge = match self.limiter.acquire(&leaf.key_hash, domain.as_deref()) {
            Ok(c) => c,
            Err(e) => return Answer::error(429, e.to_string()),
        };
        if let Err(e) = leaf.verify(&request.public_key) {
            // Nothing is added, so nothing is charged.
            self.limiter.refund(charge);
            return Answer::error(403, format!("{e}"));
        }
        if self.known(&leaf.leaf_hash()) {
            self.limiter.refund(charge);
            return Answer::ok();
        }
        match tokio::time::timeout(self.wait, self.group_commit.propose(vec![leaf])).await {
            Ok(Ok(_)) => Answer::ok(),
            // The proposal goes on; a retry finds the leaf and gets 200.
            Err(_) => Answer::accepted(),
            Ok(Err(e)) => {
                self.limiter.refund(charge);
                match e {
                    ProposeError::Write(WriteError::NotLeader { .. }) => {
                        Answer::error(503, "leadership changed while committing; retry shortly")
                    }
                    ProposeError::Invalid(e) => {
                        Answer::error(500, format!("the leaf could not be committed: {e}"))
                    }
                    e => Answer::error(503, format!("the leaf could not be committed: {e}")),
                }
            }
        }
    }

    /// The handler the leader runs for requests forwarded by followers.
    pub fn forward_handler(self: Arc<Self>) -> ForwardFn {
        Arc::new(move |payload| {
            let this = self.clone();
            Box::pin(async move {
                let answer = match postcard::from_bytes::<Forwarded>(&payload) {
                    Err(e) => Answer::error(400, format!("undecodable forwarded request: {e}")),
                    Ok(f) => match AddLeafRequest::parse(&f.body) {
                        Err(e) => Answer::error(400, format!("invalid add-leaf request: {e}")),
                        Ok(r) => this.on_leader(r, f.token.as_deref()).await,
                    },
                };
                this.metrics.add_leaf_answered(answer.status);
                postcard::to_allocvec(&answer).unwrap_or_default()
            })
        })
    }
}
