//! The commands a script may use. Node ids are plain numbers (`1` is node `n1`); where a command takes
//! several, they may be written `1 2 3`, `1,2,3` or `all`.

use std::collections::BTreeSet;

use tally_raft::{
    AppendRejection, Config, ElectionMode, LogIndex, Membership, MembershipChange, Message, MessageBody, NodeId, Raft,
    RecoveryStatus, Term,
};

use super::env::{Env, describe_hard_state, describe_membership, describe_snapshot};
use super::script::Command;

/// Runs one command against `env` and returns what it printed. A refused input (say, a proposal to a
/// follower) prints `error: ...`; a malformed command panics.
pub fn run(env: &mut Env, cmd: &Command) -> Vec<String> {
    cmd.expect_keys(match cmd.name.as_str() {
        "add-nodes" => ADD_NODES_KEYS,
        "deliver-msgs" => &["drop"],
        "compact" => &["keep"],
        "inject" => INJECT_KEYS,
        "lose-tail" => &["hard-state"],
        _ => &[],
    });
    let result = match cmd.name.as_str() {
        // add-nodes N [voters=1,2,3] [learners=4] [election=raft|bully] [pre-vote=true] [check-quorum=true]
        //   [seed=S] [election-timeout=10] [heartbeat=2] [inquiry-timeout=2] [max-inflight=64]
        //   [max-entries=256] [max-bytes=1048576] [max-uncommitted=10000] [skip-recovery=false]
        // (max-bytes also sets the snapshot chunk size; skip-recovery sets Faults::skip_protocol_aware_recovery.)
        // Creates N brand-new nodes with the next free ids. In an empty environment the initial membership
        // defaults to all N nodes as voters; later nodes default to an empty membership (they join when a
        // leader contacts them). Nodes whose membership names no existing node form a new, independent
        // cluster (the safety checks apply per cluster). Other options default to `Config::new`.
        "add-nodes" => add_nodes(env, cmd),
        // campaign ID: ticks the node until its randomized election timeout fires and it campaigns
        // (pre-vote first if enabled). At most 2 * election-timeout ticks. The node should have no Ready
        // pending, or a pre-candidate's second campaign goes unnoticed.
        "campaign" => campaign(env, node_id(cmd.arg(0))),
        // tick ID[,ID...] [N]: ticks each node N times (default 1).
        "tick" => {
            let ids = node_ids(env, &cmd.positional[..1.min(cmd.positional.len())]);
            let times = cmd.positional.get(1).map_or(1, |n| number(n));
            tick(env, &ids, |_| times)
        }
        // tick-heartbeat ID...: ticks each node heartbeat-interval times (a leader sends one round).
        "tick-heartbeat" => tick(env, &node_ids(env, &cmd.positional), |c| c.heartbeat_interval_ticks.into()),
        // tick-election ID...: ticks each node election-timeout times (the minimum election timeout: a
        // leader runs one check-quorum round, a follower's leader lease runs out; a follower campaigns only
        // if it drew the minimum randomized timeout).
        "tick-election" => tick(env, &node_ids(env, &cmd.positional), |c| c.election_timeout_ticks.into()),
        // process-ready [ID...]: each node (default all) hands out its Ready, which is persisted to its
        // disk, its messages queued, its committed entries applied, and printed.
        "process-ready" => process_ready(env, cmd),
        // deliver-msgs [ID...] [drop=ID,...]: delivers every queued message to the given nodes (default
        // all not dropped), printing each; messages across a partition or to a node that is down are
        // dropped. Messages to the `drop=` nodes are discarded instead.
        "deliver-msgs" => deliver_msgs(env, cmd),
        // stabilize [ID...]: repeats process-ready and deliver-msgs among the nodes (default all) until
        // none has anything left to do.
        "stabilize" => env.stabilize(&node_ids(env, &cmd.positional)),
        // propose ID DATA: the node proposes a command entry.
        "propose" => {
            let data = cmd.arg(1).as_bytes().to_vec();
            env.input(node_id(cmd.arg(0)), 0, |raft| raft.propose(data).map(|_| ()).map_err(|e| e.to_string()))
                .and_then(|r| r)
        }
        // propose-membership ID add-learner|add-voter|demote|remove NODE: proposes a membership change.
        "propose-membership" => {
            let change = membership_change(cmd.arg(1), node_id(cmd.arg(2)));
            let propose = |raft: &mut Raft| raft.propose_membership(change).map(|_| ()).map_err(|e| e.to_string());
            env.input(node_id(cmd.arg(0)), 0, propose).and_then(|r| r)
        }
        // read-index ID CTX: the node's client asks for a linearizable read identified by CTX (a number).
        "read-index" => {
            let context = number(cmd.arg(1));
            env.input(node_id(cmd.arg(0)), 0, |raft| raft.read_index(context).map_err(|e| e.to_string()))
                .and_then(|r| r)
        }
        // transfer-leader ID TARGET: the leader ID hands leadership to TARGET.
        "transfer-leader" => {
            let target = node_id(cmd.arg(1));
            env.input(node_id(cmd.arg(0)), 0, |raft| raft.transfer_leader(target).map_err(|e| e.to_string()))
                .and_then(|r| r)
        }
        // compact ID INDEX [keep=K]: the node snapshots its state machine at INDEX (applied) and compacts
        // its log, keeping K entries before INDEX (default 0). Prints the resulting log bounds.
        "compact" => compact(env, cmd),
        // partition 1 | 2,3: cuts the network into the groups given; messages between groups, or to or
        // from a node in no group, are dropped at delivery.
        "partition" => {
            partition(env, cmd);
            Ok(())
        }
        // cut A B: cuts the link between A and B only: messages between them, either way, are dropped at
        // delivery, while both still reach every other node (say, two nodes that both reach the rest of the
        // cluster but not each other). Adds to any partition and to earlier cuts.
        "cut" => {
            env.cut(node_id(cmd.arg(0)), node_id(cmd.arg(1)));
            Ok(())
        }
        // heal: makes the network whole again (no partition, no cut link).
        "heal" => {
            env.heal();
            Ok(())
        }
        // crash ID: the node loses everything but its disk; messages to and from it are dropped.
        "crash" => env.crash(node_id(cmd.arg(0))),
        // restart ID: a crashed node restarts from its disk; messages sent to it while it was down are
        // dropped. Prints its status.
        "restart" => {
            let id = node_id(cmd.arg(0));
            env.restart(id).and_then(|()| status(env, id))
        }
        // lose-tail ID N [hard-state=keep|lose]: while node ID is down, its WAL loses the last N batches it
        // synced (N persisted Readys), as recovery cutting a damaged tail would: entries it acknowledged and
        // votes it cast may be gone. Its next start is told so (`Restored::tail_may_be_acknowledged`), and
        // with hard-state=keep (the default) is given the newest hard state of the lost batches.
        "lose-tail" => {
            let id = node_id(cmd.arg(0));
            let keep = match cmd.key("hard-state") {
                None | Some("keep") => true,
                Some("lose") => false,
                Some(other) => panic!("hard-state={other}: expected keep or lose"),
            };
            match env.nodes.get_mut(&id) {
                None => Err(format!("{id} does not exist")),
                Some(node) if node.raft.is_some() => Err(format!("{id} is running")),
                Some(node) => node.disk.lose_tail(count_arg(cmd.arg(1)), keep),
            }
        }
        // status ID...: role, term, vote, leader, log cursors, membership, and a leader's match indexes.
        "status" => node_ids(env, &cmd.positional).into_iter().try_for_each(|id| status(env, id)),
        // raft-log ID: the node's snapshot position and log entries (read from its disk while it is down).
        "raft-log" => raft_log(env, node_id(cmd.arg(0))),
        // inject FROM TO KIND [term=T] ...: hands TO a message that claims to come from FROM, at once and
        // whatever the network (a forgery by someone who can reach TO's peer port, or a broken peer), and
        // prints it with what it changed. The term defaults to TO's current term. KIND and its arguments:
        //   append-resp match=I | append-resp reject=I hint=I@T
        //   heartbeat-resp read-seq=N
        //   snapshot-resp index=I next=N
        //   read-index-resp ctx=C index=I
        "inject" => inject(env, cmd),
        // hold-back ID on|off: the node's storage lacks (on) or has again (off) room for entries: held back
        // (`Raft::hold_back`), it neither campaigns nor takes a leadership transfer, but still votes.
        "hold-back" => {
            let id = node_id(cmd.arg(0));
            let held = match cmd.arg(1) {
                "on" => true,
                "off" => false,
                other => panic!("hold-back {id} {other}: expected on or off"),
            };
            env.input(id, 0, |raft| raft.hold_back(held))
        }
        // applied ID...: the commands each node's state machine applied, as index:command.
        "applied" => node_ids(env, &cmd.positional).into_iter().try_for_each(|id| applied(env, id)),
        other => panic!("unknown command {other}"),
    };
    if let Err(error) = result {
        env.emit(0, format!("error: {error}"));
    }
    env.take_output()
}

