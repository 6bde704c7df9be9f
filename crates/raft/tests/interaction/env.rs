//! The in-memory cluster a script drives: Raft nodes, the disk each one persists its `Ready`s to, the
//! network between them and a toy state machine per node.
//!
//! ```text
//!  script command ──▶ Env::input(id, ..) ──▶ Raft ──ready()──▶ Disk (snapshot, entries, hard state)
//!                                                     ├──────▶ inbox of each recipient ──deliver──▶ Raft::step
//!                                                     └──────▶ state machine (applied commands)
//! ```
//!
//! Nothing moves on its own: messages wait in their recipient's inbox until a script delivers (or drops)
//! them, and a node only ticks when told to. After every input the environment checks the node's own
//! invariants and three cluster-wide safety properties: at most one leader per term (Raft §5.2), never two
//! different entries applied at one index (State Machine Safety, §5.4.3), and never two votes persisted in
//! one term.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Display;
use std::sync::Arc;

use tally_raft::{
    Config, Entry, EntryPayload, HardState, LogIndex, Membership, Message, NodeId, Raft, Ready, Restored, Role,
    Snapshot, SnapshotMeta, Term,
};

/// What a node has made durable: exactly what it was handed in its `Ready`s (and the snapshots its driver
/// took), so a restart sees that and nothing else.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The last persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The newest snapshot; index 0 and the initial membership for a node that never took one.
    pub snapshot: Snapshot,
    /// The entries after the snapshot, consecutive from `snapshot.meta.index + 1`.
    pub entries: Vec<Entry>,
    /// The hard state and entries before each persisted `Ready` (one synced batch each), newest last, so that
    /// `lose-tail` can take the last batches away as a damaged WAL tail would.
    pub batches: Vec<(HardState, Vec<Entry>)>,
    /// What `lose-tail` took: the next start is told its tail may have been acknowledged, with the highest hard
    /// state of the lost batches if it was kept readable.
    pub lost_tail: Option<Option<HardState>>,
    /// Every vote ever persisted, by term: it survives `lose-tail`, so a second vote in a term is seen even when
    /// the first one was lost.
    pub votes_ever: BTreeMap<Term, NodeId>,
}

impl Disk {
    /// Writes the persisted parts of `ready` in the order its contract states: snapshot, entries, hard state.
    ///
    /// # Panics
    /// If the entries leave a gap, the term goes back, or a second vote is persisted in one term.
    fn persist(&mut self, id: NodeId, ready: &Ready) -> Option<String> {
        if ready.snapshot.is_none() {
            self.batches.push((self.hard_state, self.entries.clone()));
        } else {
            self.batches.clear(); // a snapshot replaces the log: lose-tail reaches back only to it
        }
        if let Some(snapshot) = &ready.snapshot {
            self.snapshot = snapshot.clone();
            if ready.snapshot_replaces_log {
                self.entries.clear(); // the core dropped its whole log; so does the disk
            } else {
                self.entries.retain(|e| e.index > snapshot.meta.index); // only a membership base: keep the log
            }
        }
        if let Some(first) = ready.entries.first() {
            let base = self.snapshot.meta.index;
            assert!(first.index > base, "{id} persists entry {} covered by snapshot {base}", first.index);
            let kept = (first.index.0 - base.0 - 1) as usize;
            assert!(kept <= self.entries.len(), "{id} persists entry {} after a gap", first.index);
            self.entries.truncate(kept); // a conflicting suffix is replaced
            self.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hard_state) = ready.hard_state {
            let old = self.hard_state;
            assert!(hard_state.term >= old.term, "{id} persists term {} after {}", hard_state.term, old.term);
            if hard_state.term == old.term && old.vote.is_some() {
                assert_eq!(hard_state.vote, old.vote, "{id} voted twice in term {}", old.term);
            }
            self.hard_state = hard_state;
        }
        // A vote for itself outside a campaign is the placeholder of protocol-aware recovery (the node takes the
        // vote of a term it may have voted in and lost): it is never granted to anyone, so it is no second vote.
        let vote = ready.hard_state.and_then(|h| Some((h.term, h.vote.filter(|&v| v != id)?)))?;
        let first = *self.votes_ever.entry(vote.0).or_insert(vote.1);
        (first != vote.1).then(|| format!("SAFETY VIOLATION: {id} voted for {first} and {} in term {}", vote.1, vote.0))
    }

