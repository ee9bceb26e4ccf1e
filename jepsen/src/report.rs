//! A self-contained HTML report of one test run, in the spirit of Jepsen's perf graphs:
//! latency and throughput over time with the fault intervals shaded, then the checkers'
//! verdicts. Inline SVG and CSS only (no scripts, no external assets), so the file can be
//! archived with the run and opened anywhere. Output is a pure function of the input, so
//! two reports of the same run diff cleanly.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::history::{Event, EventType, NemesisPhase, NemesisValue, Op, Process};

/// Above this many points per latency panel, `ok` points are thinned (never fail/info,
/// which are the interesting ones) to keep the page light in a browser.
const MAX_POINTS: usize = 20_000;
/// Anomalies shown per checker; results.json has the rest.
const MAX_ANOMALIES: usize = 5;

/// SVG geometry: the plot area and, to its right, the legend.
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 830.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 256.0;
const LEGEND_X: f64 = 846.0;

/// Band colours per nemesis name, in order of first appearance; chosen away from the
/// outcome colours (green, orange, red) so a band never reads as an outcome.
const FAULT_COLOURS: [&str; 8] = [
    "#4e79a7", "#b07aa1", "#edc948", "#76b7b2", "#9c755f", "#bab0ac", "#ff9da7", "#17becf",
];

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Client operation kinds, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    AddLeaf,
    ReadHead,
    Consistency,
    Inclusion,
    Status,
    KtUpdate,
    KtHeads,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::AddLeaf,
        Kind::ReadHead,
        Kind::Consistency,
        Kind::Inclusion,
        Kind::Status,
        Kind::KtUpdate,
        Kind::KtHeads,
    ];

    /// The client kind of an operation; `None` for nemesis operations.
    fn of(op: &Op) -> Option<Kind> {
        match op {
            Op::AddLeaf(_) => Some(Kind::AddLeaf),
            Op::ReadHead(_) => Some(Kind::ReadHead),
            Op::Consistency(_) => Some(Kind::Consistency),
            Op::Inclusion(_) => Some(Kind::Inclusion),
            Op::Status(_) => Some(Kind::Status),
            Op::KtUpdate(_) => Some(Kind::KtUpdate),
            Op::KtHeads(_) => Some(Kind::KtHeads),
            Op::Nemesis(_) => None,
        }
    }

    /// The `f` of the history line.
    fn name(self) -> &'static str {
        match self {
            Kind::AddLeaf => "add_leaf",
            Kind::ReadHead => "read_head",
            Kind::Consistency => "consistency",
            Kind::Inclusion => "inclusion",
            Kind::Status => "status",
            Kind::KtUpdate => "kt_update",
            Kind::KtHeads => "kt_heads",
        }
    }

    /// Marker shape, so the read kinds can share one panel.
    fn marker(self) -> Marker {
        match self {
            Kind::AddLeaf | Kind::ReadHead => Marker::Circle,
            Kind::Consistency => Marker::Square,
            Kind::Inclusion => Marker::Triangle,
            Kind::Status | Kind::KtHeads => Marker::Diamond,
            Kind::KtUpdate => Marker::Square,
        }
    }

    /// Line colour in the throughput plot (reads only; add_leaf uses outcome colours).
    fn colour(self) -> &'static str {
        match self {
            Kind::AddLeaf => "#333333",
            Kind::ReadHead => "#1f77b4",
            Kind::Consistency => "#9467bd",
            Kind::Inclusion => "#8c564b",
            Kind::Status => "#7f7f7f",
            Kind::KtUpdate => "#e377c2",
            Kind::KtHeads => "#bcbd22",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

/// How a client operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Info,
    Fail,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Info, Outcome::Fail];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Info => "info",
            Outcome::Fail => "fail",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Outcome::Ok => "#2ca02c",
            Outcome::Info => "#ff7f0e",
            Outcome::Fail => "#d62728",
        }
    }
}

/// An invoke paired with its completion.
#[derive(Debug, Clone)]
struct ClientOp<'a> {
    kind: Kind,
    outcome: Outcome,
    process: u64,
    node: Option<u64>,
    start_ns: u64,
    end_ns: u64,
    error: Option<&'a str>,
}

impl ClientOp<'_> {
    /// Latency in ms, floored so a zero latency still has a place on the log axis.
    fn latency_ms(&self) -> f64 {
        (self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6).max(1e-3)
    }
}

/// Per kind: completions by outcome, plus invokes that never completed.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    by_outcome: [usize; 3],
    pending: usize,
}