/// The `key=value` arguments of `add-nodes`.
const ADD_NODES_KEYS: &[&str] = &[
    "voters",
    "learners",
    "election",
    "pre-vote",
    "check-quorum",
    "seed",
    "election-timeout",
    "heartbeat",
    "inquiry-timeout",
    "max-inflight",
    "max-entries",
    "max-bytes",
    "max-uncommitted",
    "skip-recovery",
];

/// The `key=value` arguments of `inject`.
const INJECT_KEYS: &[&str] = &["term", "match", "reject", "hint", "read-seq", "index", "next", "ctx"];

/// `inject`: see [`run`].
fn inject(env: &mut Env, cmd: &Command) -> Result<(), String> {
    let (from, to) = (node_id(cmd.arg(0)), node_id(cmd.arg(1)));
    let term = cmd.key("term").map_or_else(|| env.raft(to).map(Raft::term), |t| Ok(Term(number(t))))?;
    let required = |key: &str| cmd.key(key).map(number).unwrap_or_else(|| panic!("inject: missing {key}="));
    let body = match cmd.arg(2) {
        "append-resp" => match cmd.key("match") {
            Some(index) => MessageBody::AppendResponse { result: Ok(LogIndex(number(index))) },
            None => {
                let hint = cmd.key("hint").expect("inject append-resp: match= or reject= and hint=I@T");
                let (hint_index, hint_term) = hint.split_once('@').expect("hint=INDEX@TERM");
                let rejection = AppendRejection {
                    rejected_index: LogIndex(required("reject")),
                    hint_index: LogIndex(number(hint_index)),
                    hint_term: Term(number(hint_term)),
                    needs_snapshot: false,
                };
                MessageBody::AppendResponse { result: Err(rejection) }
            }
        },
        "heartbeat-resp" => MessageBody::HeartbeatResponse { read_seq: required("read-seq") },
        "snapshot-resp" => {
            MessageBody::SnapshotResponse { index: LogIndex(required("index")), next_offset: required("next") }
        }
        "read-index-resp" => {
            MessageBody::ReadIndexResponse { context: required("ctx"), index: LogIndex(required("index")) }
        }
        other => panic!("inject: unknown kind {other} (append-resp, heartbeat-resp, snapshot-resp, read-index-resp)"),
    };
    let message = Message { from, to, term, body };
    env.emit(0, format!("> {to} receiving an injected message"));
    env.emit(2, &message);
    env.input(to, 4, |raft| raft.step(message))
}