    /// Takes the last `count` persisted batches away, as recovery cuts a damaged tail of the WAL; with `keep_hard_state`
    /// the highest hard state among them stays readable (recovery found it in the cut region).
    pub fn lose_tail(&mut self, count: usize, keep_hard_state: bool) -> Result<(), String> {
        if count == 0 || count > self.batches.len() {
            return Err(format!("only {} batches since the last snapshot", self.batches.len()));
        }
        let lost_hard_state = self.hard_state;
        let (hard_state, entries) = self.batches.split_off(self.batches.len() - count).swap_remove(0);
        self.hard_state = hard_state;
        self.entries = entries;
        self.lost_tail = Some(keep_hard_state.then_some(lost_hard_state));
        Ok(())
    }

    /// What a restarting node reads back.
    fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
            tail_may_be_acknowledged: self.lost_tail.is_some(),
            tail_hard_state: self.lost_tail.flatten(),
        }
    }
}

/// The role, term and leader a node reports whenever one of them changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SoftState {
    /// The node's role.
    role: Role,
    /// Its current term.
    term: Term,
    /// The leader it follows, if known.
    leader: Option<NodeId>,
}

impl SoftState {
    fn of(raft: &Raft) -> SoftState {
        SoftState { role: raft.role(), term: raft.term(), leader: raft.leader_id() }
    }

    /// One line such as `n2 is Follower at term 1, leader n1`.
    fn describe(&self, id: NodeId) -> String {
        let role = format!("{id} is {:?} at term {}", self.role, self.term);
        match (self.role, self.leader) {
            (Role::Follower, Some(leader)) => format!("{role}, leader {leader}"),
            (Role::Follower, None) => format!("{role}, leader unknown"),
            _ => role,
        }
    }
}

/// One node of the environment.
pub struct Node {
    /// The running Raft instance; `None` while the node is crashed.
    pub raft: Option<Raft>,
    /// Kept to rebuild the node on restart.
    pub config: Config,
    /// What survives a crash.
    pub disk: Disk,
    /// The toy state machine: every applied command with its index, in order. Lost in a crash and rebuilt
    /// from the snapshot plus the committed entries the restarted core hands out again.
    pub state: Vec<(LogIndex, String)>,
    /// The soft state last reported, so only changes are printed.
    soft: SoftState,
    /// The Raft group (cluster) the node belongs to: a script may run independent clusters side by side,
    /// and the safety checks apply within each.
    group: usize,
}

/// The whole simulated cluster. Deterministic: everything is kept in id order.
#[derive(Default)]
pub struct Env {
    /// Every node ever added, crashed or not.
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not delivered yet, per recipient, oldest first.
    inbox: BTreeMap<NodeId, VecDeque<Message>>,
    /// The groups of a partition: a message between two groups (or to or from a node in none) is dropped at
    /// delivery. Empty when the network is whole.
    partition: Vec<BTreeSet<NodeId>>,
    /// Cut links, each as (lower id, higher id): a message between the two is dropped at delivery, either
    /// way, whatever the partition. Empty when the network is whole.
    cuts: BTreeSet<(NodeId, NodeId)>,
    /// Election safety: the leader seen in each group and term.
    leaders: BTreeMap<(usize, Term), NodeId>,
    /// State machine safety: the term of the entry any node of the group applied at each index.
    applied: BTreeMap<(usize, LogIndex), Term>,
    /// The output of the command under way, one line each.
    out: Vec<String>,
}

impl Env {
    /// Takes the output printed so far.
    pub fn take_output(&mut self) -> Vec<String> {
        std::mem::take(&mut self.out)
    }

    /// Prints one line at `indent` spaces.
    pub fn emit(&mut self, indent: usize, text: impl Display) {
        let text = text.to_string();
        assert!(!text.is_empty(), "empty output line");
        self.out.push(format!("{:indent$}{text}", ""));
    }