/// Pairs each client `invoke` with the next completion of the same process. Completions
/// without an invoke are ignored; invokes without a completion are counted as pending.
fn client_ops(history: &[Event]) -> (Vec<ClientOp<'_>>, BTreeMap<Kind, Counts>) {
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut ops = Vec::new();
    let mut counts: BTreeMap<Kind, Counts> = BTreeMap::new();
    for e in history {
        let Process::Client(p) = e.process else {
            continue;
        };
        let Some(kind) = Kind::of(&e.op) else {
            continue;
        };
        let outcome = match e.kind {
            EventType::Invoke => {
                if let Some(prev) = open.insert(p, e) {
                    if let Some(k) = Kind::of(&prev.op) {
                        counts.entry(k).or_default().pending += 1;
                    }
                }
                continue;
            }
            EventType::Ok => Outcome::Ok,
            EventType::Info => Outcome::Info,
            EventType::Fail => Outcome::Fail,
        };
        let Some(inv) = open.remove(&p) else {
            continue;
        };
        let kind = Kind::of(&inv.op).unwrap_or(kind);
        counts.entry(kind).or_default().by_outcome[outcome as usize] += 1;
        ops.push(ClientOp {
            kind,
            outcome,
            process: p,
            node: e.node.or(inv.node),
            start_ns: inv.time_ns,
            end_ns: e.time_ns,
            error: e.error.as_deref(),
        });
    }
    for inv in open.values() {
        if let Some(k) = Kind::of(&inv.op) {
            counts.entry(k).or_default().pending += 1;
        }
    }
    (ops, counts)
}

/// One fault, from its start to its heal (`None`: never healed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    name: String,
    detail: String,
    start_ns: u64,
    end_ns: Option<u64>,
    /// Whether the start (end) time is that of a completion rather than an invoke, which
    /// a later completion would replace.
    start_settled: bool,
    end_settled: bool,
    dropped: bool,
}

/// Fault intervals from the nemesis events. Starts and stops may each be an invoke/ok
/// pair or a single event; the completion's time wins, since that is when the fault is
/// known to be in place (or healed). A start that completes with `fail` never happened.
fn fault_intervals(history: &[Event]) -> Vec<Fault> {
    let mut faults: Vec<Fault> = Vec::new();
    // Latest live interval per name.
    let mut latest: BTreeMap<&str, usize> = BTreeMap::new();
    for e in history {
        let (Process::Nemesis(_), Op::Nemesis(v)) = (&e.process, &e.op) else {
            continue;
        };
        let NemesisValue {
            name,
            phase,
            detail,
        } = v;
        let completion = e.kind != EventType::Invoke;
        let failed = e.kind == EventType::Fail;
        let cur = latest.get(name.as_str()).copied();
        match phase {
            NemesisPhase::Start => match cur.map(|i| &mut faults[i]) {
                Some(f) if f.end_ns.is_none() => {
                    if completion && !f.start_settled {
                        if failed {
                            f.dropped = true;
                            latest.remove(name.as_str());
                        } else {
                            f.start_ns = e.time_ns;
                            f.start_settled = true;
                            if !detail.is_empty() {
                                f.detail.clone_from(detail);
                            }
                        }
                    }
                }
                _ if failed => {}
                _ => {
                    latest.insert(name, faults.len());
                    faults.push(Fault {
                        name: name.clone(),
                        detail: detail.clone(),
                        start_ns: e.time_ns,
                        end_ns: None,
                        start_settled: completion,
                        end_settled: false,
                        dropped: false,
                    });
                }
            },
            NemesisPhase::Stop => {
                let Some(f) = cur.map(|i| &mut faults[i]) else {
                    continue;
                };
                match f.end_ns {
                    None if !failed => {
                        f.end_ns = Some(e.time_ns);
                        f.end_settled = completion;
                    }
                    Some(_) if completion && !f.end_settled => {
                        // A heal that failed leaves the fault in place.
                        f.end_ns = (!failed).then_some(e.time_ns);
                        f.end_settled = !failed;
                    }
                    _ => {}
                }
            }
        }
    }
    faults.retain(|f| !f.dropped);
    faults
}

/// Minimal HTML escaping for text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick label: integers without a fraction, others with at most three decimals.
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A 1-2-5 step giving about `target` ticks over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// The time axis shared by all plots, so they line up vertically.
#[derive(Debug, Clone, Copy)]
struct TimeAxis {
    max_s: f64,
    step_s: f64,
}

