//! Faults, and the seeded schedule that injects them: quiet, fault, hold, heal, repeated.
//!
//! Partitions are silent packet drops (`iptables -j DROP` on INPUT, by peer address) inside
//! the nodes' network namespaces, so a cut-off peer sees timeouts, not refused
//! connections. Clients on the host reach the nodes through the Docker gateway, which no
//! rule touches: a partition cuts nodes from each other, not from clients.
//!
//! With three nodes some of Jepsen's topologies coincide: a "majorities ring" (each node
//! sees a different majority) is a bridge whose middle node changes every time, and a
//! majority/minority split isolates one node. TCP needs both directions, so a one-way drop
//! stalls the link's connections in both directions; it still differs from a two-way cut
//! in what each side sends and when it notices.

use crate::cluster::{Cluster, NODES};
use crate::history::{EventType, NemesisPhase, NemesisTag, NemesisValue, Op, Process, Recorder};
use crate::schedule::Rng;
use anyhow::{anyhow, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Cut the leader off from both followers.
    PartitionLeader,
    /// Cut one follower off.
    PartitionFollower,
    /// A random node (the minority) against the other two (the majority).
    PartitionHalves,
    /// Two nodes cannot reach each other; the third reaches both.
    PartitionBridge,
    /// A bridge whose middle node rotates from one fault to the next.
    PartitionRing,
    /// One node drops everything one other node sends it.
    PartitionOneWay,
    /// `docker kill` one random node.
    KillOne,
    /// `docker kill` the leader.
    KillLeader,
    /// `docker kill` every node at once.
    KillAll,
    /// `docker pause` the leader (longer than an election timeout).
    PauseLeader,
    /// `docker pause` a follower.
    PauseFollower,
    /// `admin transfer-leader` to a random other node every 1-2 s.
    TransferStorm,
    /// Remove a node, wipe its volume, add it back (snapshot catch-up under load).
    Membership,
    /// A follower loses power: killed, its unsynced writes discarded, restarted.
    PowerFollower,
    /// The leader loses power.
    PowerLeader,
    /// Every node loses power at once.
    PowerAll,
    /// A follower stays down until the leader has purged what it missed, then loses power
    /// again soon after it restarts, while it catches up by snapshot.
    PowerSnapshot,
    /// The leader loses power just after a leadership transfer was started.
    PowerTransfer,
    /// One node loses power three times in a row, up for a second or two in between.
    PowerRepeated,
}

const ALL: [Fault; 19] = [
    Fault::PartitionLeader,
    Fault::PartitionFollower,
    Fault::PartitionHalves,
    Fault::PartitionBridge,
    Fault::PartitionRing,
    Fault::PartitionOneWay,
    Fault::KillOne,
    Fault::KillLeader,
    Fault::KillAll,
    Fault::PauseLeader,
    Fault::PauseFollower,
    Fault::TransferStorm,
    Fault::Membership,
    Fault::PowerFollower,
    Fault::PowerLeader,
    Fault::PowerAll,
    Fault::PowerSnapshot,
    Fault::PowerTransfer,
    Fault::PowerRepeated,
];

/// The families, as accepted by `--nemesis` (each picks one of its faults per cycle).
pub(crate) const FAMILIES: [&str; 7] = [
    "partition",
    "kill",
    "pause",
    "transfer",
    "membership",
    "power",
    "mixed",
];

impl Fault {
    /// The name used on the command line and in the history.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionFollower => "partition-follower",
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionRing => "partition-ring",
            Fault::PartitionOneWay => "partition-oneway",
            Fault::KillOne => "kill-one",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseFollower => "pause-follower",
            Fault::TransferStorm => "transfer-storm",
            Fault::Membership => "membership",
            Fault::PowerFollower => "power-follower",
            Fault::PowerLeader => "power-leader",
            Fault::PowerAll => "power-all",
            Fault::PowerSnapshot => "power-snapshot",
            Fault::PowerTransfer => "power-transfer",
            Fault::PowerRepeated => "power-repeated",
        }
    }

    fn family(self) -> &'static str {
        use Fault::*;
        match self {
            PartitionLeader | PartitionFollower | PartitionHalves | PartitionBridge
            | PartitionRing | PartitionOneWay => "partition",
            KillOne | KillLeader | KillAll => "kill",
            PauseLeader | PauseFollower => "pause",
            TransferStorm => "transfer",
            Membership => "membership",
            PowerFollower | PowerLeader | PowerAll | PowerSnapshot | PowerTransfer
            | PowerRepeated => "power",
        }
    }
}

