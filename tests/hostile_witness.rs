//! Witnesses are untrusted: whatever one answers to `add-checkpoint`, the log goes on
//! publishing, and nothing it sent that does not verify or does not fit the wire format
//! reaches a published head.

mod support;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use ed25519_dalek::{Signer, SigningKey};
use quorumlog::merkle::Hash;
use quorumlog::sigsum::cosignature::{cosigned_message, Cosignature};
use quorumlog::sigsum::crypto::{PublicKey, Signature};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use support::sigsum::Http;
use support::{fast_publish, Cluster};

/// What the hostile witness answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// A correctly signed cosignature whose time is 2^64 - 1.
    TimeMax,
    /// The same with time 2^63, one above what the wire format allows.
    TimeJustTooLarge,
    /// A correctly signed cosignature of another tree size.
    OtherCheckpoint,
    /// 200 with no body.
    Empty,
    /// 200 with a megabyte of junk.
    Junk,
}

const ANSWERS: [Answer; 5] = [
    Answer::TimeMax,
    Answer::TimeJustTooLarge,
    Answer::OtherCheckpoint,
    Answer::Empty,
    Answer::Junk,
];

struct Witness {
    key: SigningKey,
    /// Index into [`ANSWERS`], or `usize::MAX` to cycle through all of them.
    mode: AtomicUsize,
    requests: AtomicU64,
}

impl Witness {
    fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    fn line(&self, timestamp: u64, checkpoint_body: &str) -> String {
        let msg = format!("cosignature/v1\ntime {timestamp}\n{checkpoint_body}");
        let c = Cosignature {
            key_hash: self.public().key_hash(),
            timestamp,
            signature: Signature(self.key.sign(msg.as_bytes()).to_bytes()),
        };
        c.note_line("hostile.example", &self.public())
    }
}

/// The checkpoint body (origin, size, root, each with its newline) of an
/// `add-checkpoint` request: `old N\n<proof lines>\n\n<note>`.
fn checkpoint_body(request: &str) -> String {
    let note = request.split_once("\n\n").map_or("", |(_, n)| n);
    let body = note.split_once("\n\n").map_or(note, |(b, _)| b);
    format!("{body}\n")
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, request: String) -> String {
    let n = w.requests.fetch_add(1, Ordering::SeqCst) as usize;
    let mode = match w.mode.load(Ordering::SeqCst) {
        usize::MAX => ANSWERS[n % ANSWERS.len()],
        i => ANSWERS[i],
    };
    let body = checkpoint_body(&request);
    match mode {
        Answer::TimeMax => w.line(u64::MAX, &body),
        Answer::TimeJustTooLarge => w.line(1 << 63, &body),
        Answer::OtherCheckpoint => {
            let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
            let size: u64 = lines[1].parse().unwrap_or(0);
            lines[1] = (size + 1).to_string();
            w.line(1_800_000_000, &(lines.join("\n") + "\n"))
        }
        Answer::Empty => String::new(),
        Answer::Junk => "\u{2014} x ".repeat(1 << 18),
    }
}

#[test]
fn the_message_signed_here_is_the_one_the_log_verifies() {
    // The hostile answers are only meaningful if the well-formed ones would verify.
    let w = Witness {
        key: SigningKey::from_bytes(&[9; 32]),
        mode: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
    };
    let checkpoint = quorumlog::sigsum::checkpoint::Checkpoint {
        log_key_hash: Hash([3; 32]),
        size: 5,
        root_hash: Hash([7; 32]),
    };
    let request = format!("old 0\n\n{}\n\u{2014} log sig\n", checkpoint.body());
    assert_eq!(checkpoint_body(&request), checkpoint.body());
    let line = w.line(1_800_000_000, &checkpoint.body());
    let c = Cosignature::from_note_line(line.trim_end(), &w.public()).unwrap();
    c.verify(&w.public(), &checkpoint).unwrap();
    assert_eq!(
        cosigned_message(c.timestamp, &checkpoint),
        format!("cosignature/v1\ntime 1800000000\n{}", checkpoint.body())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_witness_answer_stops_publication() {
    let witness = Arc::new(Witness {
        key: SigningKey::from_bytes(&[42; 32]),
        mode: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state(witness.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let hex_key = hex::encode(witness.public().0);
    let mut c = Cluster::init_with(
        3,
        0,
        &["--witness".into(), format!("hostile:{hex_key}:{url}")],
        fast_publish,
    );
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let witness_hash = witness.public().key_hash();
    let mut next_leaf = 0;
    // First the answer of the outside report alone (it froze publication for good), then
    // every hostile answer in turn.
    for mode in [0, usize::MAX] {
        witness.mode.store(mode, Ordering::SeqCst);
        let leaves: Vec<u64> = (next_leaf..next_leaf + 3).collect();
        next_leaf += 3;
        c.add_any(&[1, 2, 3], &leaves).await;
        let asked = witness.requests.load(Ordering::SeqCst);
        let head = c
            .wait_until(
                || format!("a published head of size {next_leaf} (witness mode {mode})"),
                60,
                || async {
                    let h = http.tree_head(&c.api_addr(1)).await?;
                    let rounds = witness.requests.load(Ordering::SeqCst) - asked;
                    // Enough rounds for the cycling mode to have sent every answer.
                    (h.head.size >= next_leaf && rounds > ANSWERS.len() as u64).then_some(h)
                },
            )
            .await;
        assert!(
            head.cosignatures.iter().all(|c| c.key_hash != witness_hash),
            "a hostile cosignature was published: {head:?}"
        );
    }
    server.abort();
}
