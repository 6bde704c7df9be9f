//! Everything about one simulated run that is derived from its seed.

use tally_node::PolicyConfig;
use tally_raft::{ElectionMode, Faults, SplitMix64};

use crate::watcher::WatchParams;

/// Which mix of runs a seed is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Calm, harsh and chaotic runs mixed (one in five chaotic): the default.
    Mixed,
    /// Every run chaotic: heavy loss, frequent partitions, crash-restart storms and targeted crashes. For
    /// hunting rare interleavings (e.g. the Figure 8 scenario of the Raft paper).
    Chaos,
}

/// The knobs of one run. Every field is derived from the seed by [`SimParams::from_seed`], so a seed names
/// a run completely; tests may override fields after derivation (fault switches, node count).
#[derive(Clone, Debug)]
pub struct SimParams {
    /// The seed everything else comes from.
    pub seed: u64,
    /// 3 or 5 nodes: the initial voters.
    pub nodes: usize,
    /// Extra nodes that start empty, outside the cluster, and may be added by membership changes (they
    /// catch up by snapshot). Ids `nodes + 1 ..= nodes + spares`.
    pub spares: usize,
    /// Probability (per mille, per simulated millisecond) that the operator asks the leader for a
    /// membership change (add a spare as learner, promote a learner, demote or remove a member) or a
    /// leadership transfer.
    pub membership_permille: u64,
    /// Milliseconds per Raft tick on a node whose clock runs at the nominal rate.
    pub tick_interval_ms: u64,
    /// Length of the safety phase (faults on), in simulated milliseconds.
    pub safety_ms: u64,
    /// Bound on the liveness phase: after healing, a leader must be elected, a write committed and all
    /// nodes converged within this many milliseconds.
    pub liveness_ms: u64,
    /// Network delay range in ms; random delays within it reorder messages.
    pub delay_ms: (u64, u64),
    /// Whether each link delivers in order (like a TCP connection); otherwise random delays reorder messages.
    pub fifo_links: bool,
    /// Probability (per mille) a message is lost.
    pub loss_permille: u64,
    /// Probability (per mille) a message is delivered twice.
    pub duplicate_permille: u64,
    /// Probability (per mille, per simulated millisecond) that the partition changes.
    pub partition_permille: u64,
    /// Probability (per mille, per simulated millisecond) that a node crashes.
    pub crash_permille: u64,
    /// Of crashes, the share (per mille) that happen in the middle of a Ready (the sync fails): the node
    /// dies after computing outputs but before they are durable or sent.
    pub crash_mid_ready_permille: u64,
    /// Probability (per mille) that a node crashes right after an interesting send: a granted vote, or a
    /// leader's Append carrying entries (targeted crashes, like FoundationDB's "buggify": they make the rare
    /// interleavings of Raft's trickiest proofs common).
    pub crash_after_event_permille: u64,
    /// How long a crashed node stays down, in ms.
    pub downtime_ms: (u64, u64),
    /// Each node's clock rate in per mille of real time (tick skew).
    pub clock_rate_permille: Vec<u64>,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients work on (few, so operations collide).
    pub keys: usize,
    /// A client gives up on a request after this many ms; a write then becomes indeterminate.
    pub request_timeout_ms: u64,
    /// Of power losses, the share (per mille) that are harsh ([`tally_wal::FaultDisk::power_loss`]: any subset
    /// of the unsynced writes survives, torn at sectors, with any subset of the directory changes) instead of
    /// losing everything unsynced.
    pub torn_write_permille: u64,
    /// Size of one write-ahead log segment (small, so segments roll and get compacted).
    pub segment_bytes: u64,
    /// Snapshot every this many applied entries.
    pub snapshot_interval_entries: u64,
    /// Entries kept behind a snapshot.
    pub snapshot_keep_entries: u64,
    /// Raft: how leaders are elected (Raft or the bully algorithm); the same seeds run in both modes.
    pub election: ElectionMode,
    /// Raft, bully mode: ticks an inquiry waits for a node that outranks the inquirer.
    pub inquiry_timeout_ticks: u32,
    /// Raft: pre-vote on (most seeds) or off, to cover both code paths (Raft mode only).
    pub pre_vote: bool,
    /// Raft: check-quorum on (most seeds) or off (always on in bully mode, which requires it).
    pub check_quorum: bool,
    /// Raft: heartbeat interval in ticks (the election timeout is 10 ticks).
    pub heartbeat_interval_ticks: u32,
    /// Raft: entries per Append (1 forces one message per entry, which exposes ordering bugs).
    pub max_entries_per_message: usize,
    /// Raft: bytes per Append and per snapshot chunk (tiny values split snapshots into many chunks).
    pub max_bytes_per_message: usize,
    /// Raft: Append messages in flight per follower.
    pub max_inflight_messages: usize,
    /// Broken behaviours switched on in every node (tests only).
    pub faults: Faults,
    /// In half the membership runs, the operator is the leader's membership policy, as in the server: spares
    /// join as learners (what the join call does) at `membership_permille`, and the policy promotes them up to
    /// `nodes` voters and removes members that stayed unreachable too long. `None`: random changes.
    pub membership_policy: Option<PolicyConfig>,
    /// Per mille of client requests that are auth commands (roles, grants, users, enabling and disabling auth)
    /// instead of key operations; 0 in half the runs, so those replay exactly as before auth existed.
    pub auth_permille: u64,
    /// Fault switch (tests only): node n1 applies every auth grant of read or write as a grant of admin, a
    /// privilege escalation on one replica that the auth agreement checker must catch.
    pub misapply_auth: bool,
    /// Fault switch (tests only): every node evaluates a transaction's compares on the state one entry back and
    /// applies the branch they pick, a stale read of the guards that the serializability checker must catch.
    pub stale_txn_compare: bool,
    /// Of crashes, the share (per mille) that kill only the process: the page cache survives, and the node
    /// restarts reading writes that were never made durable.
    pub process_crash_permille: u64,
    /// Of process crashes, the share (per mille) followed by a power loss before the restart.
    pub power_loss_after_process_crash_permille: u64,
    /// Probability (per mille, per crash) that the crashing node's last synced batch is damaged (one sector of
    /// it zeroed or garbled): recovery cuts it as a torn tail although it was acknowledged, the case
    /// protocol-aware recovery exists for. Chaos runs draw the highest rates.
    pub damage_synced_permille: u64,
    /// Per mille of client requests that belong to the transaction workload (transfers between accounts,
    /// transactions with compares, read-only transactions, lists and prefix deletes on keys of their own: see
    /// [`crate::txn_client`]); 0 in half the runs, so those replay exactly as before transactions existed.
    pub txn_permille: u64,
    /// How many transaction keys (`t0 ..`) the transaction workload uses.
    pub txn_keys: usize,
    /// Watchers of the nodes' watch hubs and their knobs, with each node's history window (see
    /// [`crate::watcher`]); `None` in half the runs, so those replay exactly as before watchers existed.
    pub watch: Option<WatchParams>,
    /// Fault switch (tests only): every node's watch hub drops the first matching batch of a subscription that
    /// resumes at an explicit index, a watch that resumes one change too late, which the watch checker must catch.
    pub watch_skip_after_resume: bool,
}