/// One item of `--nemesis`: the faults one of which is injected per cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Pick one of these.
    OneOf(Vec<Fault>),
    /// Random combinations of one or two families (membership alone).
    Mixed,
}

/// A parsed `--nemesis NAME[,NAME]`: every cycle injects one fault per item, together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan(Vec<Item>);

impl Plan {
    /// Parses fault and family names.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<Plan> {
        let mut items = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "mixed" {
                items.push(Item::Mixed);
            } else if let Some(f) = ALL.iter().find(|f| f.name() == name) {
                items.push(Item::OneOf(vec![*f]));
            } else if FAMILIES.contains(&name) {
                items.push(Item::OneOf(
                    ALL.iter().copied().filter(|f| f.family() == name).collect(),
                ));
            } else {
                let names: Vec<&str> = ALL.iter().map(|f| f.name()).collect();
                bail!(
                    "unknown nemesis {name:?}: use a family ({}) or one of {}",
                    FAMILIES.join(", "),
                    names.join(", ")
                );
            }
        }
        if items.is_empty() {
            bail!("--nemesis names no fault");
        }
        Ok(Plan(items))
    }

    /// Whether every fault of the plan is a leadership transfer (then the cluster runs in
    /// custody `handoff`, so each transfer hands the signing key over; any other fault
    /// needs custody `file` so publication survives an unplanned leader loss).
    pub(crate) fn transfers_only(&self) -> bool {
        self.0.iter().all(|i| match i {
            Item::OneOf(fs) => fs.iter().all(|f| *f == Fault::TransferStorm),
            Item::Mixed => false,
        })
    }

    /// Whether some fault of the plan cuts power (then the nodes' data lives on the
    /// power-loss file system).
    pub(crate) fn needs_power_fs(&self) -> bool {
        self.0.iter().any(|i| match i {
            Item::OneOf(fs) => fs.iter().any(|f| f.family() == "power"),
            Item::Mixed => false,
        })
    }

    /// The faults of the next cycle.
    fn pick(&self, rng: &mut Rng) -> Vec<Fault> {
        let mut out: Vec<Fault> = Vec::new();
        for item in &self.0 {
            match item {
                Item::OneOf(fs) => out.push(*rng.pick(fs)),
                Item::Mixed => {
                    if rng.below(5) == 0 {
                        out.push(Fault::Membership);
                        continue;
                    }
                    let families = ["partition", "kill", "pause", "transfer"];
                    let n = 1 + rng.below(2);
                    let mut chosen: Vec<&str> = Vec::new();
                    while (chosen.len() as u64) < n {
                        let f = *rng.pick(&families);
                        if !chosen.contains(&f) {
                            chosen.push(f);
                        }
                    }
                    for fam in chosen {
                        let fs: Vec<Fault> =
                            ALL.iter().copied().filter(|f| f.family() == fam).collect();
                        out.push(*rng.pick(&fs));
                    }
                }
            }
        }
        // Membership changes do not mix with other faults on the same cycle.
        if out.len() > 1 && out.contains(&Fault::Membership) {
            out.retain(|f| *f == Fault::Membership);
        }
        out.dedup();
        out
    }
}

/// What a started fault changed, so it can be healed.
enum Active {
    Dropping(Vec<u64>),
    Killed(Vec<u64>),
    Paused(Vec<u64>),
    Storm(Arc<AtomicBool>, std::thread::JoinHandle<String>),
    Removed { node: u64, leader: u64 },
}