impl TimeAxis {
    fn new(duration_s: f64) -> TimeAxis {
        // The axis ends where the run did, so the data spans the whole width.
        let max_s = duration_s.max(1.0);
        TimeAxis {
            max_s,
            step_s: nice_step(max_s, 10.0),
        }
    }

    fn x(&self, t_s: f64) -> f64 {
        LEFT + (t_s / self.max_s).clamp(0.0, 1.0) * (RIGHT - LEFT)
    }

    fn xns(&self, t_ns: u64) -> f64 {
        self.x(t_ns as f64 / 1e9)
    }
}

/// Opens an SVG with its frame and the time axis (grid, ticks, labels).
fn svg_open(out: &mut String, label: &str, t: &TimeAxis) {
    w!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\n",
        esc(label)
    );
    w!(
        out,
        "<rect class=\"frame\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\"/>\n",
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let n = (t.max_s / t.step_s + 1e-9).floor() as u64;
    for i in 0..=n {
        let s = i as f64 * t.step_s;
        let x = t.x(s);
        w!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{BOTTOM}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            BOTTOM + 14.0,
            num(s)
        );
    }
    w!(
        out,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time (s)</text>\n",
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 32.0
    );
}

/// The y axis title, rotated along the left edge.
fn y_title(out: &mut String, title: &str) {
    let y = (TOP + BOTTOM) / 2.0;
    w!(
        out,
        "<text class=\"axis\" x=\"16\" y=\"{y}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 16 {y})\">{}</text>\n",
        esc(title)
    );
}

/// Shades each fault interval, labelled with the nemesis name; the detail is a tooltip.
/// Labels of different names are staggered so overlapping faults stay readable.
fn fault_bands(out: &mut String, faults: &[Fault], names: &[&str], t: &TimeAxis, end_ns: u64) {
    for f in faults {
        let idx = names.iter().position(|n| *n == f.name).unwrap_or(0);
        let colour = FAULT_COLOURS[idx % FAULT_COLOURS.len()];
        let x1 = t.xns(f.start_ns);
        let x2 = t.xns(f.end_ns.unwrap_or(end_ns)).max(x1 + 1.0);
        let healed = match f.end_ns {
            Some(e) => format!("{} s", num_s(e)),
            None => "never healed".to_string(),
        };
        w!(
            out,
            "<g class=\"fault\"><title>{}: {} ({} s to {})</title>\
             <rect class=\"band\" x=\"{x1:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{}\" \
             fill=\"{colour}\"/>\
             <text class=\"band-label\" x=\"{:.1}\" y=\"{}\" fill=\"{colour}\">{}</text></g>\n",
            esc(&f.name),
            esc(&f.detail),
            num_s(f.start_ns),
            healed,
            x2 - x1,
            BOTTOM - TOP,
            x1 + 2.0,
            TOP + 11.0 + 11.0 * (idx % 3) as f64,
            esc(&f.name)
        );
    }
}

/// Seconds with one decimal, for labels and tables.
fn num_s(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e9)
}

/// One marker, `class="pt o-<outcome>"`, with an optional tooltip.
fn marker(out: &mut String, m: Marker, outcome: Outcome, x: f64, y: f64, tip: Option<&str>) {
    let class = format!("pt o-{}", outcome.name());
    let body = match tip {
        Some(t) => format!("><title>{}</title>", esc(t)),
        None => "/>".to_string(),
    };
    let close = |tag: &str| {
        if tip.is_some() {
            format!("</{tag}>")
        } else {
            String::new()
        }
    };
    match m {
        Marker::Circle => w!(
            out,
            "<circle class=\"{class}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"{body}{}\n",
            close("circle")
        ),
        Marker::Square => w!(
            out,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"5\" height=\"5\"{body}{}\n",
            x - 2.5,
            y - 2.5,
            close("rect")
        ),
        Marker::Triangle => w!(
            out,
            "<path class=\"{class}\" d=\"M{x:.1},{:.1}l3,5.2h-6z\"{body}{}\n",
            y - 3.2,
            close("path")
        ),
        Marker::Diamond => w!(
            out,
            "<path class=\"{class}\" d=\"M{x:.1},{:.1}l3,3l-3,3l-3,-3z\"{body}{}\n",
            y - 3.0,
            close("path")
        ),
    }
}

