//! Availability: metrics only, never invalid (a Raft log is not meant to be available to
//! a minority, so "unavailable under a fault" is an observation, not a bug).
//!
//! - Fault windows come from nemesis `start`/`stop` pairs of the same name (a `stop` with
//!   no open window of its name heals all open windows); a window runs from the start's
//!   invoke to the stop's completion, or to the end of the history if never healed.
//! - Per window, and for operations in no window ("no fault"), the ok-rate of `add_leaf`
//!   by invoke time: ok / (ok + info + fail); an operation that never completed is info.
//! - Per heal (each `stop`, at its completion): write recovery is the time to the
//!   completion of the earliest-completing `ok` `add_leaf` invoked at or after the heal;
//!   read recovery is the time to the first `ok` `read_head` completing at or after the
//!   heal with a size larger than any read completed before it (any size if none was).
//!   Summarised as p50 (nearest rank) and max, plus how many heals never recovered.

use serde_json::json;

use super::ops::Operation;
use super::{ms, Analysis, CheckResult};
use crate::history::{EventType, NemesisPhase, Op};

/// One fault window.
struct Window {
    name: String,
    detail: String,
    start_ns: u64,
    end_ns: Option<u64>,
}

impl Window {
    fn contains(&self, t: u64, history_end: u64) -> bool {
        match self.end_ns {
            Some(end) => self.start_ns <= t && t < end,
            None => self.start_ns <= t && t <= history_end,
        }
    }
}

/// add_leaf outcome counts.
#[derive(Default, Clone, Copy)]
struct Rate {
    ok: u64,
    info: u64,
    fail: u64,
}

impl Rate {
    fn add(&mut self, o: &Operation<'_>) {
        match o.outcome() {
            EventType::Ok => self.ok += 1,
            EventType::Fail => self.fail += 1,
            _ => self.info += 1,
        }
    }

    fn json(&self) -> serde_json::Value {
        let total = self.ok + self.info + self.fail;
        json!({
            "ok": self.ok,
            "info": self.info,
            "fail": self.fail,
            "ok_rate": (total > 0).then(|| self.ok as f64 / total as f64),
        })
    }
}

/// `p50/max ms` of a summary made by [`summary`], for the one-line summary.
fn p50_max(v: &serde_json::Value) -> String {
    match (v["p50_ms"].as_f64(), v["max_ms"].as_f64()) {
        (Some(p), Some(m)) => format!("{p:.0}/{m:.0} ms"),
        _ => "none".into(),
    }
}

/// p50 (nearest rank) and max of a sample, in ms.
fn summary(mut xs: Vec<f64>) -> serde_json::Value {
    xs.sort_by(f64::total_cmp);
    json!({
        "count": xs.len(),
        "p50_ms": xs.get(xs.len().saturating_sub(1) / 2),
        "max_ms": xs.last(),
    })
}