/// `add-nodes`: see [`run`].
fn add_nodes(env: &mut Env, cmd: &Command) -> Result<(), String> {
    let count = number(cmd.arg(0));
    let first = env.nodes.keys().last().map_or(1, |id| id.0 + 1);
    let new_ids: Vec<NodeId> = (first..first + count).map(NodeId).collect();
    let list = |key: &str| cmd.key(key).map(|v| v.split(',').map(node_id).collect::<BTreeSet<_>>());
    let default_voters = if env.nodes.is_empty() { new_ids.iter().copied().collect() } else { BTreeSet::new() };
    let membership =
        Membership { voters: list("voters").unwrap_or(default_voters), learners: list("learners").unwrap_or_default() };
    for &id in &new_ids {
        let mut config = Config::new(id, cmd.key("seed").map_or(1, number));
        let flag = |key: &str, default: bool| cmd.key(key).map_or(default, |v| v.parse().expect("true or false"));
        config.election = match cmd.key("election") {
            None | Some("raft") => ElectionMode::Raft,
            Some("bully") => ElectionMode::Bully,
            Some(other) => panic!("election={other}: expected raft or bully"),
        };
        config.inquiry_timeout_ticks = cmd
            .key("inquiry-timeout")
            .map_or(config.inquiry_timeout_ticks, |v| u32::try_from(number(v)).expect("a small number"));
        config.pre_vote = flag("pre-vote", config.pre_vote);
        config.check_quorum = flag("check-quorum", config.check_quorum);
        config.election_timeout_ticks = cmd
            .key("election-timeout")
            .map_or(config.election_timeout_ticks, |v| u32::try_from(number(v)).expect("a small number"));
        config.heartbeat_interval_ticks = cmd
            .key("heartbeat")
            .map_or(config.heartbeat_interval_ticks, |v| u32::try_from(number(v)).expect("a small number"));
        config.max_inflight_messages = cmd.key("max-inflight").map_or(config.max_inflight_messages, count_arg);
        config.max_entries_per_message = cmd.key("max-entries").map_or(config.max_entries_per_message, count_arg);
        config.max_bytes_per_message = cmd.key("max-bytes").map_or(config.max_bytes_per_message, count_arg);
        config.max_uncommitted_entries = cmd.key("max-uncommitted").map_or(config.max_uncommitted_entries, count_arg);
        config.faults.skip_protocol_aware_recovery = flag("skip-recovery", false);
        env.add_node(config, membership.clone());
        env.emit(0, format!("{id}: {}", describe_membership(&membership)));
    }
    Ok(())
}