    /// Adds a brand-new node with an empty log whose snapshot holds the initial `membership` (empty for a
    /// node that waits to be contacted by a leader). It joins the group of the existing members it names,
    /// or, naming none, a new group; a node with an empty membership joins the group added last.
    pub fn add_node(&mut self, config: Config, membership: Membership) {
        let id = config.id;
        assert!(!self.nodes.contains_key(&id), "{id} already exists");
        let last_group = self.nodes.values().map(|n| n.group).max();
        let named_group = membership.members().find_map(|m| self.nodes.get(&m)).map(|n| n.group);
        let group = match (named_group, last_group) {
            (Some(group), _) => group,
            (None, Some(last)) if membership.members().next().is_none() => last,
            (None, Some(last)) => last + 1,
            (None, None) => 0,
        };
        let snapshot = Snapshot { meta: SnapshotMeta { membership, ..SnapshotMeta::default() }, data: Arc::default() };
        let disk = Disk { snapshot, ..Disk::default() };
        let raft = Raft::new(config.clone(), disk.restored());
        let soft = SoftState::of(&raft);
        self.nodes.insert(id, Node { raft: Some(raft), config, disk, state: Vec::new(), soft, group });
    }

    /// The node `id`.
    ///
    /// # Errors
    /// If there is no such node.
    pub fn node(&self, id: NodeId) -> Result<&Node, String> {
        self.nodes.get(&id).ok_or_else(|| format!("{id} does not exist"))
    }

    /// The running Raft of node `id`.
    ///
    /// # Errors
    /// If there is no such node or it is down.
    pub fn raft(&self, id: NodeId) -> Result<&Raft, String> {
        self.node(id)?.raft.as_ref().ok_or_else(|| format!("{id} is down"))
    }

