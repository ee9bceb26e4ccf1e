//! The status page on the public listener: `GET /` (HTML, self-contained, refreshes itself
//! every five seconds) and `GET /status.json` (the same [`ClusterStatus`] as JSON).
//!
//! Assembling the view asks every member over gRPC, so the answer is cached for a second:
//! a page left open in many browsers costs the cluster one fan-out per second, not one per
//! request.

use crate::status::{self, ClusterStatus, MemberView, StatusContext};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use quorumlog_raft::NodeHandle;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an assembled view is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// Longest the page waits for one member's status.
const PEER_TIMEOUT: Duration = Duration::from_millis(800);

/// What the status handlers read.
pub struct StatusSource {
    /// This node.
    pub node: NodeHandle,
    /// The log's identity and witnesses.
    pub ctx: StatusContext,
    /// Path prefix of the Sigsum API, for the links.
    pub api_prefix: String,
    /// The ops listener's address, for the metrics link.
    pub ops_addr: Option<String>,
    /// The last view and when it was assembled.
    pub cache: tokio::sync::Mutex<Option<(Instant, ClusterStatus)>>,
}

impl StatusSource {
    /// The current view, assembled at most once per [`CACHE_FOR`].
    pub async fn current(&self) -> ClusterStatus {
        let mut cache = self.cache.lock().await;
        if let Some((at, s)) = cache.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return s.clone();
            }
        }
        let node = &self.node;
        let s = status::gather(node.status(), &self.ctx, |id, addr| async move {
            node.peer_status(id, &addr, PEER_TIMEOUT).await
        })
        .await;
        *cache = Some((Instant::now(), s.clone()));
        s
    }
}

/// Routes `/` and `/status.json`; merged into the public router.
pub fn router(source: Arc<StatusSource>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(json))
        .with_state(source)
}

async fn json(State(src): State<Arc<StatusSource>>) -> Response {
    let s = src.current().await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&s).unwrap_or_default(),
    )
        .into_response()
}

async fn page(State(src): State<Arc<StatusSource>>) -> Response {
    let s = src.current().await;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&s, &src.api_prefix, src.ops_addr.as_deref()),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

