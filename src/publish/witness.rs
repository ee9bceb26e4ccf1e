//! Collecting witness cosignatures with C2SP tlog-witness `add-checkpoint`, the way log-go
//! does it: push the signed checkpoint with a consistency proof from the size the log
//! believes the witness has, and on `409 Conflict` retry once from the size the witness
//! reports.
//!
//! Everything a witness sends back is untrusted: bodies are read up to a limit, and a
//! cosignature is returned only after it verifies under the policy's key for the witness.

use crate::merkle::Hash;
use crate::sigsum::ascii::parse_digits;
use crate::sigsum::checkpoint::Checkpoint;
use crate::sigsum::cosignature::{Cosignature, NoteLineError};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::policy::PolicyWitness;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::fmt::Write as _;
use std::time::Duration;
use thiserror::Error;
use tracing::{debug, warn};

/// Content type of a 409 body carrying the witness's tree size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A cosignature response is a handful of short lines; anything much larger is not one.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// How much of an error body is kept for logs and error messages.
const ERROR_BODY_CHARS: usize = 200;

/// Why a witness did not cosign.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WitnessError {
    /// `409`: the witness's latest cosigned size is not the `old` size sent.
    #[error("witness has tree size {witness_size}, not the old size sent")]
    Conflict {
        /// The size the witness reported.
        witness_size: u64,
    },
    /// Any other non-200 status (403 bad log signature, 422 bad proof, ...).
    #[error("witness answered HTTP {status}: {body:?}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The request did not complete: connection, TLS, timeout.
    #[error("witness request failed: {0}")]
    Transport(String),
    /// The witness answered but its answer is unusable (no valid cosignature, bad size).
    #[error("bad witness response: {0}")]
    BadResponse(String),
    /// The policy lists no URL for the witness.
    #[error("the policy has no URL for this witness")]
    NoUrl,
    /// The log could not produce the consistency proof to send.
    #[error("no consistency proof from size {old}: {reason}")]
    Proof {
        /// The old size of the proof.
        old: u64,
        /// Why it failed.
        reason: String,
    },
}

/// An HTTP client for tlog-witness `add-checkpoint`. Cheap to clone; clones share
/// connections.
#[derive(Clone, Debug)]
pub struct WitnessClient {
    http: reqwest::Client,
}

impl WitnessClient {
    /// A client whose requests (connect, send and read) each give up after `timeout`.
    pub fn new(timeout: Duration) -> WitnessClient {
        // reqwest is built without a crypto provider of its own (Cargo.toml).
        quorumlog_raft::network::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirected POST turns into a GET; a witness that redirects is misconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("quorumlog/", env!("CARGO_PKG_VERSION")))
            .build()
            // Fails only if the TLS backend cannot initialise, which no input can cause.
            .expect("building the witness HTTP client");
        WitnessClient { http }
    }

    /// POSTs `<url>/add-checkpoint` (`url` is the witness's URL prefix from the policy)
    /// with `old_size`, the consistency proof from it and the log-signed `signed_note` of
    /// `checkpoint`.
    ///
    /// On 200 returns the first Ed25519 cosignature line by `witness_key` that verifies for
    /// `checkpoint`; lines by other keys or of other algorithms (ML-DSA) are skipped. A 409
    /// with a size body is [`WitnessError::Conflict`].
    pub async fn add_checkpoint(
        &self,
        url: &str,
        witness_key: &PublicKey,
        old_size: u64,
        proof: &[Hash],
        signed_note: &str,
        checkpoint: &Checkpoint,
    ) -> Result<Cosignature, WitnessError> {
        let endpoint = endpoint(url);
        let mut response = self
            .http
            .post(&endpoint)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(request_body(old_size, proof, signed_note))
            .send()
            .await
            .map_err(|e| WitnessError::Transport(error_chain(&e)))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (body, complete) = match read_limited(&mut response, MAX_RESPONSE_BYTES).await {
            Ok(read) => read,
            Err(e) if status == 200 => return Err(WitnessError::Transport(e)),
            // An error status says enough without its body.
            Err(_) => (Vec::new(), false),
        };
        debug!(%endpoint, status, old_size, size = checkpoint.size, "add-checkpoint answered");
        match status {
            200 if !complete => Err(WitnessError::BadResponse(format!(
                "response larger than {MAX_RESPONSE_BYTES} bytes"
            ))),
            200 => pick_cosignature(&body, witness_key, checkpoint),
            409 if content_type.as_deref().is_some_and(is_size_content_type) => {
                Err(WitnessError::Conflict {
                    witness_size: parse_size(&body)?,
                })
            }
            _ => Err(WitnessError::Status {
                status,
                body: excerpt(&body),
            }),
        }
    }
}