    /// Feeds one input to node `id`, then checks invariants and prints any change of role, term or leader.
    ///
    /// # Errors
    /// If there is no such node or it is down.
    pub fn input<R>(&mut self, id: NodeId, indent: usize, input: impl FnOnce(&mut Raft) -> R) -> Result<R, String> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| format!("{id} does not exist"))?;
        let raft = node.raft.as_mut().ok_or_else(|| format!("{id} is down"))?;
        let result = input(raft);
        raft.check_invariants();
        self.after_input(id, indent);
        Ok(result)
    }

    /// Checks election safety for node `id` and reports its soft state if it changed.
    fn after_input(&mut self, id: NodeId, indent: usize) {
        let node = self.nodes.get_mut(&id).expect("caller checked");
        let raft = node.raft.as_ref().expect("caller checked");
        let soft = SoftState::of(raft);
        if raft.is_leader() {
            let leader = *self.leaders.entry((node.group, soft.term)).or_insert(id);
            assert_eq!(leader, id, "two leaders in term {}: {leader} and {id}", soft.term);
        }
        if soft != node.soft {
            node.soft = soft;
            self.emit(indent, soft.describe(id));
        }
    }

    /// Takes node `id`'s `Ready`, persists it to its disk, queues its messages and applies its committed
    /// entries, printing all of it. Returns false (and prints nothing) if there was nothing to do.
    pub fn process_ready(&mut self, id: NodeId, indent: usize) -> Result<bool, String> {
        if !self.raft(id)?.has_ready() {
            return Ok(false);
        }
        let ready = self.input(id, indent, Raft::ready)?;
        self.emit(indent, format!("> {id} handling Ready"));
        print_ready(self, indent + 2, &ready);
        let node = self.nodes.get_mut(&id).expect("checked above");
        let violation = node.disk.persist(id, &ready);
        if let Some(snapshot) = ready.snapshot.as_ref().filter(|_| ready.snapshot_replaces_log) {
            node.state = decode_state(&snapshot.data);
        }
        for message in ready.messages {
            self.inbox.entry(message.to).or_default().push_back(message);
        }
        for entry in ready.committed_entries {
            self.apply(id, entry);
        }
        if let Some(violation) = violation {
            self.emit(indent + 2, violation);
        }
        Ok(true)
    }

    /// Applies one committed entry to node `id`'s state machine, checking State Machine Safety.
    fn apply(&mut self, id: NodeId, entry: Entry) {
        let node = self.nodes.get_mut(&id).expect("caller checked");
        let term = *self.applied.entry((node.group, entry.index)).or_insert(entry.term);
        assert_eq!(term, entry.term, "{id} applies {entry} but another node applied term {term} there");
        if let EntryPayload::Command(data) = &entry.payload {
            node.state.push((entry.index, String::from_utf8_lossy(data).into_owned()));
        }
    }

    /// Delivers (or drops, across a partition or to a node that is down) every message waiting for node `id`,
    /// printing each one. Returns false if there were none.
    pub fn deliver(&mut self, id: NodeId, indent: usize) -> bool {
        let messages = self.inbox.remove(&id).unwrap_or_default();
        if messages.is_empty() {
            return false;
        }
        self.emit(indent, format!("> {id} receiving messages"));
        for message in messages {
            if let Some(reason) = self.drop_reason(&message) {
                self.emit(indent + 2, format!("dropped {message} ({reason})"));
                continue;
            }
            self.emit(indent + 2, &message);
            self.input(id, indent + 4, |raft| raft.step(message)).expect("drop_reason checked it is up");
        }
        true
    }

    /// Drops every message waiting for node `id`, printing each one. Returns false if there were none.
    pub fn drop_inbox(&mut self, id: NodeId, indent: usize) -> bool {
        let messages = self.inbox.remove(&id).unwrap_or_default();
        for message in &messages {
            self.emit(indent, format!("dropped {message}"));
        }
        !messages.is_empty()
    }

    /// Why `message` cannot be delivered, if it cannot.
    fn drop_reason(&self, message: &Message) -> Option<&'static str> {
        match self.nodes.get(&message.to) {
            None => return Some("no such node"),
            Some(node) if node.raft.is_none() => return Some("receiver down"),
            Some(_) => {}
        }
        let group = |id: NodeId| self.partition.iter().position(|g| g.contains(&id));
        if !self.partition.is_empty() && (group(message.from).is_none() || group(message.from) != group(message.to)) {
            return Some("partition");
        }
        if self.cuts.contains(&link(message.from, message.to)) {
            return Some("link cut");
        }
        None
    }

    /// Processes `Ready`s and delivers messages among `ids` until none of them has anything left to do.
    pub fn stabilize(&mut self, ids: &[NodeId]) -> Result<(), String> {
        const MAX_ROUNDS: usize = 1000;
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for &id in ids {
                if self.node(id)?.raft.is_some() {
                    busy |= self.process_ready(id, 0)?;
                }
            }
            for &id in ids {
                busy |= self.deliver(id, 0);
            }
            if !busy {
                return Ok(());
            }
        }
        panic!("not stable after {MAX_ROUNDS} rounds");
    }

    /// Cuts the network into `groups`.
    pub fn partition(&mut self, groups: Vec<BTreeSet<NodeId>>) {
        self.partition = groups;
    }

    /// Cuts the link between `a` and `b`: messages between them are dropped at delivery, both ways, while
    /// each still reaches every other node it could reach before.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        assert!(a != b, "cannot cut the link from {a} to itself");
        self.cuts.insert(link(a, b));
    }

    /// Makes the network whole again: no partition, no cut link.
    pub fn heal(&mut self) {
        self.partition.clear();
        self.cuts.clear();
    }

    /// Crashes node `id`: its memory (Raft state, state machine, unpersisted output) is lost and every
    /// message to or from it still in the network is dropped. Its disk survives.
    pub fn crash(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| format!("{id} does not exist"))?;
        if node.raft.take().is_none() {
            return Err(format!("{id} is already down"));
        }
        node.state.clear();
        self.drop_inbox(id, 0);
        for queue in self.inbox.values_mut() {
            let (dropped, kept) = std::mem::take(queue).into_iter().partition(|m: &Message| m.from == id);
            *queue = kept;
            for message in dropped {
                self.out.push(format!("dropped {message}"));
            }
        }
        Ok(())
    }

    /// Restarts a crashed node `id` from its disk. Messages sent to it while it was down are dropped.
    pub fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| format!("{id} does not exist"))?;
        if node.raft.is_some() {
            return Err(format!("{id} is running"));
        }
        self.drop_inbox(id, 0); // sent while it was down: nobody was listening
        let node = self.nodes.get_mut(&id).expect("checked above");
        let raft = Raft::new(node.config.clone(), node.disk.restored());
        node.disk.lost_tail = None;
        node.state = decode_state(&node.disk.snapshot.data);
        node.soft = SoftState::of(&raft);
        node.raft = Some(raft);
        self.after_input(id, 0);
        Ok(())
    }

    /// Node `id`'s driver snapshots its state machine at `index` (which it has applied), tells the core to
    /// compact its log keeping `keep` entries before `index`, and writes the snapshot to disk.
    pub fn compact(&mut self, id: NodeId, index: LogIndex, keep: u64) -> Result<(), String> {
        let raft = self.raft(id)?;
        if index > raft.applied_index() {
            return Err(format!("{id} has applied only up to {}", raft.applied_index()));
        }
        let node = self.nodes.get(&id).expect("checked above");
        let data = encode_state(node.state.iter().filter(|(i, _)| *i <= index));
        self.input(id, 0, |raft| raft.compact(index, data, keep))?;
        let node = self.nodes.get_mut(&id).expect("checked above");
        let snapshot = node.raft.as_ref().expect("checked above").snapshot().clone();
        if snapshot.meta.index > node.disk.snapshot.meta.index {
            node.disk.entries.retain(|e| e.index > snapshot.meta.index);
            node.disk.snapshot = snapshot;
        }
        Ok(())
    }
}