impl SimParams {
    /// Derives a run from `seed`; `nodes` forces the cluster size (else 3 for even seeds, 5 for odd). In
    /// bully mode every field is drawn as in Raft mode, but check-quorum is always on.
    pub fn from_seed(seed: u64, nodes: Option<usize>, profile: Profile, election: ElectionMode) -> SimParams {
        let mut rng = SplitMix64::new(seed ^ 0x5EED_5EED_5EED_5EED);
        let nodes = nodes.unwrap_or(if seed % 2 == 0 { 3 } else { 5 });
        let harsh = rng.chance(1, 2);
        let chaos = profile == Profile::Chaos || rng.chance(1, 5); // crash-restart storms: nodes die every few hundred ms and come back fast
        let delay_max = rng.range(2, if harsh { 40 } else { 15 });
        // Most links deliver in order, as TCP does. Reordering links make a follower reject every Append that
        // overtakes an earlier one, which sends the leader back to probing (as in etcd): still safe, but catch-up
        // is slower, so those runs get a longer liveness bound.
        let fifo_links = rng.chance(2, 3) && !chaos;
        let mood = Mood { chaos, harsh };
        let membership = rng.chance(1, 2) && profile == Profile::Mixed;
        let spares = if membership { rng.range(1, 3) as usize } else { 0 };
        let mut params = SimParams {
            seed,
            nodes,
            spares,
            membership_permille: if membership { rng.range(1, 4) } else { 0 },
            tick_interval_ms: 10,
            safety_ms: 8_000,
            liveness_ms: if fifo_links { 6_000 } else { 12_000 },
            delay_ms: (1, delay_max),
            fifo_links,
            loss_permille: mood.pick(&mut rng, (100, 300), (0, 150), (0, 20)),
            duplicate_permille: rng.range(0, 50),
            partition_permille: mood.pick(&mut rng, (5, 30), (1, 6), (0, 3)),
            crash_permille: mood.pick(&mut rng, (3, 15), (1, 4), (0, 2)),
            crash_mid_ready_permille: rng.range(0, 600),
            crash_after_event_permille: if chaos { rng.range(50, 300) } else { 0 },
            downtime_ms: if chaos { (1, rng.range(2, 100)) } else { (50, rng.range(100, 2_000)) },
            clock_rate_permille: (0..nodes + spares).map(|_| rng.range(850, 1_150)).collect(),
            clients: rng.range(2, 6) as usize,
            keys: rng.range(1, 5) as usize,
            request_timeout_ms: rng.range(200, 1_000),
            torn_write_permille: mood.pick(&mut rng, (500, 1_000), (0, 1_000), (0, 1_000)),
            segment_bytes: rng.range(1 << 10, 64 << 10),
            snapshot_interval_entries: if rng.chance(1, 2) { rng.range(20, 200) } else { 10_000 },
            snapshot_keep_entries: rng.range(0, 50),
            pre_vote: rng.chance(4, 5),
            // Bully mode requires check-quorum; the draw happens all the same, so the fields after it match.
            check_quorum: rng.chance(4, 5) || election == ElectionMode::Bully,
            heartbeat_interval_ticks: rng.range(1, 4) as u32,
            max_entries_per_message: if rng.chance(1, 4) { 1 } else { rng.range(2, 64) as usize },
            max_inflight_messages: rng.range(8, 64) as usize,
            max_bytes_per_message: if rng.chance(1, 3) { rng.range(7, 64) as usize } else { 1 << 20 },
            faults: Faults::default(),
            // Drawn last, so that adding it left every other field of every seed as it was.
            membership_policy: (membership && rng.chance(1, 2)).then(|| PolicyConfig {
                target_voters: nodes,
                promote_after_ms: rng.range(50, 1_000),
                dead_after_ms: rng.range(300, 3_000),
                healthy_within_ms: 300,
            }),
            election,
            // Drawn after everything else, so that adding it left every other field of every seed as it was.
            inquiry_timeout_ticks: rng.range(1, 5) as u32,
            misapply_auth: false,
            stale_txn_compare: false,
            // Drawn last, for the same reason.
            auth_permille: if rng.chance(1, 2) { rng.range(20, 200) } else { 0 },
            // Disk faults: drawn after everything else, for the same reason.
            process_crash_permille: rng.range(0, 600),
            power_loss_after_process_crash_permille: rng.range(0, 1_000),
            damage_synced_permille: mood.pick(&mut rng, (10, 80), (0, 20), (0, 5)),
            // Drawn last, for the same reason (and only the chance in runs without transactions).
            txn_permille: if rng.chance(1, 2) { rng.range(100, 500) } else { 0 },
            txn_keys: 0,
            watch: None,
            watch_skip_after_resume: false,
        };
        if params.txn_permille > 0 {
            params.txn_keys = rng.range(2, 14) as usize;
        }
        // Drawn last, for the same reason (and nothing more in runs without watchers).
        let tiny_chunks = params.max_bytes_per_message < 1 << 20;
        params.watch = WatchParams::draw(&mut rng, nodes + spares, tiny_chunks);
        params
    }