/// Injects faults into one cluster and records them.
pub(crate) struct Nemesis {
    cluster: Arc<Cluster>,
    rec: Arc<Recorder>,
    rng: Rng,
    ring_bridge: u64,
}

/// The leader, as the first node that answers `admin status --json` sees it.
pub(crate) fn leader(c: &Cluster) -> anyhow::Result<u64> {
    for k in 1..=NODES {
        let Ok(out) = c.admin(k, &["status", "--json"]) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&out)?;
        if let Some(l) = v.get("leader").and_then(|l| l.as_u64()) {
            return Ok(l);
        }
    }
    Err(anyhow!("no node knows a leader"))
}

impl Nemesis {
    /// A nemesis for `cluster`, recording into `rec`, with its own seeded randomness.
    pub(crate) fn new(cluster: Arc<Cluster>, rec: Arc<Recorder>, seed: u64) -> Nemesis {
        Nemesis {
            cluster,
            rec,
            rng: Rng::new(seed ^ 0x006e_656d_6573_6973),
            ring_bridge: 1,
        }
    }

    fn record(
        &self,
        kind: EventType,
        name: &str,
        phase: NemesisPhase,
        detail: String,
        error: Option<String>,
    ) {
        self.rec.record(
            Process::Nemesis(NemesisTag::Nemesis),
            kind,
            None,
            Op::Nemesis(NemesisValue {
                name: name.to_string(),
                phase,
                detail,
            }),
            error,
        );
    }

    fn others(&mut self, k: u64) -> Vec<u64> {
        (1..=NODES).filter(|&o| o != k).collect()
    }

    fn random_node(&mut self) -> u64 {
        1 + self.rng.below(NODES)
    }

    fn random_follower(&mut self) -> anyhow::Result<u64> {
        let l = leader(&self.cluster)?;
        let others = self.others(l);
        Ok(*self.rng.pick(&others))
    }

    /// `a` drops every packet from `b`.
    fn drop_from(&self, a: u64, b: u64) -> anyhow::Result<()> {
        self.cluster
            .iptables(a, &["-A", "INPUT", "-s", &self.cluster.ip(b), "-j", "DROP"])
    }

    fn cut(&self, a: u64, b: u64) -> anyhow::Result<()> {
        self.drop_from(a, b)?;
        self.drop_from(b, a)
    }

    fn isolate(&mut self, k: u64) -> anyhow::Result<(Active, String)> {
        for o in self.others(k) {
            self.cut(k, o)?;
        }
        Ok((
            Active::Dropping((1..=NODES).collect()),
            format!("n{k} cut off from the others"),
        ))
    }

    fn bridge(&mut self, middle: u64) -> anyhow::Result<(Active, String)> {
        let ends = self.others(middle);
        self.cut(ends[0], ends[1])?;
        Ok((
            Active::Dropping(ends.clone()),
            format!(
                "n{} and n{} cut apart; n{middle} reaches both",
                ends[0], ends[1]
            ),
        ))
    }

