//! The closed-loop and paced load generators of the benchmarks, and what they tally: each
//! client has one HTTP/1.1 keep-alive connection with one request at a time on it.

use super::bench::{exchange, on_all_cores, post_add_leaf};
use super::sigsum::Submitter;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// Submitter keys the pre-signed requests rotate through.
const KEYS: u64 = 4;

/// What the clients of one scenario saw inside the measurement window.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub accepted: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of each 200.
    pub latencies: Vec<Duration>,
    /// CPU seconds each watched process used inside the window (see [`closed_loop`]).
    pub cpu: Vec<f64>,
}

impl Tally {
    pub fn record(&mut self, answer: Result<(u16, Bytes), String>, latency: Duration) {
        match answer {
            Ok((200, _)) => {
                self.ok += 1;
                self.latencies.push(latency);
            }
            Ok((202, _)) => self.accepted += 1,
            Ok((status, body)) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| {
                    format!("{status} {}", String::from_utf8_lossy(&body).trim())
                });
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.accepted += other.accepted;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }

    /// The `p`-quantile of the 200 latencies, in milliseconds.
    pub fn ms(&self, p: f64) -> f64 {
        let l = &self.latencies;
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((l.len() as f64 * p) as usize).min(l.len() - 1);
        l[i].as_secs_f64() * 1e3
    }

    /// Sorts the latencies and prints one line; returns the rate of 200s per second.
    /// (A 202 is reported on its own for add-leaf, as an error for anything else.)
    pub fn report(&mut self, label: &str, unit: &str, window: Duration, extra: &str) -> f64 {
        self.latencies.sort_unstable();
        let rate = self.ok as f64 / window.as_secs_f64();
        let accepted = if unit == "200/s" {
            format!(", {} 202", self.accepted)
        } else {
            self.errors += self.accepted;
            String::new()
        };
        println!(
            "{label}: {rate:.0} {unit}, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.0} ms{accepted}, {} errors{extra}",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(1.0),
            self.errors,
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
        rate
    }
}

/// Produces the next request of a client (`None` ends the client): client index, address,
/// the client's random state.
pub type MakeRequest =
    Arc<dyn Fn(usize, &str, &mut u64) -> Option<Request<Full<Bytes>>> + Send + Sync>;

/// `clients` closed-loop clients (client `i` on `addrs[i % addrs.len()]`) for `warm` +
/// `measure`; answers completing inside the measurement window are tallied, and so is the
/// CPU time each process of `watch` used in it.
pub async fn closed_loop(
    addrs: &[String],
    clients: usize,
    warm: Duration,
    measure: Duration,
    make: MakeRequest,
    watch: &[u32],
) -> Tally {
    let start = Instant::now();
    let (from, until) = (start + warm, start + warm + measure);
    let watch = watch.to_vec();
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let before: Vec<f64> = watch.iter().map(|&p| cpu_seconds(p)).collect();
        tokio::time::sleep_until(until.into()).await;
        watch
            .iter()
            .zip(before)
            .map(|(&p, b)| cpu_seconds(p) - b)
            .collect::<Vec<f64>>()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, stop, make) = (addrs[i % addrs.len()].clone(), stop.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1);
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(req) = make(i, &addr, &mut rng) else {
                    break;
                };
                let t = Instant::now();
                let answer = exchange(&mut conn, &addr, req).await;
                let done = Instant::now();
                if done >= from && done <= until {
                    tally.record(answer, done - t);
                }
            }
            tally
        }));
    }
    tokio::time::sleep_until(until.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("client task"));
    }
    total.cpu = cpu.await.expect("CPU watcher");
    total
}

/// User plus system CPU seconds process `pid` (all its threads) has used so far, from
/// `/proc/<pid>/stat`; 0 if it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    // Clock ticks per second of /proc (USER_HZ), 100 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; `rest` starts at field 3.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / TICKS
}

/// `clients` clients on `addr` sending `rate` requests per second in all for `warm` +
/// `measure`, each on a timer; latency counts from the scheduled send time.
pub async fn paced(
    addr: &str,
    clients: usize,
    rate: f64,
    warm: Duration,
    measure: Duration,
    bodies: Arc<Pool>,
) -> Tally {
    let period = Duration::from_secs_f64(clients as f64 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let (from, until) = (start + warm, start + warm + measure);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, bodies) = (addr.to_string(), bodies.clone());
        // Staggered, so the clients do not all fire at once.
        let first = start + period.mul_f64(i as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut timer = tokio::time::interval_at(first, period);
            timer.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut conn = None;
            loop {
                let scheduled = timer.tick().await;
                if scheduled >= until {
                    break;
                }
                let Some(body) = bodies.take() else { break };
                let answer = exchange(&mut conn, &addr, post_add_leaf(&addr, body)).await;
                let done = tokio::time::Instant::now();
                if scheduled >= from {
                    tally.record(answer, done - scheduled);
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("client task"));
    }
    total
}

/// Pre-signed add-leaf bodies, each handed out once.
pub struct Pool {
    bodies: Vec<Bytes>,
    next: AtomicUsize,
}

impl Pool {
    /// Signs `count` distinct requests for messages `first..` on all cores.
    pub async fn sign(first: u64, count: usize) -> Arc<Pool> {
        let t = Instant::now();
        let bodies = tokio::task::spawn_blocking(move || {
            let keys: Vec<Submitter> = (1..=KEYS as u8).map(Submitter::new).collect();
            on_all_cores(count, |i| {
                let n = first + i as u64;
                Bytes::from(keys[(n % KEYS) as usize].request(n).to_ascii())
            })
        })
        .await
        .expect("signing task");
        eprintln!(
            "(signed {count} add-leaf requests in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        Arc::new(Pool {
            bodies,
            next: AtomicUsize::new(0),
        })
    }

    pub fn take(&self) -> Option<Bytes> {
        self.bodies
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .cloned()
    }

    /// A note if the pool ran dry before the scenario ended.
    pub fn note(&self) -> &'static str {
        if self.next.load(Ordering::Relaxed) >= self.bodies.len() {
            " (ran out of pre-signed requests: raise QL_LEAVES)"
        } else {
            ""
        }
    }
}