/// `campaign`: see [`run`].
fn campaign(env: &mut Env, id: NodeId) -> Result<(), String> {
    let raft = env.raft(id)?;
    if raft.is_leader() {
        return Err(format!("{id} is already the leader"));
    }
    let ticks = 2 * raft.config().election_timeout_ticks;
    // A campaign changes the role or term, or (a pre-candidate campaigning again) produces vote requests.
    let observe = |raft: &Raft| (raft.role(), raft.term(), raft.has_ready());
    for _ in 0..ticks {
        let before = observe(env.raft(id)?);
        env.input(id, 0, Raft::tick)?;
        if observe(env.raft(id)?) != before {
            return Ok(());
        }
    }
    Err(format!("{id} did not campaign within {ticks} ticks"))
}

/// `tick`, `tick-heartbeat`, `tick-election`: ticks each of `ids` the number of times `times` says.
fn tick(env: &mut Env, ids: &[NodeId], times: impl Fn(&Config) -> u64) -> Result<(), String> {
    for &id in ids {
        for _ in 0..times(&env.node(id)?.config) {
            env.input(id, 0, Raft::tick)?;
        }
    }
    Ok(())
}

/// `process-ready`: see [`run`].
fn process_ready(env: &mut Env, cmd: &Command) -> Result<(), String> {
    for id in node_ids(env, &cmd.positional) {
        env.process_ready(id, 0)?;
    }
    Ok(())
}

/// `deliver-msgs`: see [`run`].
fn deliver_msgs(env: &mut Env, cmd: &Command) -> Result<(), String> {
    let dropped: Vec<NodeId> = cmd.key("drop").map(|v| v.split(',').map(node_id).collect()).unwrap_or_default();
    for &id in &dropped {
        env.drop_inbox(id, 0);
    }
    let targets = if cmd.positional.is_empty() && !dropped.is_empty() {
        Vec::new()
    } else {
        node_ids(env, &cmd.positional).into_iter().filter(|id| !dropped.contains(id)).collect()
    };
    for id in targets {
        env.deliver(id, 0);
    }
    Ok(())
}

/// `compact`: see [`run`].
fn compact(env: &mut Env, cmd: &Command) -> Result<(), String> {
    let id = node_id(cmd.arg(0));
    env.compact(id, LogIndex(number(cmd.arg(1))), cmd.key("keep").map_or(0, number))?;
    let raft = env.raft(id)?;
    let log = if raft.first_index() > raft.last_index() {
        "log empty".to_string()
    } else {
        format!("log holds {}..={}", raft.first_index(), raft.last_index())
    };
    let line = format!("{id} snapshot {}; {log}", describe_snapshot(raft.snapshot()));
    env.emit(0, line);
    Ok(())
}

/// `partition`: the positional words are ids, commas and `|` separators.
fn partition(env: &mut Env, cmd: &Command) {
    let words = cmd.positional.join(" ");
    let groups = words
        .split('|')
        .map(|group| group.split([',', ' ']).filter(|w| !w.is_empty()).map(node_id).collect::<BTreeSet<_>>())
        .collect();
    env.partition(groups);
}

