//! Test vectors TV1-TV5 from the Sigsum reference, checked byte for byte. They were produced
//! by or checked against sigsum-go 0.11.1, so a pass here means the same bytes as the Go tools.

use super::ascii::Parser;
use super::checkpoint::{key_id, Checkpoint, SIG_TYPE_ED25519};
use super::cosignature::{cosigned_message, Cosignature};
use super::crypto::{PublicKey, Signature};
use super::leaf::{leaf_signed_message, AddLeafRequest, TreeLeaf};
use super::proofs::InclusionProof;
use super::token::{token_message, SubmitToken};
use super::tree_head::{CosignedTreeHead, SignedTreeHead};
use crate::merkle::{empty_root, verify_inclusion, Hash};
use ed25519_dalek::{Signer, SigningKey};

fn key(seed: [u8; 32]) -> (SigningKey, PublicKey) {
    let sk = SigningKey::from_bytes(&seed);
    let pk = PublicKey(sk.verifying_key().to_bytes());
    (sk, pk)
}

fn tv1_key() -> (SigningKey, PublicKey) {
    let mut seed = [0u8; 32];
    seed[0] = 0x11;
    key(seed)
}

fn sign(sk: &SigningKey, msg: &[u8]) -> Signature {
    Signature(sk.sign(msg).to_bytes())
}

fn h(s: &str) -> Hash {
    Hash(hex::decode(s).unwrap().try_into().unwrap())
}

#[test]
fn tv1_signed_checkpoint() {
    let (sk, pk) = tv1_key();
    assert_eq!(
        hex::encode(pk.0),
        "66e0b858e462a609e66fe71370c816d8846ff103d5499a22a7fec37fdbc424a7"
    );
    assert_eq!(
        pk.key_hash().to_hex(),
        "e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69"
    );
    let origin = super::checkpoint::origin(&pk.key_hash());
    assert_eq!(
        hex::encode(key_id(&origin, SIG_TYPE_ED25519, &pk)),
        "809da1a3"
    );

    let mut root = [0u8; 32];
    root[..3].copy_from_slice(&[0x1c, 0x0e, 0x47]);
    let cp = Checkpoint {
        log_key_hash: pk.key_hash(),
        size: 10,
        root_hash: Hash(root),
    };
    let sig = sign(&sk, cp.body().as_bytes());
    assert_eq!(
        hex::encode(sig.0),
        "49fc17ca2571ead417514576fdb7e40ff96acfdca16ae92ebb44ee8bcc78fe70860c28b98131a301bf953ce7c6ee8e5068e3b79c8943a6d7b5371fef5f0ca804"
    );
    let expected = "sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69\n\
10\n\
HA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
\n\
\u{2014} sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69 gJ2ho0n8F8olcerUF1FFdv235A/5as/coWrpLrtE7ovMeP5whgwouYExowG/lTznxu6OUGjjt5yJQ6bXtTcf718MqAQ=\n";
    assert_eq!(cp.signed_note(&pk, &sig), expected);

    let sth = SignedTreeHead {
        size: 10,
        root_hash: Hash(root),
        signature: sig,
    };
    sth.verify(&pk).unwrap();
    let mut other = sth;
    other.size = 11;
    assert!(other.verify(&pk).is_err());
    assert_eq!(
        SignedTreeHead::parse(sth.to_ascii().as_bytes()).unwrap(),
        sth
    );
}

