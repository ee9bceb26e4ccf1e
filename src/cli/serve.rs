//! `serve`: run one node (Raft, group commit, publication, public API, ops listener)
//! until SIGINT or SIGTERM.

use crate::api::add_leaf::Submitter;
use crate::api::dns::{StaticResolver, SystemResolver, TxtResolver};
use crate::api::forward::ForwardQueue;
use crate::api::ops::{self, Ops};
use crate::api::public::{self, PublicApi};
use crate::api::rate_limit::RateLimiter;
use crate::api::server::{self, HttpLimits};
use crate::api::status_page::{self, StatusSource};
use crate::app::LogApplication;
use crate::config::{CheckSubmissionsOn, NodeConfig};
use crate::kt::api::{self as kt_api, KtApi};
use crate::kt::directory::Directory;
use crate::kt::epochs;
use crate::kt::updates::{Limits, Updates};
use crate::kt::wire::Parameters;
use crate::metrics::Metrics;
use crate::publish::custody::{Custody, KeySlot};
use crate::publish::publisher::{self, PublishConfig};
use crate::publish::signer::LogSigner;
use crate::replicated::{GroupCommit, LeafState};
use crate::sigsum::policy::Policy;
use crate::status::StatusContext;
use anyhow::Context;
use quorumlog_raft::{Node, NodeOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Reads a static TXT table: `<name> <record>` per line (for tests and air-gapped setups).
fn static_resolver(path: &Path) -> anyhow::Result<StaticResolver> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read TXT table {}", path.display()))?;
    let mut table: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, record) = line.split_once(' ').with_context(|| {
            format!("{}:{}: expected \"<name> <record>\"", path.display(), i + 1)
        })?;
        table
            .entry(name.trim_end_matches('.').to_lowercase())
            .or_default()
            .push(record.trim().to_string());
    }
    Ok(StaticResolver::new(table))
}

/// Everything that reads the config before the node starts, so a bad file fails fast.
struct Setup {
    keys: Arc<KeySlot>,
    policy: Option<Policy>,
    limiter: RateLimiter,
    resolver: Arc<dyn TxtResolver>,
}

fn setup(cfg: &NodeConfig) -> anyhow::Result<Setup> {
    let log_key = cfg.log_public_key();
    let handed_off = cfg.path(&cfg.node.data_dir).join("key-handed-off");
    let signer = match (&cfg.log.key_file, cfg.log.custody) {
        (Some(f), Custody::File) => Some(LogSigner::load(&cfg.path(f), &log_key)?),
        // In custody `handoff` the file is optional: only the node that starts with the key
        // has it (and may delete it once loaded).
        (Some(_), Custody::Handoff) if handed_off.exists() => {
            tracing::info!(
                marker = %handed_off.display(),
                "this node handed the signing key on; its key file is not loaded (load-key gives it back)"
            );
            None
        }
        (Some(f), Custody::Handoff) if cfg.path(f).exists() => {
            let path = cfg.path(f);
            let signer = LogSigner::load(&path, &log_key)?;
            if cfg.log.delete_key_file {
                std::fs::remove_file(&path)
                    .with_context(|| format!("delete key file {}", path.display()))?;
                tracing::info!(file = %path.display(), "signing key loaded; key file deleted");
            }
            Some(signer)
        }
        _ => None,
    };
    let keys =
        Arc::new(KeySlot::new(cfg.log.custody, log_key, signer).with_handed_off_marker(handed_off));
    let policy = match &cfg.log.policy_file {
        Some(f) => {
            let p = cfg.path(f);
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("read policy {}", p.display()))?;
            Some(Policy::parse(&text).with_context(|| format!("policy {}", p.display()))?)
        }
        None => None,
    };
    let limiter = match &cfg.rate_limit.file {
        Some(f) => RateLimiter::load(&cfg.path(f))?,
        None => RateLimiter::unlimited(),
    };
    let resolver: Arc<dyn TxtResolver> = match &cfg.rate_limit.static_txt_file {
        Some(f) => Arc::new(static_resolver(&cfg.path(f))?),
        None => Arc::new(SystemResolver::new().context("DNS resolver for submit tokens")?),
    };
    Ok(Setup {
        keys,
        policy,
        limiter,
        resolver,
    })
}

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {what} listener {addr}"))
}