/// `status`: see [`run`].
fn status(env: &mut Env, id: NodeId) -> Result<(), String> {
    let raft = env.raft(id)?;
    let show = |id: Option<NodeId>| id.map_or("none".to_string(), |id| id.to_string());
    let mut lines = vec![
        format!(
            "{id} {:?} term={} vote={} leader={}",
            raft.role(),
            raft.term(),
            show(raft.vote()),
            show(raft.leader_id())
        ),
        format!(
            "  log: snapshot={}@{} last={}@{} commit={} applied={}",
            raft.snapshot().meta.index,
            raft.snapshot().meta.term,
            raft.last_index(),
            raft.last_term(),
            raft.commit_index(),
            raft.applied_index()
        ),
        format!("  {}", describe_membership(raft.membership())),
    ];
    match raft.recovery_status() {
        RecoveryStatus::Settled => {}
        RecoveryStatus::Querying => lines.push("  recovery: querying".to_string()),
        RecoveryStatus::CatchingUp { floor: (term, index) } => {
            lines.push(format!("  recovery: catching up to floor {index}@{term}"))
        }
    }
    if raft.is_leader() && !raft.match_indexes().is_empty() {
        let progress: Vec<String> = raft.match_indexes().iter().map(|(id, m)| format!("{id} match={m}")).collect();
        lines.push(format!("  progress: {}", progress.join(", ")));
    }
    for line in lines {
        env.emit(0, line);
    }
    Ok(())
}

/// `raft-log`: see [`run`].
fn raft_log(env: &mut Env, id: NodeId) -> Result<(), String> {
    let node = env.node(id)?;
    let mut lines = Vec::new();
    match &node.raft {
        Some(raft) => {
            if raft.snapshot().meta.index > LogIndex(0) {
                lines.push(format!("snapshot {}", describe_snapshot(raft.snapshot())));
            }
            let mut index = raft.first_index();
            while let Some(entry) = raft.entry(index) {
                lines.push(entry.to_string());
                index = index.next();
            }
        }
        None => {
            lines.push(format!("{id} is down; its disk holds:"));
            lines.push(describe_hard_state(&node.disk.hard_state));
            if node.disk.snapshot.meta.index > LogIndex(0) {
                lines.push(format!("snapshot {}", describe_snapshot(&node.disk.snapshot)));
            }
            lines.extend(node.disk.entries.iter().map(ToString::to_string));
        }
    }
    if lines.is_empty() {
        lines.push("log is empty".to_string());
    }
    for line in lines {
        env.emit(0, line);
    }
    Ok(())
}

/// `applied`: see [`run`].
fn applied(env: &mut Env, id: NodeId) -> Result<(), String> {
    let node = env.node(id)?;
    let commands: Vec<String> = node.state.iter().map(|(index, command)| format!("{index}:{command}")).collect();
    let line = format!("{id} applied [{}]", commands.join(" "));
    env.emit(0, line);
    Ok(())
}

/// `add-learner 4` and friends.
fn membership_change(kind: &str, id: NodeId) -> MembershipChange {
    match kind {
        "add-learner" => MembershipChange::AddLearner(id),
        "add-voter" => MembershipChange::AddVoter(id),
        "demote" => MembershipChange::DemoteVoter(id),
        "remove" => MembershipChange::Remove(id),
        other => panic!("unknown membership change {other} (add-learner, add-voter, demote, remove)"),
    }
}

/// The node ids in `words`; every node if there are none.
fn node_ids(env: &Env, words: &[String]) -> Vec<NodeId> {
    if words.is_empty() || words == ["all"] {
        return env.nodes.keys().copied().collect();
    }
    words.iter().flat_map(|w| w.split(',')).map(node_id).collect()
}

/// `3` is `n3`.
fn node_id(word: &str) -> NodeId {
    NodeId(number(word))
}

/// A number argument.
fn number(word: &str) -> u64 {
    word.parse().unwrap_or_else(|_| panic!("expected a number, got {word:?}"))
}

/// A count argument.
fn count_arg(word: &str) -> usize {
    usize::try_from(number(word)).expect("a small number")
}