#[test]
fn tv2_leaf() {
    let (sk, pk) = tv1_key();
    let message = Hash::digest(b"hello\n");
    assert_eq!(
        message.to_hex(),
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );
    let checksum = Hash::digest(&message.0);
    assert_eq!(
        checksum.to_hex(),
        "ecb65bb98f9d905b70458986c39fcbad7715e5f2fcc3b1f07767d7c83e2438cc"
    );
    let sig = sign(&sk, &leaf_signed_message(&checksum));
    assert_eq!(
        hex::encode(sig.0),
        "667b50a9c6e397438c07ece2f76414e60403fe15be5996f9fe754a7226fdd4719cf26afdf1f7d74cd49e88cff4f1ea940aebd02ced0fe98a8ff415b2c3c4cb0d"
    );
    let req = AddLeafRequest {
        message: message.0,
        signature: sig,
        public_key: pk,
    };
    let parsed = AddLeafRequest::parse(req.to_ascii().as_bytes()).unwrap();
    assert_eq!(parsed, req);
    let leaf = parsed.verify().unwrap();
    assert_eq!(leaf.checksum, checksum);
    assert_eq!(
        leaf.leaf_hash().to_hex(),
        "a366cfed9395928cb422fb4ea633160311858a84c7bcc11c7f7d188481ff70e7"
    );
    assert_eq!(TreeLeaf::from_bytes(&leaf.to_bytes()), Some(leaf));

    // A signature over another message is a 403, not a 400.
    let mut bad = req;
    bad.message[0] ^= 1;
    let bad = AddLeafRequest::parse(bad.to_ascii().as_bytes()).unwrap();
    assert!(bad.verify().is_err());
}

#[test]
fn tv3_submit_token() {
    let (sk, pk) = tv1_key();
    let msg = token_message(&pk);
    assert_eq!(msg.len(), 59);
    let sig = sign(&sk, &msg);
    assert_eq!(
        hex::encode(sig.0),
        "fa27dcee09812e6fef81371680be2e8b23870cd5b14881e5b6a219d212607551979e450590bceb57f07d0ea90e8322698470216faf9457eb74a5ac965a76bd04"
    );
    let header = format!("example.org {}", hex::encode(sig.0));
    let token = SubmitToken::parse_header(&header).unwrap();
    assert_eq!(token.domain, "example.org");
    token.verify(&pk, &pk).unwrap();
    let (_, other) = key([2u8; 32]);
    assert!(token.verify(&pk, &other).is_err());
    for bad in [
        "",
        "example.org",
        " abc",
        "a b c",
        "example.org  00",
        "example.org zz",
    ] {
        assert!(SubmitToken::parse_header(bad).is_err(), "{bad:?} accepted");
    }
}

fn tv4() -> (PublicKey, PublicKey, Checkpoint, Cosignature) {
    let (_, log) = key([1u8; 32]);
    let (_, witness) = key([2u8; 32]);
    let cp = Checkpoint {
        log_key_hash: log.key_hash(),
        size: 3,
        root_hash: h("24d8ab74f77842f7065b00ef7a7cac6dac727a7bab6c956cadd35c13c3727b1b"),
    };
    let cs = Cosignature {
        key_hash: witness.key_hash(),
        timestamp: 1795303196,
        signature: Signature(
            hex::decode("c4818342cc333715e588f0a5f1470d2083b9d53815352b89a807210ecb0880bcaa876ba081a95d50dcc38fd727ad3009f686d1f84fc5c486c13abd5f30bfde0f")
                .unwrap()
                .try_into()
                .unwrap(),
        ),
    };
    (log, witness, cp, cs)
}

#[test]
fn tv4_cosignature() {
    let (log, witness, cp, cs) = tv4();
    assert_eq!(
        log.key_hash().to_hex(),
        "34750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97e"
    );
    assert_eq!(
        witness.key_hash().to_hex(),
        "6a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827"
    );
    assert_eq!(
        cosigned_message(cs.timestamp, &cp),
        "cosignature/v1\ntime 1795303196\nsigsum.org/v1/tree/34750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97e\n3\nJNirdPd4QvcGWwDvenysbaxyenurbJVsrdNcE8Nyexs=\n"
    );
    cs.verify(&witness, &cp).unwrap();
    let mut late = cs;
    late.timestamp += 1;
    assert!(late.verify(&witness, &cp).is_err());

    // The signed-note form a tlog-witness returns round-trips, and other keys are skipped.
    let line = cs.note_line("witness.example", &witness);
    let back = Cosignature::from_note_line(line.trim_end_matches('\n'), &witness).unwrap();
    assert_eq!(back, cs);
    assert!(Cosignature::from_note_line(line.trim_end_matches('\n'), &log).is_err());
    assert!(Cosignature::from_note_line("- witness.example AAAA", &witness).is_err());
}

