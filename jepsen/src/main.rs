//! `quorumlog-jepsen`: Jepsen-style fault tests of a Quorumlog cluster in Docker.
//!
//! `test` brings up a fresh three-node cluster with `cluster/docker.sh` for each test,
//! runs the workload while the nemesis injects faults, reads the final state back, runs
//! the checkers and stores the run under `jepsen/store/<test>/<time>-seed<N>/`:
//! `history.jsonl`, `final.json`, `results.json`, every container's log and `report.html`.
//! `report DIR` renders a stored run again. The exit status is non-zero when any test is
//! invalid (or could not run).

mod check;
mod client;
mod cluster;
mod directory;
mod history;
mod nemesis;
mod powerfs;
mod report;
mod run;
mod schedule;
mod workload;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "quorumlog-jepsen", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run tests against fresh Docker clusters.
    Test {
        /// Faults: families (partition, kill, pause, transfer, membership, power, mixed) or single
        /// faults (partition-leader, kill-all, ...). Comma-separated items are injected
        /// together, one fault per item per cycle.
        #[arg(long, default_value = "mixed")]
        nemesis: String,
        /// Seconds of fault injection (then 10 s of recovery under load and final reads).
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// add-leaf submissions per second wanted from all writers together.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Writer processes, each with its own Ed25519 key.
        #[arg(long, default_value_t = 8)]
        concurrency: u64,
        /// Seed of the fault schedule, node choices and leaves (test k uses seed + k).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many tests to run one after the other.
        #[arg(long, default_value_t = 1)]
        test_count: u64,
        /// Where runs are stored.
        #[arg(long)]
        store: Option<PathBuf>,
        /// The quorumlog binary the cluster's image is built from (default: the release
        /// build in $CARGO_TARGET_DIR or /var/tmp/quorumlog-target).
        #[arg(long)]
        bin: Option<PathBuf>,
        /// For a planted fault: a test passes only if this checker (for example
        /// `durability`) finds it invalid, and fails if the checkers miss the fault.
        #[arg(long)]
        expect_invalid: Option<String>,
        /// Also run the Key Transparency directory workload: writers updating their own
        /// users through random nodes, a reader of every node's signed map heads, the
        /// directory checker, and `quorumlog kt monitor` against every node at the end.
        #[arg(long)]
        directory: bool,
    },
    /// Check a stored run again with this build's checkers (rewrites results.json and
    /// report.html); exits non-zero if it is invalid.
    Check {
        /// The run's directory (holds history.jsonl, final.json and check-config.json).
        dir: PathBuf,
    },
    /// Render report.html of a stored run again.
    Report {
        /// The run's directory (holds history.jsonl and results.json).
        dir: PathBuf,
    },
    /// The power-loss file system (as root): a FUSE mount that forgets what was not fsynced.
    Powerfs {
        #[command(subcommand)]
        command: PowerfsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PowerfsCommand {
    /// Mount and serve in the foreground until SIGTERM/SIGINT, then unmount.
    Mount {
        /// The daemon's directory: `root/` holds the durable files, `control.sock` the
        /// control socket.
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        mountpoint: PathBuf,
    },
    /// Lose power: roll the file system back to what was durable, print what was undone.
    PowerLoss {
        #[arg(long)]
        state: PathBuf,
    },
    /// Print what a power loss would undo now.
    Stats {
        #[arg(long)]
        state: PathBuf,
    },
}

/// The repository this binary was built from (holds cluster/docker.sh).
fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Test {
            nemesis,
            time_limit,
            rate,
            concurrency,
            seed,
            test_count,
            store,
            bin,
            expect_invalid,
            directory,
        } => {
            nemesis::Plan::parse(&nemesis)?;
            if let Some(name) = &expect_invalid {
                if !check::CHECKERS.contains(&name.as_str()) {
                    bail!(
                        "--expect-invalid {name:?}: not a checker (one of {})",
                        check::CHECKERS.join(", ")
                    );
                }
            }
            if concurrency == 0 || rate <= 0.0 {
                bail!("--concurrency and --rate must be positive");
            }
            let bin = bin.unwrap_or_else(|| {
                let target = std::env::var("CARGO_TARGET_DIR")
                    .unwrap_or_else(|_| "/var/tmp/quorumlog-target".into());
                PathBuf::from(target).join("release/quorumlog")
            });
            if !bin.is_file() {
                bail!(
                    "no quorumlog binary at {} (build it, or pass --bin)",
                    bin.display()
                );
            }
            let rt = tokio::runtime::Runtime::new()?;
            let mut invalid = 0;
            for k in 0..test_count {
                let spec = run::TestSpec {
                    nemesis: nemesis.clone(),
                    time_limit: Duration::from_secs(time_limit),
                    workload: workload::WorkloadSpec {
                        directory,
                        concurrency,
                        rate,
                        seed: seed + k,
                    },
                    store: store.clone().unwrap_or_else(|| repo().join("jepsen/store")),
                    repo: repo(),
                    bin: bin.clone(),
                };
                // Distinct per process too, so several suites can run side by side.
                let slot = (std::process::id() % 97) as u16 + k as u16;
                match rt.block_on(run::run_test(&spec, slot)) {
                    Ok((dir, results)) => {
                        print!("{}", run::summary(&nemesis, &dir, &results));
                        let passed = match &expect_invalid {
                            None => results.valid,
                            Some(name) => {
                                let caught =
                                    results.checks.iter().any(|c| &c.name == name && !c.valid);
                                println!(
                                    "{nemesis}: planted fault {} by {name}",
                                    if caught { "caught" } else { "NOT caught" }
                                );
                                caught
                            }
                        };
                        if !passed {
                            invalid += 1;
                        }
                    }
                    Err(e) => {
                        println!("{nemesis}: could not run: {e:#}");
                        invalid += 1;
                    }
                }
            }
            if invalid > 0 {
                match &expect_invalid {
                    None => bail!("{invalid} of {test_count} tests invalid or not run"),
                    Some(name) => bail!(
                        "{invalid} of {test_count} tests not found invalid by {name}, or not run"
                    ),
                }
            }
            Ok(())
        }
        Command::Check { dir } => {
            let results = run::recheck(&dir)?;
            print!("{}", run::summary("check", &dir, &results));
            if !results.valid {
                bail!("{} is invalid", dir.display());
            }
            Ok(())
        }
        Command::Powerfs { command } => match command {
            PowerfsCommand::Mount { state, mountpoint } => powerfs::serve(&state, &mountpoint),
            PowerfsCommand::PowerLoss { state } => {
                println!("{}", powerfs::control(&state, "power-loss")?);
                Ok(())
            }
            PowerfsCommand::Stats { state } => {
                println!("{}", powerfs::control(&state, "stats")?);
                Ok(())
            }
        },
        Command::Report { dir } => {
            let history = history::parse_jsonl(
                &std::fs::read_to_string(dir.join("history.jsonl"))
                    .with_context(|| format!("read {}/history.jsonl", dir.display()))?,
            )
            .map_err(anyhow::Error::msg)?;
            let results: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("results.json"))
                    .with_context(|| format!("read {}/results.json", dir.display()))?,
            )?;
            let title = format!("Quorumlog run {}", dir.display());
            let html = report::render_html(&title, &history, &results);
            std::fs::write(dir.join("report.html"), html)?;
            println!("{}", dir.join("report.html").display());
            Ok(())
        }
    }
}