/// Which ops a latency panel draws: every fail/info, and an evenly spread, deterministic
/// subset of the `ok` ones if there are more than [`MAX_POINTS`] in all.
fn sample<'o, 'a>(ops: &[&'o ClientOp<'a>]) -> Vec<&'o ClientOp<'a>> {
    if ops.len() <= MAX_POINTS {
        return ops.to_vec();
    }
    let n_ok = ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let budget = MAX_POINTS.saturating_sub(ops.len() - n_ok);
    let mut i = 0usize;
    ops.iter()
        .copied()
        .filter(|o| {
            if o.outcome != Outcome::Ok {
                return true;
            }
            let keep = (i * budget) % n_ok < budget;
            i += 1;
            keep
        })
        .collect()
}

/// Exponent label for a decade tick on the latency axis.
fn decade_label(e: i32) -> String {
    if (-3..=4).contains(&e) {
        num(10f64.powi(e))
    } else {
        format!("1e{e}")
    }
}

/// A latency scatter plot (log y) of the given ops over the shared time axis.
fn latency_svg(
    label: &str,
    ops: &[&ClientOp<'_>],
    faults: &[Fault],
    names: &[&str],
    t: &TimeAxis,
    end_ns: u64,
) -> String {
    let shown = sample(ops);
    let (lo, hi) = shown
        .iter()
        .map(|o| o.latency_ms())
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
        .map(|(a, b)| {
            let lo = a.log10().floor() as i32;
            let hi = (b.log10().ceil() as i32).max(lo + 1);
            (lo, hi)
        })
        .unwrap_or((0, 3));
    let y = |ms: f64| BOTTOM - (ms.log10() - lo as f64) / (hi - lo) as f64 * (BOTTOM - TOP);

    let mut out = String::new();
    svg_open(&mut out, label, t);
    for e in lo..=hi {
        let yy = y(10f64.powi(e));
        w!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{RIGHT}\" y2=\"{yy:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 4.0,
            yy + 4.0,
            decade_label(e)
        );
        if e < hi {
            for m in 2..=9 {
                let ym = y(m as f64 * 10f64.powi(e));
                w!(
                    out,
                    "<line class=\"minor\" x1=\"{}\" y1=\"{ym:.1}\" x2=\"{LEFT}\" y2=\"{ym:.1}\"/>",
                    LEFT - 3.0
                );
            }
            out.push('\n');
        }
    }
    y_title(&mut out, "latency (ms)");
    fault_bands(&mut out, faults, names, t, end_ns);

    // Ok first so that fail and info points are drawn on top.
    for outcome in Outcome::ALL {
        for o in shown.iter().filter(|o| o.outcome == outcome) {
            let tip = (outcome != Outcome::Ok).then(|| {
                format!(
                    "{} {} process {} node {} at {} s, {:.1} ms{}{}",
                    o.kind.name(),
                    outcome.name(),
                    o.process,
                    o.node.map_or("-".to_string(), |n| n.to_string()),
                    num_s(o.start_ns),
                    o.latency_ms(),
                    if o.error.is_some() { ": " } else { "" },
                    o.error.unwrap_or("")
                )
            });
            marker(
                &mut out,
                o.kind.marker(),
                outcome,
                t.xns(o.start_ns),
                y(o.latency_ms()),
                tip.as_deref(),
            );
        }
    }
    if ops.is_empty() {
        w!(
            out,
            "<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no operations</text>\n",
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0
        );
    }

    // Legend: outcome colours, then marker shapes if the panel mixes kinds.
    let mut ly = TOP + 8.0;
    for outcome in Outcome::ALL {
        let n = ops.iter().filter(|o| o.outcome == outcome).count();
        w!(
            out,
            "<circle class=\"o-{}\" cx=\"{}\" cy=\"{ly}\" r=\"4\"/>\
             <text class=\"legend\" x=\"{}\" y=\"{}\">{} ({n})</text>\n",
            outcome.name(),
            LEGEND_X + 4.0,
            LEGEND_X + 14.0,
            ly + 4.0,
            outcome.name()
        );
        ly += 16.0;
    }
    let mut kinds: Vec<Kind> = ops.iter().map(|o| o.kind).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.len() > 1 {
        ly += 6.0;
        for k in kinds {
            let mut m = String::new();
            marker(&mut m, k.marker(), Outcome::Ok, LEGEND_X + 4.0, ly, None);
            out.push_str(&m.replace("class=\"pt o-ok\"", "class=\"key\""));
            w!(
                out,
                "<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>\n",
                LEGEND_X + 14.0,
                ly + 4.0,
                k.name()
            );
            ly += 16.0;
        }
    }
    if shown.len() < ops.len() {
        w!(
            out,
            "<text class=\"legend\" x=\"{LEGEND_X}\" y=\"{}\">showing {} of {}</text>\n",
            ly + 10.0,
            shown.len(),
            ops.len()
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One throughput line: completions per 1-second bucket.
struct Series {
    label: String,
    colour: &'static str,
    dashed: bool,
    counts: Vec<usize>,
}

/// Completions per second: add_leaf per outcome (solid), each read kind overall (dashed).
fn throughput_svg(
    ops: &[ClientOp<'_>],
    faults: &[Fault],
    names: &[&str],
    t: &TimeAxis,
    end_ns: u64,
) -> String {
    let buckets = (t.max_s.ceil() as usize).max(1);
    let bucket = |ns: u64| ((ns / 1_000_000_000) as usize).min(buckets - 1);
    let mut series: Vec<Series> = Vec::new();
    for outcome in Outcome::ALL {
        let mut counts = vec![0usize; buckets];
        for o in ops
            .iter()
            .filter(|o| o.kind == Kind::AddLeaf && o.outcome == outcome)
        {
            counts[bucket(o.end_ns)] += 1;
        }
        series.push(Series {
            label: format!("add_leaf {}", outcome.name()),
            colour: outcome.colour(),
            dashed: false,
            counts,
        });
    }
    for k in Kind::ALL.into_iter().filter(|k| *k != Kind::AddLeaf) {
        let mut counts = vec![0usize; buckets];
        for o in ops.iter().filter(|o| o.kind == k) {
            counts[bucket(o.end_ns)] += 1;
        }
        series.push(Series {
            label: format!("{} (all)", k.name()),
            colour: k.colour(),
            dashed: true,
            counts,
        });
    }
    // add_leaf ok always has a line, as the reference; the rest only when non-empty.
    series.retain(|s| s.label == "add_leaf ok" || s.counts.iter().any(|c| *c > 0));

    let peak = series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = nice_step(peak, 5.0).max(1.0);
    let y_max = (peak / step).ceil() * step;
    let y = |v: f64| BOTTOM - v / y_max * (BOTTOM - TOP);

    let mut out = String::new();
    svg_open(&mut out, "throughput", t);
    let n = (y_max / step).round() as u64;
    for i in 0..=n {
        let v = i as f64 * step;
        let yy = y(v);
        w!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{RIGHT}\" y2=\"{yy:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 4.0,
            yy + 4.0,
            num(v)
        );
    }
    y_title(&mut out, "completions / s");
    fault_bands(&mut out, faults, names, t, end_ns);
    for s in &series {
        let pts: Vec<String> = s
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:.1},{:.1}", t.x(i as f64 + 0.5), y(*c as f64)))
            .collect();
        w!(
            out,
            "<polyline class=\"series\" stroke=\"{}\"{} points=\"{}\"/>\n",
            s.colour,
            if s.dashed {
                " stroke-dasharray=\"5,3\""
            } else {
                ""
            },
            pts.join(" ")
        );
    }
    let mut ly = TOP + 8.0;
    for s in &series {
        let total: usize = s.counts.iter().sum();
        w!(
            out,
            "<line class=\"series\" x1=\"{LEGEND_X}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" \
             stroke=\"{}\"{}/>\
             <text class=\"legend\" x=\"{}\" y=\"{}\">{} ({total})</text>\n",
            LEGEND_X + 14.0,
            s.colour,
            if s.dashed {
                " stroke-dasharray=\"5,3\""
            } else {
                ""
            },
            LEGEND_X + 20.0,
            ly + 4.0,
            esc(&s.label)
        );
        ly += 16.0;
    }
    out.push_str("</svg>\n");
    out
}

/// `valid` as shown and as a CSS class; anything but a boolean is "unknown".
fn verdict(v: Option<&Value>) -> (&'static str, &'static str) {
    match v {
        Some(Value::Bool(true)) => ("valid", "valid"),
        Some(Value::Bool(false)) => ("INVALID", "invalid"),
        _ => ("unknown", "unknown"),
    }
}

/// A JSON value as text: strings as they are, anything else compact.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The checker table. Reads fields with `get`, since the results schema still moves.
fn checks_html(out: &mut String, results: &Value) {
    let checks = results.get("checks").and_then(Value::as_array);
    let Some(checks) = checks.filter(|c| !c.is_empty()) else {
        out.push_str("<p class=\"note\">No checker results.</p>\n");
        return;
    };
    out.push_str(
        "<table class=\"checks\">\n<tr><th>checker</th><th>verdict</th><th>summary</th>\
         <th>anomalies</th></tr>\n",
    );
    for c in checks {
        let name = c.get("name").map(text_of).unwrap_or_else(|| "?".into());
        let (shown, class) = verdict(c.get("valid"));
        let summary = c.get("summary").map(text_of).unwrap_or_default();
        let anomalies: &[Value] = c
            .get("anomalies")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let total = c
            .get("anomaly_count")
            .and_then(Value::as_u64)
            .map_or(anomalies.len(), |n| (n as usize).max(anomalies.len()));
        w!(
            out,
            "<tr><td>{}</td><td class=\"{class}\">{shown}</td><td>{}</td><td>",
            esc(&name),
            esc(&summary)
        );
        if !anomalies.is_empty() {
            out.push_str("<ul>");
            for a in anomalies.iter().take(MAX_ANOMALIES) {
                w!(out, "<li>{}</li>", esc(&text_of(a)));
            }
            out.push_str("</ul>");
        }
        if total > MAX_ANOMALIES.min(anomalies.len()) {
            w!(
                out,
                "<span class=\"note\">{} more</span>",
                total - MAX_ANOMALIES.min(anomalies.len())
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table>\n");
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1040px}\
h1{margin-bottom:.2em}h2{margin-top:1.4em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{font-size:1.6em;font-weight:bold;padding:.2em .6em;display:inline-block}\
.verdict.valid{background:#dff0d8;color:#1e6b1e}\
.verdict.invalid{background:#f8d7da;color:#a01622}\
.verdict.unknown{background:#fff3cd;color:#7a5b00}\
td.valid{color:#1e6b1e}td.invalid{color:#a01622;font-weight:bold}td.unknown{color:#7a5b00}\
.checks ul{margin:0;padding-left:1.2em;font-family:monospace;font-size:.85em}\
.note{color:#777;font-style:italic}\
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}\
svg{display:block;margin:.4em 0;font-size:11px}\
svg .frame{fill:#fff;stroke:#999}svg .grid{stroke:#eee}svg .minor{stroke:#999}\
svg .tick,svg .legend{fill:#444}svg .axis{fill:#222;font-size:12px}\
svg .band{fill-opacity:.18}svg .band-label{font-size:10px;font-weight:bold}\
svg .pt{fill-opacity:.65;stroke:none}svg .key{fill:#666}\
svg .o-ok{fill:#2ca02c}svg .o-info{fill:#ff7f0e}svg .o-fail{fill:#d62728}\
svg .series{fill:none;stroke-width:1.5}\
";

/// Renders the report of one run: `history` as recorded, `results` the JSON of
/// results.json (any shape; missing fields are shown as unknown). Times are taken as
/// nanoseconds since the test started, so the plots start at 0 s.
pub(crate) fn render_html(title: &str, history: &[Event], results: &Value) -> String {
    let end_ns = history.iter().map(|e| e.time_ns).max().unwrap_or(0);
    let t = TimeAxis::new(end_ns as f64 / 1e9);
    let (ops, counts) = client_ops(history);
    let faults = fault_intervals(history);
    let mut names: Vec<&str> = Vec::new();
    for f in &faults {
        if !names.contains(&f.name.as_str()) {
            names.push(&f.name);
        }
    }

    let mut out = String::new();
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(title),
        esc(title)
    );
    let (shown, class) = verdict(results.get("valid"));
    w!(out, "<p class=\"verdict {class}\">{shown}</p>\n");
    w!(
        out,
        "<p>Duration {} s; {} client operations completed; {} fault interval{}.</p>\n",
        num_s(end_ns),
        ops.len(),
        faults.len(),
        if faults.len() == 1 { "" } else { "s" }
    );

    out.push_str(
        "<table class=\"ops\">\n<tr><th>f</th><th>ok</th><th>info</th><th>fail</th>\
         <th>no completion</th><th>total</th></tr>\n",
    );
    for (k, c) in &counts {
        let total: usize = c.by_outcome.iter().sum::<usize>() + c.pending;
        w!(out, "<tr><td>{}</td>", k.name());
        for n in c.by_outcome.iter().chain([&c.pending, &total]) {
            w!(out, "<td class=\"n\">{n}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Latency: add_leaf</h2>\n");
    let adds: Vec<&ClientOp<'_>> = ops.iter().filter(|o| o.kind == Kind::AddLeaf).collect();
    out.push_str(&latency_svg(
        "add_leaf latency",
        &adds,
        &faults,
        &names,
        &t,
        end_ns,
    ));
    out.push_str("<h2>Latency: reads</h2>\n");
    let reads: Vec<&ClientOp<'_>> = ops.iter().filter(|o| o.kind != Kind::AddLeaf).collect();
    out.push_str(&latency_svg(
        "read latency",
        &reads,
        &faults,
        &names,
        &t,
        end_ns,
    ));
    out.push_str("<h2>Throughput</h2>\n");
    out.push_str(&throughput_svg(&ops, &faults, &names, &t, end_ns));

    out.push_str("<h2>Faults</h2>\n");
    if faults.is_empty() {
        out.push_str("<p class=\"note\">No faults injected.</p>\n");
    } else {
        out.push_str(
            "<table class=\"faults\">\n<tr><th>nemesis</th><th>start (s)</th><th>healed (s)</th>\
             <th>detail</th></tr>\n",
        );
        for f in &faults {
            w!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
                esc(&f.name),
                num_s(f.start_ns),
                f.end_ns.map_or("never".to_string(), num_s),
                esc(&f.detail)
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Checkers</h2>\n");
    checks_html(&mut out, results);
    w!(
        out,
        "<details><summary>results.json</summary><pre>{}</pre></details>\n</body>\n</html>\n",
        esc(&serde_json::to_string_pretty(results).unwrap_or_default())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{LeafValue, NemesisTag};
    use serde_json::json;

    const MS: u64 = 1_000_000;

    fn leaf(client: u64, seq: u64) -> Op {
        Op::AddLeaf(LeafValue {
            client,
            seq,
            checksum: "aa".into(),
            signature: "bb".into(),
            key_hash: "cc".into(),
        })
    }

    fn nem(name: &str, phase: NemesisPhase) -> Op {
        Op::Nemesis(NemesisValue {
            name: name.into(),
            phase,
            detail: "isolate n1 <from> n2,n3".into(),
        })
    }

    /// Appends events in order, numbering them.
    fn history(events: Vec<(u64, Process, EventType, Op)>) -> Vec<Event> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, (time_ms, process, kind, op))| Event {
                index: i as u64,
                time_ns: time_ms * MS,
                process,
                kind,
                node: match process {
                    Process::Client(c) => Some(c % 3),
                    Process::Nemesis(_) => None,
                },
                op,
                error: (kind == EventType::Info).then(|| "timeout".to_string()),
            })
            .collect()
    }

    fn sample_history() -> Vec<Event> {
        use EventType::*;
        let c = Process::Client;
        let n = Process::Nemesis(NemesisTag::Nemesis);
        history(vec![
            (100, c(0), Invoke, leaf(0, 0)),
            (150, c(0), Ok, leaf(0, 0)),
            (200, c(1), Invoke, leaf(1, 0)),
            (300, c(2), Invoke, leaf(2, 0)),
            (310, c(2), Fail, leaf(2, 0)),
            (400, n, Invoke, nem("partition-leader", NemesisPhase::Start)),
            (450, n, Ok, nem("partition-leader", NemesisPhase::Start)),
            (500, c(0), Invoke, Op::ReadHead(None)),
            (520, c(0), Ok, Op::ReadHead(None)),
            (1200, c(1), Info, leaf(1, 0)),
            (2000, n, Invoke, nem("partition-leader", NemesisPhase::Stop)),
            (2050, n, Ok, nem("partition-leader", NemesisPhase::Stop)),
            (2500, c(1), Invoke, leaf(1, 1)),
            (2600, c(1), Ok, leaf(1, 1)),
            // Never completes: counted, not plotted.
            (2900, c(2), Invoke, leaf(2, 1)),
        ])
    }

    fn results(valid: bool) -> Value {
        json!({
            "valid": valid,
            "checks": [
                {"name": "no-fork", "valid": true, "summary": "3 heads, consistent",
                 "anomalies": []},
                {"name": "durability", "valid": valid, "summary": "1 acknowledged leaf lost",
                 "anomalies": ["leaf <script>alert(1)</script> lost"], "anomaly_count": 9},
                {"name": "half-written"}
            ]
        })
    }

    #[test]
    fn renders_plots_bands_points_and_verdict() {
        let h = sample_history();
        let html = render_html("run <1>", &h, &results(false));
        let svgs = html.matches("<svg").count();
        assert_eq!(svgs, 3, "two latency panels and throughput");
        // One band per plot, each labelled with the nemesis name.
        assert_eq!(html.matches("<g class=\"fault\">").count(), svgs);
        assert_eq!(html.matches(">partition-leader</text>").count(), svgs);
        // Five completed client ops: add_leaf ok, fail, info, ok, and one read_head.
        let completed = h
            .iter()
            .filter(|e| matches!(e.process, Process::Client(_)) && e.kind != EventType::Invoke)
            .count();
        assert_eq!(completed, 5);
        assert_eq!(html.matches("class=\"pt ").count(), completed);
        assert_eq!(html.matches("class=\"pt o-fail\"").count(), 1);
        assert_eq!(html.matches("class=\"pt o-info\"").count(), 1);
        assert!(
            html.contains("<p class=\"verdict invalid\">INVALID</p>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"invalid\">INVALID</td>"));
        assert!(html.contains("<td>no-fork</td><td class=\"valid\">valid</td>"));
        // A check with missing fields still gets a row.
        assert!(html.contains("<td>half-written</td><td class=\"unknown\">unknown</td>"));
        assert!(
            html.contains("8 more"),
            "anomaly_count beyond the listed ones"
        );
        // Escaping: nothing from the data opens a tag.
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<title>run &lt;1&gt;</title>"));
        assert!(html.contains("isolate n1 &lt;from&gt; n2,n3"));
        assert!(!html.contains("<from>"));
        // Header counts: add_leaf 2 ok, 1 info, 1 fail, 1 without completion.
        assert!(html.contains(
            "<tr><td>add_leaf</td><td class=\"n\">2</td><td class=\"n\">1</td>\
             <td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">5</td></tr>"
        ));
        assert_eq!(html, render_html("run <1>", &h, &results(false)));
    }

    #[test]
    fn valid_results_and_empty_inputs() {
        let html = render_html("ok", &sample_history(), &results(true));
        assert!(html.contains("<p class=\"verdict valid\">valid</p>"));
        assert!(!html.contains(">INVALID<"));
        let empty = render_html("empty", &[], &json!({}));
        assert!(empty.contains("<p class=\"verdict unknown\">unknown</p>"));
        assert!(empty.contains("No checker results."));
        assert_eq!(empty.matches("<svg").count(), 3);
        assert_eq!(empty.matches("class=\"pt ").count(), 0);
    }

    #[test]
    fn fault_intervals_use_completions_and_run_to_the_end() {
        use EventType::*;
        use NemesisPhase::*;
        let n = Process::Nemesis(NemesisTag::Nemesis);
        let h = history(vec![
            (400, n, Invoke, nem("partition-leader", Start)),
            (450, n, Ok, nem("partition-leader", Start)),
            (500, n, Info, nem("kill", Start)),
            (600, n, Invoke, nem("pause", Start)),
            (610, n, Fail, nem("pause", Start)),
            (2000, n, Invoke, nem("partition-leader", Stop)),
            (2050, n, Ok, nem("partition-leader", Stop)),
            (3000, n, Ok, nem("partition-leader", Start)),
        ]);
        let f = fault_intervals(&h);
        let spans: Vec<(&str, u64, Option<u64>)> = f
            .iter()
            .map(|f| (f.name.as_str(), f.start_ns / MS, f.end_ns.map(|e| e / MS)))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("partition-leader", 450, Some(2050)),
                ("kill", 500, None),
                ("partition-leader", 3000, None),
            ]
        );
        let html = render_html("t", &h, &json!({"valid": true}));
        // Two names, two colours; unhealed faults still shaded.
        assert_eq!(html.matches("<g class=\"fault\">").count(), 3 * 3);
        assert!(html.contains(&format!("fill=\"{}\"", FAULT_COLOURS[0])));
        assert!(html.contains(&format!("fill=\"{}\"", FAULT_COLOURS[1])));
        assert!(!html.contains(&format!("fill=\"{}\"", FAULT_COLOURS[2])));
    }

    #[test]
    fn many_points_are_thinned_but_failures_kept() {
        let mut events = Vec::new();
        for i in 0..30_000u64 {
            let kind = if i % 300 == 0 {
                EventType::Fail
            } else {
                EventType::Ok
            };
            events.push((i, Process::Client(i % 7), EventType::Invoke, leaf(i % 7, i)));
            events.push((i, Process::Client(i % 7), kind, leaf(i % 7, i)));
        }
        let h = history(events);
        let html = render_html("big", &h, &json!({}));
        assert_eq!(html.matches("class=\"pt o-fail\"").count(), 100);
        assert_eq!(html.matches("class=\"pt ").count(), MAX_POINTS);
        assert!(html.contains("showing 20000 of 30000"));
    }
}