    /// A calm run for measuring failovers, as production runs: no faults at all (the measurement crashes the
    /// leader itself), in-order links with 1-2 ms delays against 10 ms ticks, clocks at the nominal rate,
    /// pre-vote and check-quorum on, heartbeats every 2 ticks and the default inquiry timeout. Client load
    /// (without auth commands), batching and snapshot knobs stay as the seed draws them.
    pub fn for_failover(seed: u64, nodes: Option<usize>, election: ElectionMode) -> SimParams {
        let mut params = SimParams::from_seed(seed, nodes, Profile::Mixed, election);
        let defaults = tally_raft::Config::new(tally_raft::NodeId(1), seed);
        params.spares = 0;
        params.membership_permille = 0;
        params.membership_policy = None;
        params.delay_ms = (1, 2);
        params.fifo_links = true;
        params.loss_permille = 0;
        params.duplicate_permille = 0;
        params.partition_permille = 0;
        params.crash_permille = 0;
        params.crash_after_event_permille = 0;
        params.clock_rate_permille = vec![1_000; params.nodes];
        params.pre_vote = defaults.pre_vote;
        params.check_quorum = defaults.check_quorum;
        params.heartbeat_interval_ticks = defaults.heartbeat_interval_ticks;
        params.inquiry_timeout_ticks = defaults.inquiry_timeout_ticks;
        params.auth_permille = 0; // auth commands change no election: keep the measured runs as they were
        params.watch = None; // nor do watchers, whose reads would only add load
        params
    }
}

/// How rough a run is: chaotic, harsh, or calm.
struct Mood {
    /// Crash-restart storms, heavy loss, frequent partitions.
    chaos: bool,
    /// More loss, partitions and crashes than a calm run.
    harsh: bool,
}

impl Mood {
    /// A value from the range of this mood: `[low, high)` for chaotic, harsh and calm runs.
    fn pick(&self, rng: &mut SplitMix64, chaos: (u64, u64), harsh: (u64, u64), calm: (u64, u64)) -> u64 {
        let (low, high) = if self.chaos {
            chaos
        } else if self.harsh {
            harsh
        } else {
            calm
        };
        rng.range(low, high)
    }
}