/// One log-go style round with one witness: `add-checkpoint` from `known_size` (the size
/// the log last saw the witness at, 0 if unknown), and on a conflict exactly one retry
/// from the size the witness reports. A witness ahead of `checkpoint` gets no retry:
/// there is no consistency proof backwards.
///
/// `proof_from(old)` gives the consistency proof from `old` to `checkpoint.size`; it is
/// called only for `0 < old < checkpoint.size`. Returns the verified cosignature and the
/// size the witness now has.
pub async fn cosign(
    client: &WitnessClient,
    witness: &PolicyWitness,
    known_size: u64,
    checkpoint: &Checkpoint,
    signed_note: &str,
    proof_from: &(dyn Fn(u64) -> Result<Vec<Hash>, String> + Sync),
) -> Result<(Cosignature, u64), WitnessError> {
    let url = witness.url.as_deref().ok_or(WitnessError::NoUrl)?;
    let attempt = |old: u64| async move {
        let proof = if old > 0 && old < checkpoint.size {
            proof_from(old).map_err(|reason| WitnessError::Proof { old, reason })?
        } else {
            Vec::new()
        };
        client
            .add_checkpoint(
                url,
                &witness.public_key,
                old,
                &proof,
                signed_note,
                checkpoint,
            )
            .await
    };
    let result = match attempt(known_size).await {
        Err(WitnessError::Conflict { witness_size }) if witness_size <= checkpoint.size => {
            debug!(
                witness = %witness.name,
                known_size,
                witness_size,
                "witness is at another size, retrying from its size"
            );
            attempt(witness_size).await
        }
        Err(WitnessError::Conflict { witness_size }) => {
            // The witness cosigned a larger tree of this log than the one being published.
            warn!(
                witness = %witness.name,
                witness_size,
                size = checkpoint.size,
                "witness is ahead of the checkpoint"
            );
            Err(WitnessError::Conflict { witness_size })
        }
        other => other,
    };
    result.map(|cosignature| (cosignature, checkpoint.size))
}

/// `<prefix>/add-checkpoint`, with exactly one slash between the two.
fn endpoint(url: &str) -> String {
    format!("{}/add-checkpoint", url.trim_end_matches('/'))
}

/// `old <size>`, one base64 line per proof hash, a blank line, then the signed note.
fn request_body(old_size: u64, proof: &[Hash], signed_note: &str) -> String {
    let mut body = String::with_capacity(16 + proof.len() * 45 + signed_note.len());
    let _ = writeln!(body, "old {old_size}");
    for hash in proof {
        body.push_str(&B64.encode(hash.0));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(signed_note);
    body
}

/// Reads at most `limit` bytes of the body. The flag says whether the whole body fit.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The first verifying cosignature by `witness_key` among the response's note lines.
fn pick_cosignature(
    body: &[u8],
    witness_key: &PublicKey,
    checkpoint: &Checkpoint,
) -> Result<Cosignature, WitnessError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| WitnessError::BadResponse("response is not UTF-8".into()))?;
    let (mut unwanted, mut malformed, mut invalid) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.is_empty()) {
        match Cosignature::from_note_line(line, witness_key) {
            Ok(cosignature) => match cosignature.verify(witness_key, checkpoint) {
                Ok(()) => return Ok(cosignature),
                // A 4-byte key ID can collide, so a failure here is not yet the verdict.
                Err(_) => invalid += 1,
            },
            Err(NoteLineError::Unwanted) => unwanted += 1,
            Err(NoteLineError::Malformed) => malformed += 1,
        }
    }
    Err(WitnessError::BadResponse(format!(
        "no valid Ed25519 cosignature by the witness key ({invalid} not verifying, \
         {unwanted} by other keys or algorithms, {malformed} malformed)"
    )))
}