/// Computes the availability metrics.
pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut windows: Vec<Window> = Vec::new();
    let mut heals: Vec<(u64, String)> = Vec::new();
    for o in a.ops.iter() {
        let Op::Nemesis(n) = o.op() else { continue };
        match n.phase {
            NemesisPhase::Start => windows.push(Window {
                name: n.name.clone(),
                detail: n.detail.clone(),
                start_ns: o.invoke_ns(),
                end_ns: None,
            }),
            NemesisPhase::Stop => {
                let at = o.end_ns();
                heals.push((at, n.name.clone()));
                let open = |w: &&mut Window| w.end_ns.is_none();
                if let Some(w) = windows.iter_mut().filter(open).find(|w| w.name == n.name) {
                    w.end_ns = Some(at);
                } else {
                    for w in windows.iter_mut().filter(open) {
                        w.end_ns = Some(at);
                    }
                }
            }
        }
    }

    let writes: Vec<&Operation<'_>> = a.ops_where(|op| matches!(op, Op::AddLeaf(_))).collect();
    let mut per_window = vec![Rate::default(); windows.len()];
    let (mut no_fault, mut overall) = (Rate::default(), Rate::default());
    for o in &writes {
        overall.add(o);
        let mut inside = false;
        for (w, r) in windows.iter().zip(per_window.iter_mut()) {
            if w.contains(o.invoke_ns(), a.end_ns) {
                r.add(o);
                inside = true;
            }
        }
        if !inside {
            no_fault.add(o);
        }
    }

    // Successful reads (history only): (completion time, size).
    let reads: Vec<(u64, u64)> = a
        .heads
        .iter()
        .filter(|h| h.event_index.is_some())
        .map(|h| (h.complete_ns, h.head.size))
        .collect();
    let (mut write_rec, mut read_rec) = (Vec::new(), Vec::new());
    let (mut write_never, mut read_never) = (0usize, 0usize);
    let mut per_heal = Vec::new();
    for (h, name) in &heals {
        let write = writes
            .iter()
            .filter(|o| o.is_ok() && o.invoke_ns() >= *h)
            .map(|o| o.end_ns())
            .min()
            .map(|t| ms(t - h));
        let before = reads.iter().filter(|(t, _)| t < h).map(|(_, s)| *s).max();
        let read = reads
            .iter()
            .filter(|(t, s)| t >= h && before.is_none_or(|b| *s > b))
            .map(|(t, _)| *t)
            .min()
            .map(|t| ms(t - h));
        match write {
            Some(x) => write_rec.push(x),
            None => write_never += 1,
        }
        match read {
            Some(x) => read_rec.push(x),
            None => read_never += 1,
        }
        per_heal.push(json!({
            "name": name,
            "at_ms": ms(*h),
            "write_recovery_ms": write,
            "read_recovery_ms": read,
            "largest_size_before": before,
        }));
    }

    let window_json: Vec<_> = windows
        .iter()
        .zip(&per_window)
        .map(|(w, r)| {
            json!({
                "name": w.name,
                "detail": w.detail,
                "start_ms": ms(w.start_ns),
                "end_ms": w.end_ns.map(ms),
                "healed": w.end_ns.is_some(),
                "add_leaf": r.json(),
            })
        })
        .collect();
    let details = json!({
        "add_leaf": overall.json(),
        "no_fault": no_fault.json(),
        "windows": window_json,
        "heals": per_heal,
        "write_recovery": summary(write_rec),
        "read_recovery": summary(read_rec),
        "heals_without_write_recovery": write_never,
        "heals_without_read_recovery": read_never,
    });
    let rate = |r: &Rate| {
        let total = r.ok + r.info + r.fail;
        if total == 0 {
            "n/a".to_string()
        } else {
            format!("{:.1}%", 100.0 * r.ok as f64 / total as f64)
        }
    };
    let fault = windows
        .iter()
        .zip(&per_window)
        .fold(Rate::default(), |mut acc, (_, r)| {
            acc.ok += r.ok;
            acc.info += r.info;
            acc.fail += r.fail;
            acc
        });
    let summary = format!(
        "add_leaf ok-rate {} without faults, {} inside {} fault window(s); {} heal(s), recovery p50/max: writes {}, reads {}",
        rate(&no_fault),
        rate(&fault),
        windows.len(),
        heals.len(),
        p50_max(&details["write_recovery"]),
        p50_max(&details["read_recovery"]),
    );
    CheckResult {
        name: "availability".into(),
        valid: true,
        summary,
        details,
        anomaly_count: 0,
        anomalies: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Sim, MS};
    use super::super::Analysis;
    use super::*;

    #[test]
    fn clean_run_reports_rates_and_recovery() {
        let s = Sim::clean();
        let cfg = s.config();
        let f = s.final_state();
        let r = check(&Analysis::new(&s.events, &f, &cfg));
        assert!(r.valid);
        assert_eq!(r.details["no_fault"]["ok"], 7);
        assert_eq!(r.details["windows"][0]["add_leaf"]["info"], 2);
        assert_eq!(r.details["windows"][0]["add_leaf"]["fail"], 1);
        assert_eq!(r.details["windows"][0]["add_leaf"]["ok_rate"], 0.0);
        assert_eq!(r.details["write_recovery"]["count"], 1);
    }

    #[test]
    fn recovery_times_on_a_small_history() {
        let mut s = Sim::new();
        s.ack(0, 1, 0); // t = 0 .. 2 ms, no fault
        s.read_head(1, 1, s.head(1));
        s.now_ns = 10_000 * MS;
        s.nemesis("kill", NemesisPhase::Start); // window from 10 000 ms
        s.add_leaf(0, 1, 1, EventType::Info, true);
        s.add_leaf(0, 1, 2, EventType::Fail, false);
        s.read_head(1, 2, s.head(1));
        s.now_ns = 20_000 * MS;
        s.nemesis("kill", NemesisPhase::Stop); // healed at 20 002 ms
        s.add_leaf(0, 1, 3, EventType::Fail, false); // 20 003 .. 20 005 ms
        s.now_ns = 21_002 * MS;
        s.ack(0, 2, 4); // completes at 21 004 ms: write recovery 1 002 ms
        s.now_ns = 22_000 * MS;
        s.read_head(1, 1, s.head(1)); // not larger than before the heal
        s.now_ns = 23_000 * MS;
        s.read_head(1, 3, s.head(3)); // completes 23 002 ms: read recovery 3 000 ms
        s.now_ns = 24_000 * MS;
        s.nemesis("pause", NemesisPhase::Start); // never healed

        let cfg = s.config();
        let f = s.final_state();
        let r = check(&Analysis::new(&s.events, &f, &cfg));
        let d = &r.details;
        assert!(r.valid);
        assert_eq!(d["heals"][0]["at_ms"], 20_002.0);
        assert_eq!(d["heals"][0]["write_recovery_ms"], 1_002.0);
        assert_eq!(d["heals"][0]["read_recovery_ms"], 3_000.0);
        assert_eq!(d["write_recovery"]["p50_ms"], 1_002.0);
        assert_eq!(d["read_recovery"]["max_ms"], 3_000.0);
        assert_eq!(d["no_fault"]["ok"], 2);
        assert_eq!(d["no_fault"]["fail"], 1);
        assert_eq!(d["windows"][0]["add_leaf"]["info"], 1);
        assert_eq!(d["windows"][0]["add_leaf"]["fail"], 1);
        assert_eq!(d["windows"][0]["end_ms"], 20_002.0);
        assert_eq!(d["windows"][1]["healed"], false);
        assert_eq!(d["heals_without_write_recovery"], 0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = summary(vec![5.0, 1.0, 3.0, 2.0]);
        assert_eq!(d["p50_ms"], 2.0);
        assert_eq!(d["max_ms"], 5.0);
        assert_eq!(summary(vec![])["p50_ms"], serde_json::Value::Null);
    }
}