/// The key of the link between `a` and `b`, the same whichever way a message goes.
fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

/// Prints the fields of `ready` in the order the driver handles them.
fn print_ready(env: &mut Env, indent: usize, ready: &Ready) {
    if let Some(snapshot) = &ready.snapshot {
        env.emit(indent, format!("Snapshot {}", describe_snapshot(snapshot)));
    }
    print_list(env, indent, "Entries:", &ready.entries);
    if let Some(hard_state) = ready.hard_state {
        env.emit(indent, describe_hard_state(&hard_state));
    }
    print_list(env, indent, "Messages:", &ready.messages);
    print_list(env, indent, "Committed:", &ready.committed_entries);
    for read in &ready.read_states {
        env.emit(indent, format!("ReadState ctx={} index={}", read.context, read.index));
    }
}

/// Prints `title` and one item a line below it, unless there are none.
fn print_list<T: Display>(env: &mut Env, indent: usize, title: &str, items: &[T]) {
    if items.is_empty() {
        return;
    }
    env.emit(indent, title);
    for item in items {
        env.emit(indent + 2, item);
    }
}

/// `HardState term=2 vote=n1 commit=5`.
pub fn describe_hard_state(hard_state: &HardState) -> String {
    let vote = hard_state.vote.map_or("none".to_string(), |v| v.to_string());
    format!("HardState term={} vote={vote} commit={}", hard_state.term, hard_state.commit)
}

/// `5@2 voters=[1, 2, 3] learners=[] data=[3:a 4:b]`.
pub fn describe_snapshot(snapshot: &Snapshot) -> String {
    let meta = &snapshot.meta;
    let data = String::from_utf8_lossy(&snapshot.data);
    format!("{}@{} {} data=[{data}]", meta.index, meta.term, describe_membership(&meta.membership))
}

/// `voters=[1, 2, 3] learners=[4]`.
pub fn describe_membership(membership: &Membership) -> String {
    let ids = |set: &BTreeSet<NodeId>| set.iter().map(|id| id.0.to_string()).collect::<Vec<_>>().join(", ");
    format!("voters=[{}] learners=[{}]", ids(&membership.voters), ids(&membership.learners))
}

/// The snapshot encoding of the toy state machine: `index:command` pairs separated by spaces.
fn encode_state<'a>(state: impl Iterator<Item = &'a (LogIndex, String)>) -> Vec<u8> {
    state.map(|(index, command)| format!("{index}:{command}")).collect::<Vec<_>>().join(" ").into_bytes()
}

/// The inverse of [`encode_state`].
fn decode_state(data: &[u8]) -> Vec<(LogIndex, String)> {
    let text = String::from_utf8_lossy(data);
    let pair = |word: &str| {
        let (index, command) = word.split_once(':').expect("index:command");
        (LogIndex(index.parse().expect("an index")), command.to_string())
    };
    text.split_whitespace().map(pair).collect()
}