#[test]
fn tv5_complete_proof() {
    let (log, witness, _, cs) = tv4();
    let proof = "version=2
log=34750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97e
leaf=e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69 25450be659edc6c9572fcd104b8d29cbe6e4f595d3be88f3055ac6c2982095b297bef5360e355c544d3b8b680fc54e2d517371293b3879f963088464bacb7a0b

size=3
root_hash=24d8ab74f77842f7065b00ef7a7cac6dac727a7bab6c956cadd35c13c3727b1b
signature=1cfa4be4befa504a0528f6027279dceb7e123fd78be0fd93514dbad2be017a0171097f69da83a3dfcd03fa98a6918bdb31226b514923c88cdd7d0707d0bfc801
cosignature=6a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827 1795303196 c4818342cc333715e588f0a5f1470d2083b9d53815352b89a807210ecb0880bcaa876ba081a95d50dcc38fd727ad3009f686d1f84fc5c486c13abd5f30bfde0f

leaf_index=2
node_hash=8e1e35e9f00111bb13ecd70ef781965bd178290a0a5d510160aa95d8fcf00fbc
";
    let sections: Vec<&str> = proof.split("\n\n").collect();
    assert_eq!(sections.len(), 3);

    let first = format!("{}\n", sections[0]);
    let mut p = Parser::new(first.as_bytes()).unwrap();
    assert_eq!(p.int("version").unwrap(), 2);
    assert_eq!(Hash(p.hex::<32>("log").unwrap()), log.key_hash());
    let v = p.values("leaf", 2).unwrap();
    let (submitter_hash, leaf_sig) = (v[0], v[1]);

    let head = CosignedTreeHead::parse(format!("{}\n", sections[1]).as_bytes()).unwrap();
    head.head.verify(&log).unwrap();
    assert_eq!(head.cosignatures, vec![cs]);
    cs.verify(&witness, &head.head.checkpoint(&log.key_hash()))
        .unwrap();
    // The response body is reproduced byte for byte.
    assert_eq!(head.to_ascii(), format!("{}\n", sections[1]));

    let incl = InclusionProof::parse(sections[2].as_bytes()).unwrap();
    assert_eq!(incl.to_ascii(), sections[2]);

    let leaf = TreeLeaf {
        checksum: Hash::digest(&Hash::digest(b"Third\n").0),
        signature: Signature(hex::decode(leaf_sig).unwrap().try_into().unwrap()),
        key_hash: h(submitter_hash),
    };
    let (_, submitter) = tv1_key();
    leaf.verify(&submitter).unwrap();
    verify_inclusion(
        &leaf.leaf_hash(),
        incl.leaf_index,
        head.head.size,
        &incl.path,
        &head.head.root_hash,
    )
    .unwrap();
}

#[test]
fn empty_tree_head() {
    let (sk, pk) = key([1u8; 32]);
    let cp = Checkpoint {
        log_key_hash: pk.key_hash(),
        size: 0,
        root_hash: empty_root(),
    };
    assert_eq!(
        hex::encode(sign(&sk, cp.body().as_bytes()).0),
        "c49c192905093070c9fbdaffb003f5a2455731a2dcad6d0795c556589d21b4b675c66c7dcf14e80c54969aa7fbac074ce93b1f3d1c2eff2fc3df2a68f33cbd05"
    );
}

#[test]
fn duplicate_cosigners_are_rejected() {
    let (_, _, _, cs) = tv4();
    let head = CosignedTreeHead {
        head: SignedTreeHead {
            size: 3,
            root_hash: Hash::default(),
            signature: Signature([0; 64]),
        },
        cosignatures: vec![cs, cs],
    };
    assert!(CosignedTreeHead::parse(head.to_ascii().as_bytes()).is_err());
}

#[test]
fn proof_lengths_are_bounded() {
    let one = "leaf_index=0\nnode_hash=".to_string() + &"00".repeat(32) + "\n";
    assert!(InclusionProof::parse(one.as_bytes()).is_ok());
    assert!(InclusionProof::parse(b"leaf_index=0\n").is_err());
    let many =
        "leaf_index=0\n".to_string() + &format!("node_hash={}\n", "00".repeat(32)).repeat(64);
    assert!(InclusionProof::parse(many.as_bytes()).is_err());
}