/// Whether a Content-Type header is `text/x.tlog.size`, parameters aside.
fn is_size_content_type(value: &str) -> bool {
    let media_type = value.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(SIZE_CONTENT_TYPE)
}

/// A 409 body: a decimal size and a newline (some witnesses omit the newline).
fn parse_size(body: &[u8]) -> Result<u64, WitnessError> {
    let bad = || WitnessError::BadResponse(format!("bad tree size in 409: {:?}", excerpt(body)));
    let text = std::str::from_utf8(body).map_err(|_| bad())?.trim_ascii();
    parse_digits(text).map_err(|_| bad())
}

/// The start of a body as text, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut chars = text.trim_end().chars();
    let mut out: String = chars.by_ref().take(ERROR_BODY_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// An error with its sources: reqwest's own message rarely names the cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigsum::checkpoint::key_id;
    use crate::sigsum::cosignature::cosigned_message;
    use crate::sigsum::crypto::Signature;
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::Response;
    use axum::routing::post;
    use axum::Router;
    use ed25519_dalek::{Signer, SigningKey};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    const NAME: &str = "witness.example.org/w1";

    fn signer(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = PublicKey(sk.verifying_key().to_bytes());
        (sk, pk)
    }

    /// The TV4 checkpoint: log seed 01x32, size 3.
    fn checkpoint() -> Checkpoint {
        let (_, log) = signer(1);
        let root = B64
            .decode("JNirdPd4QvcGWwDvenysbaxyenurbJVsrdNcE8Nyexs=")
            .unwrap();
        Checkpoint {
            log_key_hash: log.key_hash(),
            size: 3,
            root_hash: Hash::from_slice(&root).unwrap(),
        }
    }

    fn signed_note(cp: &Checkpoint) -> String {
        let (sk, pk) = signer(1);
        let sig = Signature(sk.sign(cp.body().as_bytes()).to_bytes());
        cp.signed_note(&pk, &sig)
    }

    /// A cosignature line by the witness with seed `seed` over `cp`.
    fn cosig_line(seed: u8, timestamp: u64, cp: &Checkpoint) -> String {
        let (sk, pk) = signer(seed);
        let msg = cosigned_message(timestamp, cp);
        let c = Cosignature {
            key_hash: pk.key_hash(),
            timestamp,
            signature: Signature(sk.sign(msg.as_bytes()).to_bytes()),
        };
        c.note_line(NAME, &pk)
    }

    /// A line shaped like an ML-DSA-44 cosignature (type 0x06): same name, longer blob.
    fn mldsa_line() -> String {
        let (_, pk) = signer(2);
        let mut blob = key_id(NAME, 0x06, &pk).to_vec();
        blob.extend_from_slice(&[0x5a; 8 + 2420]);
        format!("\u{2014} {NAME} {}\n", B64.encode(blob))
    }

    fn witness(url: Option<String>) -> PolicyWitness {
        PolicyWitness {
            name: "w1".into(),
            public_key: signer(2).1,
            url,
        }
    }

    #[test]
    fn request_body_layout() {
        let proof = [Hash([0; 32]), Hash([0xff; 32])];
        let body = request_body(5, &proof, "NOTE\n");
        assert_eq!(
            body,
            "old 5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
             //////////////////////////////////////////8=\n\nNOTE\n"
        );
        assert_eq!(request_body(0, &[], "NOTE\n"), "old 0\n\nNOTE\n");
    }

    #[test]
    fn endpoint_has_one_slash() {
        assert_eq!(
            endpoint("http://w.example/a"),
            "http://w.example/a/add-checkpoint"
        );
        assert_eq!(
            endpoint("http://w.example/a/"),
            "http://w.example/a/add-checkpoint"
        );
        assert_eq!(
            endpoint("http://w.example"),
            "http://w.example/add-checkpoint"
        );
    }

    #[test]
    fn picks_the_verifying_ed25519_line() {
        let cp = checkpoint();
        let (_, key) = signer(2);
        // A line under the witness's name and key ID but signed by another key fails to
        // verify and is passed over, like ML-DSA lines, other witnesses and junk.
        let impostor = {
            let good = cosig_line(2, 7, &cp);
            let (_, b64) = good.trim_end().rsplit_once(' ').unwrap();
            let mut blob = B64.decode(b64).unwrap();
            blob[20] ^= 1;
            format!("\u{2014} {NAME} {}\n", B64.encode(blob))
        };
        let body = format!(
            "{}{}\nnot a note line\n{}{}{}",
            mldsa_line(),
            cosig_line(3, 5, &cp),
            impostor,
            cosig_line(2, 1795303196, &cp),
            cosig_line(2, 9, &cp),
        );
        let c = pick_cosignature(body.as_bytes(), &key, &cp).unwrap();
        assert_eq!(c.timestamp, 1795303196);
        assert_eq!(c.key_hash, key.key_hash());
        c.verify(&key, &cp).unwrap();
    }

    #[test]
    fn no_usable_line_is_a_bad_response() {
        let cp = checkpoint();
        let (_, key) = signer(2);
        let other_checkpoint = Checkpoint { size: 4, ..cp };
        for body in [
            String::new(),
            mldsa_line(),
            cosig_line(3, 1, &cp),
            cosig_line(2, 1, &other_checkpoint),
            "\u{2014} x\n".to_string(),
            // Correctly signed, but with times the Sigsum wire format cannot carry: taken,
            // they made every published head unappliable and froze publication.
            cosig_line(2, u64::MAX, &cp),
            cosig_line(2, 1 << 63, &cp),
        ] {
            let err = pick_cosignature(body.as_bytes(), &key, &cp).unwrap_err();
            assert!(
                matches!(err, WitnessError::BadResponse(_)),
                "{body:?}: {err:?}"
            );
        }
        let err = pick_cosignature(&[0xff, 0xfe], &key, &cp).unwrap_err();
        assert!(matches!(err, WitnessError::BadResponse(_)));
    }

    #[test]
    fn size_bodies_and_content_types() {
        assert_eq!(parse_size(b"9\n"), Ok(9));
        assert_eq!(parse_size(b"12"), Ok(12));
        assert_eq!(parse_size(b"0\n"), Ok(0));
        for bad in [
            &b""[..],
            b"\n",
            b"-1\n",
            b"+1\n",
            b"1 2\n",
            b"x\n",
            b"99999999999999999999\n",
        ] {
            assert!(
                matches!(parse_size(bad), Err(WitnessError::BadResponse(_))),
                "{bad:?}"
            );
        }
        assert!(is_size_content_type("text/x.tlog.size"));
        assert!(is_size_content_type("Text/X.TLOG.Size; charset=utf-8"));
        assert!(!is_size_content_type("text/plain"));
        assert!(!is_size_content_type(""));
    }

    #[test]
    fn excerpts_are_short_and_cut_on_char_boundaries() {
        let long = "é".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), ERROR_BODY_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"forbidden\n"), "forbidden");
    }

    /// One scripted reply of the mock witness.
    struct Reply {
        status: u16,
        content_type: Option<&'static str>,
        body: String,
    }

    fn reply(status: u16, content_type: Option<&'static str>, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }

    #[derive(Default)]
    struct Script {
        replies: VecDeque<Reply>,
        requests: Vec<String>,
    }

    type Shared = Arc<Mutex<Script>>;

    /// A witness that answers `POST /w/add-checkpoint` from a script and records requests.
    async fn mock(replies: Vec<Reply>) -> (String, Shared) {
        async fn handle(State(s): State<Shared>, body: String) -> Response {
            let mut s = s.lock().unwrap();
            s.requests.push(body);
            let r = s
                .replies
                .pop_front()
                .unwrap_or_else(|| reply(500, None, "script exhausted"));
            let mut resp = Response::new(Body::from(r.body));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap();
            if let Some(ct) = r.content_type {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            resp
        }
        let shared: Shared = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/w/add-checkpoint", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/w/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, shared)
    }

    fn requests(s: &Shared) -> Vec<String> {
        s.lock().unwrap().requests.clone()
    }

    fn client() -> WitnessClient {
        WitnessClient::new(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn add_checkpoint_statuses() {
        let cp = checkpoint();
        let note = signed_note(&cp);
        let (_, key) = signer(2);
        let ok = format!("{}{}", mldsa_line(), cosig_line(2, 42, &cp));
        let (url, script) = mock(vec![
            reply(200, Some("text/plain"), ok),
            reply(409, Some(SIZE_CONTENT_TYPE), "2\n"),
            reply(409, None, "2\n"),
            reply(409, Some(SIZE_CONTENT_TYPE), "two\n"),
            reply(403, None, "x".repeat(1000)),
            reply(200, None, "\u{2014} nobody AAAA\n"),
            reply(200, None, "y".repeat(MAX_RESPONSE_BYTES + 1)),
        ])
        .await;
        let c = client();
        let proof = [Hash([7; 32])];
        let got = c
            .add_checkpoint(&url, &key, 1, &proof, &note, &cp)
            .await
            .unwrap();
        assert_eq!(got.timestamp, 42);
        assert_eq!(
            requests(&script)[0],
            format!("old 1\n{}\n\n{note}", B64.encode([7; 32]))
        );

        let call = || c.add_checkpoint(&url, &key, 0, &[], &note, &cp);
        assert_eq!(
            call().await,
            Err(WitnessError::Conflict { witness_size: 2 })
        );
        assert_eq!(
            call().await,
            Err(WitnessError::Status {
                status: 409,
                body: "2".into()
            })
        );
        assert!(matches!(call().await, Err(WitnessError::BadResponse(_))));
        match call().await {
            Err(WitnessError::Status { status: 403, body }) => {
                assert_eq!(body.chars().count(), ERROR_BODY_CHARS + 1)
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(call().await, Err(WitnessError::BadResponse(_))));
        assert!(matches!(call().await, Err(WitnessError::BadResponse(_))));
    }

    #[tokio::test]
    async fn unreachable_witness_is_a_transport_error() {
        // Bind and drop to get a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cp = checkpoint();
        let err = client()
            .add_checkpoint(
                &format!("http://127.0.0.1:{port}"),
                &signer(2).1,
                0,
                &[],
                &signed_note(&cp),
                &cp,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, WitnessError::Transport(_)), "{err:?}");
    }

    fn fake_proof(old: u64) -> Result<Vec<Hash>, String> {
        Ok(vec![Hash([old as u8; 32])])
    }

    #[tokio::test]
    async fn cosign_retries_once_from_the_witness_size() {
        let cp = checkpoint();
        let note = signed_note(&cp);
        let (url, script) = mock(vec![
            reply(409, Some(SIZE_CONTENT_TYPE), "1\n"),
            reply(200, None, cosig_line(2, 77, &cp)),
        ])
        .await;
        let (c, size) = cosign(&client(), &witness(Some(url)), 0, &cp, &note, &fake_proof)
            .await
            .unwrap();
        assert_eq!((c.timestamp, size), (77, 3));
        let reqs = requests(&script);
        assert_eq!(reqs.len(), 2);
        assert!(reqs[0].starts_with("old 0\n\n"), "{:?}", reqs[0]);
        assert_eq!(reqs[1], format!("old 1\n{}\n\n{note}", B64.encode([1; 32])));
    }

    #[tokio::test]
    async fn cosign_sends_no_proof_from_zero_or_the_same_size() {
        let cp = checkpoint();
        let note = signed_note(&cp);
        let (url, script) = mock(vec![
            reply(200, None, cosig_line(2, 1, &cp)),
            reply(200, None, cosig_line(2, 2, &cp)),
        ])
        .await;
        let no_proof = |old: u64| -> Result<Vec<Hash>, String> { Err(format!("asked for {old}")) };
        let w = witness(Some(url));
        cosign(&client(), &w, 0, &cp, &note, &no_proof)
            .await
            .unwrap();
        cosign(&client(), &w, 3, &cp, &note, &no_proof)
            .await
            .unwrap();
        let reqs = requests(&script);
        assert!(reqs[0].starts_with("old 0\n\n"));
        assert!(reqs[1].starts_with("old 3\n\n"));
    }

    #[tokio::test]
    async fn cosign_gives_up_after_one_retry_or_when_the_witness_is_ahead() {
        let cp = checkpoint();
        let note = signed_note(&cp);
        let (url, script) = mock(vec![
            reply(409, Some(SIZE_CONTENT_TYPE), "1\n"),
            reply(409, Some(SIZE_CONTENT_TYPE), "2\n"),
            reply(409, Some(SIZE_CONTENT_TYPE), "4\n"),
        ])
        .await;
        let w = witness(Some(url));
        let err = cosign(&client(), &w, 0, &cp, &note, &fake_proof)
            .await
            .unwrap_err();
        assert_eq!(err, WitnessError::Conflict { witness_size: 2 });
        assert_eq!(requests(&script).len(), 2);

        let err = cosign(&client(), &w, 0, &cp, &note, &fake_proof)
            .await
            .unwrap_err();
        assert_eq!(err, WitnessError::Conflict { witness_size: 4 });
        assert_eq!(
            requests(&script).len(),
            3,
            "no retry toward a witness ahead"
        );
    }

    #[test]
    fn cosign_future_can_be_spawned() {
        // Rounds with several witnesses run as separate tasks.
        fn assert_send<T: Send>(_: &T) {}
        let (client, w, cp) = (client(), witness(None), checkpoint());
        assert_send(&cosign(&client, &w, 0, &cp, "", &fake_proof));
    }

    #[tokio::test]
    async fn cosign_local_failures() {
        let cp = checkpoint();
        let note = signed_note(&cp);
        let err = cosign(&client(), &witness(None), 0, &cp, &note, &fake_proof)
            .await
            .unwrap_err();
        assert_eq!(err, WitnessError::NoUrl);

        let (url, script) = mock(vec![]).await;
        let failing = |_: u64| -> Result<Vec<Hash>, String> { Err("pruned".into()) };
        let err = cosign(&client(), &witness(Some(url)), 2, &cp, &note, &failing)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            WitnessError::Proof {
                old: 2,
                reason: "pruned".into()
            }
        );
        assert!(requests(&script).is_empty());
    }
}

/// Entry points for `fuzz/` (built with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::*;

    /// What the publisher takes from an `add-checkpoint` answer: the size of a 409, and
    /// the cosignature of a 200.
    pub fn answer(
        body: &[u8],
        witness_key: &PublicKey,
        checkpoint: &Checkpoint,
    ) -> (Option<u64>, Option<Cosignature>) {
        (
            parse_size(body).ok(),
            pick_cosignature(body, witness_key, checkpoint).ok(),
        )
    }
}