    fn start(&mut self, f: Fault) -> anyhow::Result<(Active, String)> {
        let c = self.cluster.clone();
        match f {
            Fault::PartitionLeader => {
                let l = leader(&c)?;
                self.isolate(l)
            }
            Fault::PartitionFollower => {
                let k = self.random_follower()?;
                self.isolate(k)
            }
            Fault::PartitionHalves => {
                let k = self.random_node();
                self.isolate(k)
            }
            Fault::PartitionBridge => {
                let m = self.random_node();
                self.bridge(m)
            }
            Fault::PartitionRing => {
                let m = self.ring_bridge;
                self.ring_bridge = m % NODES + 1;
                self.bridge(m)
            }
            Fault::PartitionOneWay => {
                let a = self.random_node();
                let others = self.others(a);
                let b = *self.rng.pick(&others);
                self.drop_from(a, b)?;
                Ok((
                    Active::Dropping(vec![a]),
                    format!("n{a} drops what n{b} sends"),
                ))
            }
            Fault::KillOne | Fault::KillLeader | Fault::KillAll => {
                let nodes = match f {
                    Fault::KillOne => vec![self.random_node()],
                    Fault::KillLeader => vec![leader(&c)?],
                    _ => (1..=NODES).collect(),
                };
                for &k in &nodes {
                    c.docker(&["kill", &c.container(k)])?;
                }
                Ok((
                    Active::Killed(nodes.clone()),
                    format!("killed {}", list(&nodes)),
                ))
            }
            Fault::PauseLeader | Fault::PauseFollower => {
                let k = if f == Fault::PauseLeader {
                    leader(&c)?
                } else {
                    self.random_follower()?
                };
                c.docker(&["pause", &c.container(k)])?;
                Ok((Active::Paused(vec![k]), format!("paused n{k}")))
            }
            Fault::TransferStorm => {
                let stop = Arc::new(AtomicBool::new(false));
                let (c, s) = (c.clone(), stop.clone());
                let mut rng = Rng::new(self.rng.next());
                let t = std::thread::spawn(move || storm(&c, &s, &mut rng));
                Ok((Active::Storm(stop, t), "transfer-leader every 1-2 s".into()))
            }
            Fault::PowerFollower | Fault::PowerLeader | Fault::PowerAll => {
                let nodes = match f {
                    Fault::PowerFollower => vec![self.random_follower()?],
                    Fault::PowerLeader => vec![leader(&c)?],
                    _ => (1..=NODES).collect(),
                };
                let detail = cut_power(&c, &nodes)?;
                Ok((Active::Killed(nodes), detail))
            }
            Fault::PowerSnapshot => {
                let k = self.random_follower()?;
                let first = cut_power(&c, &[k])?;
                // Down until the leader has purged the entries it missed, so it must catch
                // up by snapshot: a snapshot begun 4 s after the cut covers well over the
                // 100 entries the suite keeps after one (the workload makes about 40 a
                // second), so its purge passes the node's last entry.
                std::thread::sleep(secs(4));
                let l = leader(&c)?;
                let built = c.log_count(l, "built snapshot");
                let deadline = Instant::now() + secs(90);
                while c.log_count(l, "built snapshot") == built {
                    if Instant::now() > deadline {
                        bail!("n{l} built no snapshot within 90 s");
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                c.docker(&["start", &c.container(k)])?;
                let up = self.rng.between(Duration::from_millis(300), secs(3));
                std::thread::sleep(up);
                let second = cut_power(&c, &[k])?;
                let installs = c.log_count(k, "installed snapshot");
                Ok((
                    Active::Killed(vec![k]),
                    format!(
                        "{first}; restarted, then after {} ms {second}; \
                         {installs} snapshot installs in its log so far",
                        up.as_millis()
                    ),
                ))
            }
            Fault::PowerTransfer => {
                let l = leader(&c)?;
                let others = self.others(l);
                let to = *self.rng.pick(&others);
                let c2 = c.clone();
                let transfer = std::thread::spawn(move || {
                    c2.admin(l, &["transfer-leader", "--to", &to.to_string()])
                });
                let after = self.rng.between(Duration::ZERO, Duration::from_millis(500));
                std::thread::sleep(after);
                let cut = cut_power(&c, &[l])?;
                let outcome = match transfer.join() {
                    Ok(Ok(out)) => format!("transfer answered: {}", out.trim()),
                    Ok(Err(e)) => format!("transfer failed: {e}"),
                    Err(_) => "transfer thread panicked".into(),
                };
                Ok((
                    Active::Killed(vec![l]),
                    format!(
                        "transfer n{l} -> n{to} started; {} ms later {cut}; {outcome}",
                        after.as_millis()
                    ),
                ))
            }
            Fault::PowerRepeated => {
                let k = self.random_node();
                let mut cuts = Vec::new();
                for round in 0..3 {
                    if round > 0 {
                        c.docker(&["start", &c.container(k)])?;
                        std::thread::sleep(self.rng.between(secs(1), secs(3)));
                    }
                    cuts.push(cut_power(&c, &[k])?);
                }
                Ok((Active::Killed(vec![k]), cuts.join("; ")))
            }
            Fault::Membership => {
                let l = leader(&c)?;
                // Never node 1: it bootstraps the cluster when its data directory is empty.
                let candidates: Vec<u64> = (2..=NODES).filter(|&k| k != l).collect();
                let k = *self.rng.pick(&candidates);
                c.admin(l, &["remove-node", "--id", &k.to_string()])?;
                c.docker(&["rm", "-f", &c.container(k)])?;
                c.wipe_data(k)?;
                Ok((
                    Active::Removed { node: k, leader: l },
                    format!("removed n{k} and wiped its data"),
                ))
            }
        }
    }

    fn heal(&mut self, a: Active) -> anyhow::Result<String> {
        let c = self.cluster.clone();
        match a {
            Active::Dropping(nodes) => {
                for k in nodes {
                    c.iptables(k, &["-F", "INPUT"])?;
                }
                Ok("links restored".into())
            }
            Active::Killed(nodes) => {
                for &k in &nodes {
                    c.docker(&["start", &c.container(k)])?;
                }
                Ok(format!("restarted {}", list(&nodes)))
            }
            Active::Paused(nodes) => {
                for &k in &nodes {
                    c.docker(&["unpause", &c.container(k)])?;
                }
                Ok(format!("resumed {}", list(&nodes)))
            }
            Active::Storm(stop, t) => {
                stop.store(true, Ordering::SeqCst);
                t.join()
                    .map_err(|_| anyhow!("transfer storm thread panicked"))
            }
            Active::Removed { node, leader: l } => {
                c.start(node)?;
                let id = node.to_string();
                let (raft, api) = (format!("n{node}:7001"), format!("n{node}:7000"));
                let args = [
                    "add-node",
                    "--id",
                    &id,
                    "--raft-addr",
                    &raft,
                    "--api-addr",
                    &api,
                ];
                // The old leader may have lost leadership meanwhile; admin follows redirects.
                let mut last = String::new();
                for attempt in 0..10 {
                    let via = if attempt % 2 == 0 {
                        l
                    } else {
                        leader(&c).unwrap_or(l)
                    };
                    match c.admin(via, &args) {
                        Ok(out) => return Ok(format!("n{node} re-added: {}", out.trim())),
                        Err(e) => last = e.to_string(),
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                bail!("could not re-add n{node}: {last}")
            }
        }
    }

    /// Runs fault cycles until `until`, then heals everything. Warm-up and quiet periods
    /// let the cluster serve between faults; a fault is held 5-10 s (well past an election
    /// timeout of at most 1 s).
    pub(crate) fn run(&mut self, plan: &Plan, until: Instant) {
        std::thread::sleep(Duration::from_secs(5));
        while Instant::now() + Duration::from_secs(8) < until {
            let quiet = self
                .rng
                .between(Duration::from_secs(2), Duration::from_secs(5));
            std::thread::sleep(quiet);
            let faults = plan.pick(&mut self.rng);
            let mut active = Vec::new();
            for f in faults {
                self.record(
                    EventType::Invoke,
                    f.name(),
                    NemesisPhase::Start,
                    String::new(),
                    None,
                );
                match self.start(f) {
                    Ok((a, detail)) => {
                        self.record(EventType::Ok, f.name(), NemesisPhase::Start, detail, None);
                        active.push((f, a));
                    }
                    Err(e) => self.record(
                        EventType::Info,
                        f.name(),
                        NemesisPhase::Start,
                        String::new(),
                        Some(e.to_string()),
                    ),
                }
            }
            let hold = self
                .rng
                .between(Duration::from_secs(5), Duration::from_secs(10));
            let hold = hold.min(until.saturating_duration_since(Instant::now()));
            std::thread::sleep(hold);
            for (f, a) in active {
                self.record(
                    EventType::Invoke,
                    f.name(),
                    NemesisPhase::Stop,
                    String::new(),
                    None,
                );
                match self.heal(a) {
                    Ok(detail) => {
                        self.record(EventType::Ok, f.name(), NemesisPhase::Stop, detail, None)
                    }
                    Err(e) => self.record(
                        EventType::Info,
                        f.name(),
                        NemesisPhase::Stop,
                        String::new(),
                        Some(e.to_string()),
                    ),
                }
            }
        }
        self.heal_everything();
    }

    /// Whatever a failed step left behind: every node running, unpaused, with no drop
    /// rules. Errors are ignored (most nodes need nothing).
    fn heal_everything(&self) {
        let c = &self.cluster;
        for k in 1..=NODES {
            let _ = c.docker(&["unpause", &c.container(k)]);
            let _ = c.start(k);
            let _ = c.iptables(k, &["-F", "INPUT"]);
        }
    }
}

/// Kills `nodes`, waits until their containers have stopped (no write of theirs can
/// still reach the file system), then cuts their file systems' power.
fn cut_power(c: &Cluster, nodes: &[u64]) -> anyhow::Result<String> {
    for &k in nodes {
        c.docker(&["kill", &c.container(k)])?;
    }
    for &k in nodes {
        c.docker(&["wait", &c.container(k)])?;
    }
    let mut out = Vec::new();
    for &k in nodes {
        out.push(format!("power lost on n{k} {}", c.power_loss(k)?));
    }
    Ok(out.join(", "))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Transfers leadership to a random other node every 1-2 s until stopped; a summary.
fn storm(c: &Cluster, stop: &AtomicBool, rng: &mut Rng) -> String {
    let (mut ok, mut refused) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(rng.between(Duration::from_secs(1), Duration::from_secs(2)));
        let Ok(l) = leader(c) else {
            refused += 1;
            continue;
        };
        let others: Vec<u64> = (1..=NODES).filter(|&k| k != l).collect();
        let to = rng.pick(&others).to_string();
        match c.admin(l, &["transfer-leader", "--to", &to]) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    format!("{ok} transfers, {refused} refused or failed")
}

fn list(nodes: &[u64]) -> String {
    nodes
        .iter()
        .map(|k| format!("n{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_names_and_families_and_refuse_unknown_ones() {
        let p = Plan::parse("partition").unwrap();
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            let f = p.pick(&mut rng);
            assert_eq!(f.len(), 1);
            assert!(f[0].name().starts_with("partition-"), "{f:?}");
        }
        let p = Plan::parse("kill-leader,pause-follower").unwrap();
        assert_eq!(
            p.pick(&mut rng),
            vec![Fault::KillLeader, Fault::PauseFollower]
        );
        assert!(Plan::parse("transfer").unwrap().transfers_only());
        assert!(Plan::parse("power").unwrap().needs_power_fs());
        assert!(Plan::parse("kill,power-all").unwrap().needs_power_fs());
        assert!(!Plan::parse("mixed").unwrap().needs_power_fs());
        let p = Plan::parse("power").unwrap();
        for _ in 0..20 {
            assert!(p.pick(&mut rng)[0].name().starts_with("power-"));
        }
        assert!(!Plan::parse("transfer,kill").unwrap().transfers_only());
        let err = Plan::parse("flood").unwrap_err().to_string();
        assert!(
            err.contains("unknown nemesis") && err.contains("kill-leader"),
            "{err}"
        );
        assert!(Plan::parse("").is_err());
        // Mixed: one or two faults, membership only alone.
        let m = Plan::parse("mixed").unwrap();
        for _ in 0..50 {
            let f = m.pick(&mut rng);
            assert!(!f.is_empty() && f.len() <= 2, "{f:?}");
            assert!(f.len() == 1 || !f.contains(&Fault::Membership), "{f:?}");
        }
        for fam in FAMILIES {
            assert!(Plan::parse(fam).is_ok(), "{fam}");
        }
    }
}