/// Runs the node described by `config_path`.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    init_tracing();
    #[cfg(feature = "unsafe-ack-before-fsync")]
    tracing::error!(
        "built with the planted fault unsafe-ack-before-fsync: acknowledged leaves can be \
         lost at power loss; this binary is for the power-loss tests only"
    );
    let cfg = NodeConfig::load(config_path)?;
    let setup = setup(&cfg)?;
    let tls = cfg.tls_files()?;
    let api_listener = bind("public API", &cfg.node.api_addr).await?;
    let ops_listener = match &cfg.node.ops_addr {
        Some(a) => Some(bind("ops", a).await?),
        None => None,
    };
    let opts = NodeOptions {
        id: cfg.node.id,
        data_dir: cfg.path(&cfg.node.data_dir),
        raft_addr: cfg.node.raft_addr.clone(),
        tls,
        raft: cfg.raft_config(),
        bootstrap: cfg.node.bootstrap.then(|| cfg.members()),
    };
    let directory = cfg.kt_params().map(|p| Arc::new(Directory::new(p)));
    if let (Some(dir), Some(signer)) = (&directory, setup.keys.get()) {
        let derived = signer.directory().public();
        if derived.signing != dir.params().signing_key.0 || derived.vrf != dir.params().vrf_key {
            anyhow::bail!(
                "[kt] directory_key and vrf_key are not the keys derived from this log's key \
                 (quorumlog init-cluster --kt writes them)"
            );
        }
    }
    let mut state = LeafState::new(cfg.log_public_key());
    if let Some(dir) = &directory {
        state = state.with_directory(dir.clone());
    }
    let state = Arc::new(state);
    let metrics = Arc::new(Metrics::default());
    let (group_commit, batcher) = GroupCommit::new(cfg.batch_config(), metrics.clone());
    let (forwarder, forward_loop) = ForwardQueue::new();
    let submitter = Arc::new(Submitter {
        state: state.clone(),
        group_commit,
        limiter: setup.limiter,
        resolver: setup.resolver,
        allow_test_domain: cfg.rate_limit.allow_test_domain,
        wait: Duration::from_millis(cfg.api.add_leaf_wait_ms),
        check_on_follower: cfg.api.check_submissions_on == CheckSubmissionsOn::ReceivingNode,
        forwarder,
        metrics: metrics.clone(),
    });
    let epoch_full = Arc::new(tokio::sync::Notify::new());
    let updates = cfg.kt.as_ref().map(|kt| {
        Arc::new(Updates {
            state: state.clone(),
            keys: setup.keys.clone(),
            limits: Limits {
                max_id_bytes: kt.max_id_bytes,
                max_value_bytes: kt.max_value_bytes,
                max_epoch_mutations: kt.max_epoch_mutations,
            },
            epoch_full: epoch_full.clone(),
        })
    });
    let app = Arc::new(LogApplication {
        state: state.clone(),
        submitter: submitter.clone(),
        keys: setup.keys.clone(),
        updates: updates.clone(),
    });
    let node = Node::start(opts, app)
        .await
        .with_context(|| format!("starting node {}", cfg.node.id))?;
    let handle = node.handle().clone();
    batcher.run(handle.clone());
    forward_loop.run(handle.clone());

    let witnesses = setup.policy.map(|p| p.witnesses).unwrap_or_default();
    let status_source = Arc::new(StatusSource {
        node: handle.clone(),
        ctx: StatusContext {
            log_key: cfg.log_public_key(),
            custody: cfg.log.custody,
            witnesses: witnesses.clone(),
        },
        api_prefix: cfg.api.url_prefix.clone(),
        ops_addr: cfg.node.ops_addr.clone(),
        cache: Default::default(),
    });
    if setup.keys.get().is_none() {
        tracing::warn!(
            custody = ?setup.keys.custody(),
            "no signing key: this node publishes no tree heads until one is loaded"
        );
    }
    let publish = PublishConfig {
        interval: Duration::from_millis(cfg.publish.interval_ms),
        witness_timeout: Duration::from_millis(
            cfg.publish
                .witness_timeout_ms
                .clamp(1, cfg.publish.interval_ms),
        ),
        witnesses,
    };
    let publisher = publisher::start(
        handle.clone(),
        state.clone(),
        setup.keys.clone(),
        publish,
        metrics.clone(),
    );

    let epochs = match (&directory, &cfg.kt) {
        (Some(dir), Some(kt)) => Some(epochs::start(
            handle.clone(),
            dir.clone(),
            setup.keys.clone(),
            Duration::from_millis(kt.epoch_interval_ms),
            epoch_full,
        )),
        _ => None,
    };

    let limits = HttpLimits {
        header_timeout: Duration::from_millis(cfg.api.header_timeout_ms),
        body_timeout: Duration::from_millis(cfg.api.body_timeout_ms),
        request_timeout: Duration::from_millis(cfg.api.request_timeout_ms),
        max_reads_in_flight: cfg.api.max_in_flight,
        max_writes_in_flight: cfg.api.max_writes_in_flight,
        max_connections_per_client: cfg.api.max_connections_per_client,
    };
    // The ops listener serves a handful of scrapers and operators: small budgets.
    let ops_limits = HttpLimits {
        max_reads_in_flight: 64,
        max_writes_in_flight: 16,
        max_connections_per_client: 64,
        ..limits
    };
    let mut public_routes = public::router(
        Arc::new(PublicApi {
            state: state.clone(),
            submitter,
            node: handle.clone(),
            max_range: cfg.api.max_range,
        }),
        &cfg.api.url_prefix,
    )
    .merge(status_page::router(status_source));
    if let (Some(kt), Some(updates)) = (&cfg.kt, updates) {
        let params = cfg.kt_params().expect("checked with the config");
        public_routes = kt_api::router(Arc::new(KtApi {
            state: state.clone(),
            updates,
            keys: setup.keys.clone(),
            node: handle.clone(),
            parameters: Parameters {
                map_id: params.map_id,
                directory_key: hex::encode(params.signing_key.0),
                vrf_key: hex::encode(params.vrf_key),
                log_key: hex::encode(cfg.log_public_key().0),
                epoch_interval_ms: kt.epoch_interval_ms,
                max_epoch_mutations: kt.max_epoch_mutations,
                max_id_bytes: kt.max_id_bytes,
                max_value_bytes: kt.max_value_bytes,
            },
            max_range: cfg.api.max_range,
        }))
        .merge(public_routes);
    }
    let public_router = server::with_limits(public_routes, limits);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = vec![tokio::spawn(server::serve(
        api_listener,
        public_router,
        limits,
        stop_rx.clone(),
    ))];
    if let Some(l) = ops_listener {
        let ops_router = server::with_limits(
            ops::router(Arc::new(Ops {
                node: handle.clone(),
                state: state.clone(),
                metrics,
            })),
            ops_limits,
        );
        servers.push(tokio::spawn(server::serve(
            l,
            ops_router,
            ops_limits,
            stop_rx.clone(),
        )));
    }
    tracing::info!(
        id = cfg.node.id,
        raft_addr = %cfg.node.raft_addr,
        api_addr = %cfg.node.api_addr,
        ops_addr = ?cfg.node.ops_addr,
        "node running"
    );

    wait_for_signal().await?;
    tracing::info!("shutting down");
    publisher.abort();
    if let Some(e) = epochs {
        e.abort();
    }
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
