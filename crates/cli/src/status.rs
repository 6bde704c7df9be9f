//! `tally status`: every node's view of the cluster, as one table.
//!
//! ```text
//!  endpoints ∪ members' client_url ──cluster_of (concurrently, a few rounds)──▶ Report per URL
//!  reports ──rows()──▶ one Row per node (dead nodes: unreachable) ──render_table()──▶ stdout
//! ```
//!
//! The leader's own view is the reference: it alone knows each member's match index, and the lag of a
//! member is the leader's last index minus that match index.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use tally_client::{Client, ClientConfig, ClusterStatus, NodeRole, normalize_endpoint};
use tokio::task::JoinSet;

use crate::kv::ClientArgs;

/// Rounds of discovery: the endpoints, then the members they name, then the members those name.
const DISCOVERY_ROUNDS_MAX: usize = 3;

/// How long one node may take to answer: a dead node must not stall the table.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// `tally status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What one URL answered.
#[derive(Clone, Debug)]
pub struct Report {
    /// The client URL asked.
    pub url: String,
    /// Its view, or why it gave none.
    pub view: Result<ClusterStatus, String>,
}

/// One line of the table: a node, reachable or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The node's id, `?` if it never answered and no member entry names its URL.
    pub id: String,
    /// Its client URL, if known.
    pub url: Option<String>,
    /// `voter` or `learner` in the configuration, if known.
    pub role: Option<String>,
    /// Whether it is the leader.
    pub is_leader: bool,
    /// Its Raft state (`leader`, `follower`, `candidate`), or `unreachable`.
    pub state: String,
    /// Its term.
    pub term: Option<u64>,
    /// Its commit index.
    pub commit_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// Its last log index.
    pub last_index: Option<u64>,
    /// Its match index, as the leader knows it.
    pub match_index: Option<u64>,
    /// The leader's last index minus its match index.
    pub lag: Option<u64>,
    /// Why it is unreachable.
    pub error: Option<String>,
}

/// The whole picture: the leader (from its own view) and every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterTable {
    /// The leader's id, if a node claims to lead.
    pub leader: Option<String>,
    /// The leader's term.
    pub term: Option<u64>,
    /// The leader's last log index: the reference of the lag.
    pub leader_last_index: Option<u64>,
    /// One row per node, in id order.
    pub nodes: Vec<Row>,
}