fn age(secs: Option<u64>) -> String {
    match secs {
        None => "–".into(),
        Some(s) if s < 120 => format!("{s} s ago"),
        Some(s) if s < 7200 => format!("{} min ago", s / 60),
        Some(s) => format!("{} h ago", s / 3600),
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (civil date from days since 1970).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn member_row(out: &mut String, m: &MemberView, leader: Option<u64>) {
    let kind = if m.voter { "voter" } else { "learner" };
    let _ = write!(out, "<tr><td>{}</td><td>{kind}</td>", m.id);
    match (&m.node, &m.error) {
        (Some(n), _) => {
            let app = n.app.as_ref();
            let role = n.role.as_str();
            let class = if Some(m.id) == leader {
                " class=\"lead\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<td{class}>{role}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                n.term,
                opt(n.committed_index),
                opt(n.applied_index),
                if n.caught_up { n.lag.to_string() } else { format!("{} (catching up)", n.lag) },
                opt(app.map(|a| a.tree_size)),
                opt(app.and_then(|a| a.published.as_ref().map(|p| p.size))),
                if app.is_some_and(|a| a.key_loaded) { "yes" } else { "no" },
                app.map_or("–".into(), |a| esc(&format!("{:?}", a.publishing).to_lowercase())),
            );
        }
        (None, e) => {
            let _ = write!(
                out,
                "<td colspan=\"9\" class=\"bad\">unreachable: {}</td>",
                esc(e.as_deref().unwrap_or("no answer"))
            );
        }
    }
    let _ = writeln!(out, "<td>{}</td></tr>", esc(&m.api_addr));
}

/// The HTML page. No external assets, no script: the page reloads itself.
fn render(s: &ClusterStatus, api_prefix: &str, ops_addr: Option<&str>) -> String {
    let p = api_prefix.trim_matches('/');
    let api = |name: &str| {
        if p.is_empty() {
            format!("/{name}")
        } else {
            format!("/{p}/{name}")
        }
    };
    let mut o = String::with_capacity(8192);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>Quorumlog status</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}\
         th{{background:#f0f0f0}} code{{font-size:.9em}} .lead{{font-weight:bold;color:#063}}\
         .bad{{color:#a00}}</style></head><body>\n<h1>Quorumlog status</h1>\n"
    );
    let _ = writeln!(
        o,
        "<p>Reported by node <b id=\"reported-by\">{}</b>; refreshes every 5 s.</p>",
        s.reported_by
    );
    let _ = writeln!(
        o,
        "<h2>Log</h2><table><tr><th>origin</th><td><code>{}</code></td></tr>\
         <tr><th>public key</th><td><code>{}</code></td></tr>\
         <tr><th>key custody</th><td>{}</td></tr></table>",
        esc(&s.log.origin),
        esc(&s.log.public_key),
        esc(&format!("{:?}", s.log.custody).to_lowercase())
    );
    o.push_str("<h2>Published tree head</h2>");
    match &s.published {
        Some(h) => {
            let _ = writeln!(
                o,
                "<table><tr><th>size</th><td id=\"published-size\">{}</td></tr>\
                 <tr><th>root hash</th><td><code>{}</code></td></tr>\
                 <tr><th>last cosigned</th><td>{}</td></tr></table>",
                h.size,
                esc(&h.root_hash),
                age(h.age_seconds)
            );
        }
        None => o.push_str("<p class=\"bad\" id=\"published-size\">none yet</p>\n"),
    }
    o.push_str("<h2>Witnesses</h2>");
    if s.witnesses.is_empty() {
        o.push_str("<p>The policy names no witnesses.</p>\n");
    } else {
        o.push_str("<table><tr><th>name</th><th>key hash</th><th>cosignature in the published head</th></tr>\n");
        for w in &s.witnesses {
            let class = if w.cosigned_at.is_none() {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td{class}>{}</td></tr>",
                esc(&w.name),
                esc(&w.key_hash),
                w.cosigned_at.map_or("none".into(), |t| format!(
                    "at {t} ({})",
                    age(w.age_seconds)
                ))
            );
        }
        o.push_str("</table>\n");
    }
    let _ = writeln!(
        o,
        "<h2>Cluster</h2><p>Leader: <b id=\"leader\">{}</b> (term {}). \
         Publishing: <b>{}</b>. Signing key held by: {}.</p>",
        opt(s.leader),
        s.term,
        opt(s.publisher),
        if s.key_holders.is_empty() {
            "no node".to_string()
        } else {
            s.key_holders
                .iter()
                .map(|k| format!("node {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    o.push_str(
        "<table><tr><th>id</th><th>member</th><th>role</th><th>term</th><th>committed</th>\
         <th>applied</th><th>lag</th><th>tree size</th><th>published</th><th>key</th>\
         <th>publication</th><th>API address</th></tr>\n",
    );
    for m in &s.members {
        member_row(&mut o, m, s.leader);
    }
    o.push_str("</table>\n<h2>Leadership changes</h2>");
    if s.leader_changes.is_empty() {
        o.push_str("<p>None seen since this node started.</p>\n");
    } else {
        o.push_str("<table><tr><th>seen at</th><th>term</th><th>leader</th></tr>\n");
        for c in s.leader_changes.iter().rev() {
            let ago = s.at_unix_ms.saturating_sub(c.at_unix_ms) / 1000;
            let _ = writeln!(
                o,
                "<tr><td>{} ({})</td><td>{}</td><td>{}</td></tr>",
                utc(c.at_unix_ms),
                age(Some(ago)),
                c.term,
                c.leader
            );
        }
        o.push_str("</table>\n");
    }
    let _ = write!(
        o,
        "<h2>Links</h2><ul><li><a href=\"{}\">get-tree-head</a></li>\
         <li><a href=\"/status.json\">status.json</a></li>",
        esc(&api("get-tree-head"))
    );
    if let Some(ops) = ops_addr {
        let _ = write!(
            o,
            "<li>metrics and health on the ops listener: <code>http://{0}/metrics</code>, \
             <code>http://{0}/health</code></li>",
            esc(ops)
        );
    }
    o.push_str("</ul></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::custody::Custody;
    use crate::status::{LogIdentity, PublishedView};

    #[test]
    fn page_shows_the_facts_and_escapes_what_it_prints() {
        let s = ClusterStatus {
            reported_by: 2,
            at_unix_ms: 0,
            log: LogIdentity {
                origin: "sigsum.org/v1/tree/00".into(),
                public_key: "<script>".into(),
                custody: Custody::Handoff,
            },
            published: Some(PublishedView {
                size: 4242,
                root_hash: "ff".into(),
                age_seconds: Some(3),
            }),
            witnesses: vec![],
            leader: Some(1),
            term: 3,
            publisher: Some(1),
            key_holders: vec![1],
            members: vec![],
            leader_changes: vec![],
        };
        let html = render(&s, "log", Some("n1:7002"));
        assert!(html.contains("<td id=\"published-size\">4242</td>"));
        assert!(html.contains("<b id=\"leader\">1</b>"));
        assert!(html.contains("/log/get-tree-head"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("handoff"));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_178_396_970), "2026-12-02 02:26:36 UTC");
    }
}