/// Asks every endpoint and every member URL learned for its view, concurrently, tolerating dead nodes.
pub async fn gather(client: &Client, endpoints: &[String]) -> Vec<Report> {
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut reports: Vec<Report> = Vec::new();
    let mut next: Vec<String> = endpoints.iter().filter_map(|e| normalize_endpoint(e).ok()).collect();
    for _ in 0..DISCOVERY_ROUNDS_MAX {
        next.retain(|url| asked.insert(url.clone()));
        if next.is_empty() {
            break;
        }
        let mut tasks = JoinSet::new();
        for url in next.drain(..) {
            let client = client.clone();
            tasks.spawn(async move {
                let view = client.cluster_of(&url).await.map_err(|e| e.to_string());
                Report { url, view }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok(report) = joined else { continue };
            if let Ok(view) = &report.view {
                let urls = view.members.iter().filter_map(|m| m.client_url.as_deref());
                next.extend(urls.filter_map(|url| normalize_endpoint(url).ok()));
            }
            reports.push(report);
        }
    }
    reports
}

/// Builds the table from the reports: one row per node id (a node answering at two URLs counts once), plus
/// a row per member or URL that never answered.
pub fn table(reports: &[Report]) -> ClusterTable {
    let views: Vec<(&str, &ClusterStatus)> =
        reports.iter().filter_map(|r| r.view.as_ref().ok().map(|v| (r.url.as_str(), v))).collect();
    // The leader: the node that claims to lead in the highest term.
    let leader = views.iter().filter(|(_, v)| v.role == NodeRole::Leader).max_by_key(|(_, v)| v.term).map(|(_, v)| *v);
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (url, view) in &views {
        rows.entry(view.id.clone()).or_insert_with(|| reachable_row(url, view, leader));
    }
    // Members named by any view that did not answer themselves.
    for (_, view) in &views {
        for member in &view.members {
            rows.entry(member.id.clone()).or_insert_with(|| {
                let url = member.client_url.as_deref().and_then(|u| normalize_endpoint(u).ok());
                let error = url.as_ref().and_then(|u| failure_of(reports, u)).unwrap_or("no client URL known".into());
                unreachable_row(member.id.clone(), url, error)
            });
        }
    }
    // URLs that failed and that no row accounts for. A URL a member advertises but that does not resolve from
    // here (a container's name, seen from the host) is not a problem when that member answered elsewhere.
    let mut known_urls: BTreeSet<String> = rows.values().filter_map(|r| r.url.clone()).collect();
    for (_, view) in &views {
        for member in view.members.iter().filter(|m| rows.get(&m.id).is_some_and(|r| r.state != "unreachable")) {
            known_urls.extend(member.client_url.as_deref().and_then(|u| normalize_endpoint(u).ok()));
        }
    }
    for report in reports {
        if let (Err(error), false) = (&report.view, known_urls.contains(&report.url)) {
            rows.insert(
                format!("?{}", report.url),
                unreachable_row("?".into(), Some(report.url.clone()), error.clone()),
            );
        }
    }
    for row in rows.values_mut() {
        row.role = role_of(&row.id, leader, &views);
        row.is_leader = leader.is_some_and(|l| l.id == row.id);
        if let Some(leader) = leader.filter(|_| row.state != "unreachable") {
            let matched = leader.member(&row.id).and_then(|m| m.match_index);
            row.match_index = if row.is_leader { matched.or(Some(leader.last_index)) } else { matched };
            row.lag = row.match_index.map(|m| leader.last_index.saturating_sub(m));
        }
    }
    let mut nodes: Vec<Row> = rows.into_values().collect();
    nodes.sort_by_key(|row| id_order(&row.id));
    ClusterTable {
        leader: leader.map(|l| l.id.clone()),
        term: leader.map(|l| l.term),
        leader_last_index: leader.map(|l| l.last_index),
        nodes,
    }
}

/// The row of a node that answered at `url`.
fn reachable_row(url: &str, view: &ClusterStatus, leader: Option<&ClusterStatus>) -> Row {
    let is_stale_leader = view.role == NodeRole::Leader && leader.is_some_and(|l| l.id != view.id);
    Row {
        id: view.id.clone(),
        url: Some(url.to_string()),
        role: None,
        is_leader: false,
        state: if is_stale_leader { "leader (stale)".into() } else { view.role.as_str().into() },
        term: Some(view.term),
        commit_index: Some(view.commit_index),
        applied_index: Some(view.applied_index),
        last_index: Some(view.last_index),
        match_index: None,
        lag: None,
        error: None,
    }
}

/// The row of a node that did not answer.
fn unreachable_row(id: String, url: Option<String>, error: String) -> Row {
    Row {
        id,
        url,
        role: None,
        is_leader: false,
        state: "unreachable".into(),
        term: None,
        commit_index: None,
        applied_index: None,
        last_index: None,
        match_index: None,
        lag: None,
        error: Some(error),
    }
}

/// Why `url` gave no view, if it was asked and failed.
fn failure_of(reports: &[Report], url: &str) -> Option<String> {
    reports.iter().find(|r| r.url == url).and_then(|r| r.view.as_ref().err().cloned())
}

/// A member's configuration role, from the leader's view, else from any view that lists it.
fn role_of(id: &str, leader: Option<&ClusterStatus>, views: &[(&str, &ClusterStatus)]) -> Option<String> {
    let from = |view: &ClusterStatus| view.member(id).map(|m| m.role.as_str().to_string());
    leader.and_then(from).or_else(|| views.iter().find_map(|(_, v)| from(v)))
}

/// Sorts `n2` before `n10`; ids without a number last, by text.
fn id_order(id: &str) -> (u64, String) {
    let number = id.strip_prefix('n').and_then(|n| n.parse::<u64>().ok()).unwrap_or(u64::MAX);
    (number, id.to_string())
}

/// The table for a person.
pub fn render_table(table: &ClusterTable) -> String {
    let mut out = match (&table.leader, table.term, table.leader_last_index) {
        (Some(leader), Some(term), Some(last)) => format!("leader {leader}, term {term}, last index {last}\n\n"),
        _ => "no leader: no node claims to lead (election in progress, or no quorum)\n\n".to_string(),
    };
    let header = ["ID", "ROLE", "LEADER", "STATE", "TERM", "COMMIT", "APPLIED", "MATCH", "LAG", "URL"];
    let cell = |value: Option<u64>| value.map_or("-".to_string(), |v| v.to_string());
    let lines: Vec<[String; 10]> = table
        .nodes
        .iter()
        .map(|row| {
            [
                row.id.clone(),
                row.role.clone().unwrap_or("-".into()),
                if row.is_leader { "*".into() } else { String::new() },
                row.state.clone(),
                cell(row.term),
                cell(row.commit_index),
                cell(row.applied_index),
                cell(row.match_index),
                cell(row.lag),
                row.url.clone().unwrap_or("-".into()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let mut push_line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    push_line(&header);
    for line in &lines {
        push_line(&line.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for row in table.nodes.iter().filter(|r| r.error.is_some()) {
        let url = row.url.as_deref().unwrap_or("-");
        out.push_str(&format!("\n{} ({url}) is unreachable: {}", row.id, row.error.as_deref().unwrap_or("")));
    }
    if table.nodes.iter().any(|r| r.error.is_some()) {
        out.push('\n');
    }
    out
}

/// `tally status`: prints the table (or JSON); fails only if no node answered.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config =
        ClientConfig { request_timeout: NODE_TIMEOUT, connect_timeout: NODE_TIMEOUT, ..ClientConfig::default() };
    let client = args.client.client_with(config)?;
    let reports = gather(&client, &args.client.endpoints).await;
    if reports.iter().all(|r| r.view.is_err()) {
        let errors: Vec<String> =
            reports.iter().filter_map(|r| Some(format!("{}: {}", r.url, r.view.as_ref().err()?))).collect();
        anyhow::bail!(
            "no node answered ({}); is the cluster running? `tally dev` starts one, or pass --endpoints",
            errors.join("; ")
        );
    }
    let table = table(&reports);
    if args.client.json {
        println!("{}", serde_json::to_string(&table)?);
    } else {
        print!("{}", render_table(&table));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_client::{Member, MemberRole};

    const URLS: [&str; 3] = ["http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003"];

    fn member(n: usize, role: MemberRole, match_index: Option<u64>) -> Member {
        Member {
            id: format!("n{n}"),
            role,
            peer_url: Some(format!("http://127.0.0.1:710{n}")),
            client_url: Some(URLS[n - 1].to_string()),
            match_index,
        }
    }

    fn view(n: usize, role: NodeRole, term: u64, last: u64, members: Vec<Member>) -> Report {
        let leader = if role == NodeRole::Leader { Some(format!("n{n}")) } else { Some("n1".to_string()) };
        Report {
            url: URLS[n - 1].to_string(),
            view: Ok(ClusterStatus {
                id: format!("n{n}"),
                role,
                term,
                leader,
                commit_index: last,
                applied_index: last,
                last_index: last,
                snapshot_index: 0,
                state_checksum: String::new(),
                members,
            }),
        }
    }

    fn members(matches: [Option<u64>; 3]) -> Vec<Member> {
        vec![
            member(1, MemberRole::Voter, matches[0]),
            member(2, MemberRole::Voter, matches[1]),
            member(3, MemberRole::Learner, matches[2]),
        ]
    }

    #[test]
    fn an_advertised_url_that_does_not_resolve_here_is_no_extra_row_when_its_node_answered() {
        // Seen from the host, containers advertise names only their network resolves.
        let mut single = member(1, MemberRole::Voter, Some(5));
        single.client_url = Some("http://node1:7001".to_string());
        let reports = vec![
            view(1, NodeRole::Leader, 1, 5, vec![single]),
            Report { url: "http://node1:7001".to_string(), view: Err("failed to lookup address".to_string()) },
        ];
        let table = table(&reports);
        assert_eq!(table.nodes.len(), 1, "{:?}", table.nodes.iter().map(|r| &r.id).collect::<Vec<_>>());
        assert_eq!(table.nodes[0].id, "n1");
    }

    #[test]
    fn lag_is_relative_to_the_leaders_last_index() {
        let reports = vec![
            view(2, NodeRole::Follower, 3, 118, members([None, None, None])),
            view(1, NodeRole::Leader, 3, 120, members([Some(120), Some(118), Some(100)])),
            view(3, NodeRole::Follower, 3, 100, members([None, None, None])),
        ];
        let table = table(&reports);
        assert_eq!((table.leader.as_deref(), table.term, table.leader_last_index), (Some("n1"), Some(3), Some(120)));
        let summary: Vec<String> = table
            .nodes
            .iter()
            .map(|r| format!("{} {:?} {} {:?} {:?}", r.id, r.role, r.is_leader, r.match_index, r.lag))
            .collect();
        assert_eq!(
            summary,
            [
                r#"n1 Some("voter") true Some(120) Some(0)"#,
                r#"n2 Some("voter") false Some(118) Some(2)"#,
                r#"n3 Some("learner") false Some(100) Some(20)"#,
            ]
        );
    }

    #[test]
    fn dead_nodes_show_as_unreachable() {
        let reports = vec![
            view(1, NodeRole::Leader, 4, 50, members([Some(50), Some(50), Some(10)])),
            view(2, NodeRole::Follower, 4, 50, members([None, None, None])),
            Report { url: URLS[2].to_string(), view: Err("connection refused".into()) },
            Report { url: "http://10.9.9.9:1".into(), view: Err("timed out".into()) },
        ];
        let table = table(&reports);
        let n3 = table.nodes.iter().find(|r| r.id == "n3").expect("n3 has a row");
        assert_eq!((n3.state.as_str(), n3.error.as_deref(), n3.lag), ("unreachable", Some("connection refused"), None));
        assert_eq!(n3.role.as_deref(), Some("learner"));
        let stranger = table.nodes.iter().find(|r| r.id == "?").expect("the unknown URL has a row");
        assert_eq!(stranger.url.as_deref(), Some("http://10.9.9.9:1"));
        assert_eq!(table.nodes.len(), 4);
    }

    #[test]
    fn renders_an_aligned_table() {
        let reports = vec![
            view(1, NodeRole::Leader, 3, 120, members([Some(120), Some(118), None])),
            view(2, NodeRole::Follower, 3, 118, members([None, None, None])),
            Report { url: URLS[2].to_string(), view: Err("connection refused".into()) },
        ];
        let text = render_table(&table(&reports));
        let expected = "\
leader n1, term 3, last index 120

ID  ROLE     LEADER  STATE        TERM  COMMIT  APPLIED  MATCH  LAG  URL
n1  voter    *       leader       3     120     120      120    0    http://127.0.0.1:7001
n2  voter            follower     3     118     118      118    2    http://127.0.0.1:7002
n3  learner          unreachable  -     -       -        -      -    http://127.0.0.1:7003

n3 (http://127.0.0.1:7003) is unreachable: connection refused
";
        assert_eq!(text, expected);
    }

    #[test]
    fn without_a_leader_there_is_no_lag() {
        let reports = vec![
            view(1, NodeRole::Candidate, 5, 10, members([None, None, None])),
            view(2, NodeRole::Follower, 4, 10, members([None, None, None])),
        ];
        let table = table(&reports);
        assert_eq!(table.leader, None);
        assert!(table.nodes.iter().all(|r| r.lag.is_none() && !r.is_leader));
        assert!(render_table(&table).starts_with("no leader"));
    }
}
