//! The slots of inbound peer connections: a small cap, with eviction, for connections not admitted yet, and
//! caps for admitted ones, so that neither idle strangers nor a flood of connections can lock a member out.
//!
//! ```text
//!  accept ──open(addr)──▶ unadmitted (at most unadmitted_max; full: evict the oldest of the address
//!                         │            holding the most, which for one flooding address is simply its oldest)
//!                         └─admit(id)─▶ admitted (at most connections_per_peer_max per node id: evict that id's
//!                                       oldest; at most admitted_max in all: evict the one silent longest)
//!  Slot dropped (connection ended) ──▶ its entry is removed; an evicted connection is told through its Slot
//! ```
//!
//! Evicting instead of refusing is what keeps a member able to connect: a refused newcomer could be the member
//! itself, behind a flood of idle connections that would otherwise hold every slot until their deadline, while
//! the oldest unadmitted connection is the one that has had the longest to prove itself. A member reconnecting
//! replaces its own stale connections (those of a crashed process whose socket never closed), and an admitted
//! connection that carries nothing is the first to go when the admitted slots run out: a member's control lane
//! carries heartbeats or their answers all the time, and a lane evicted while idle reconnects when it has
//! something to send. On loopback every node shares 127.0.0.1, so no cap is per address: the per-address rule
//! only chooses whom to evict.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tally_raft::NodeId;
use tokio::sync::Notify;

/// The caps, from [`super::PeerConfig`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Connections not admitted yet.
    pub(crate) unadmitted_max: usize,
    /// Admitted connections in all.
    pub(crate) admitted_max: usize,
    /// Admitted connections bound to one node id.
    pub(crate) per_peer_max: usize,
}

/// One connection's entry.
#[derive(Debug)]
struct Entry {
    /// Where it comes from: the unadmitted connection evicted is the oldest of the address holding the most.
    addr: IpAddr,
    /// The node id it is bound to, once admitted.
    peer: Option<NodeId>,
    /// Notified (once) when the connection is evicted.
    close: Arc<Notify>,
    /// Milliseconds since [`Slots::epoch`] when it last delivered anything.
    last_active_ms: Arc<AtomicU64>,
}

/// The entries, by connection number (which grows with each accepted connection, so lower is older).
///
/// Invariant: `unadmitted.len() <= unadmitted_max`, `admitted.len() <= admitted_max`, at most `per_peer_max`
/// admitted entries per node id, and every admitted entry has a `peer`.
#[derive(Debug, Default)]
struct Table {
    /// Connections that have not proved who they are yet.
    unadmitted: BTreeMap<u64, Entry>,
    /// Connections bound to a node id.
    admitted: BTreeMap<u64, Entry>,
}

/// Every inbound connection's slot, shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub(crate) struct Slots {
    /// The caps.
    limits: Limits,
    /// The entries.
    table: Mutex<Table>,
    /// The number of the next connection.
    next: AtomicU64,
    /// How many connections were evicted so far.
    evicted: AtomicU64,
    /// The origin of `last_active_ms`.
    epoch: Instant,
}

/// One connection's hold on its slot: released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The table it is in.
    slots: Arc<Slots>,
    /// Its connection number.
    id: u64,
    /// Notified when it is evicted.
    close: Arc<Notify>,
    /// When it last delivered anything, shared with its entry.
    last_active_ms: Arc<AtomicU64>,
    /// Whether it was admitted (and not evicted before).
    admitted: AtomicBool,
}

impl Slots {
    /// An empty table with these caps.
    ///
    /// # Panics
    /// If a cap is 0.
    pub(crate) fn new(limits: Limits) -> Arc<Slots> {
        assert!(limits.unadmitted_max > 0, "unadmitted_connections_max must be positive");
        assert!(limits.admitted_max > 0, "admitted_connections_max must be positive");
        assert!(limits.per_peer_max > 0, "connections_per_peer_max must be positive");
        Arc::new(Slots {
            limits,
            table: Mutex::new(Table::default()),
            next: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// A slot for a new, unadmitted connection from `addr`; if the unadmitted slots are full, evicts one first
    /// (see the module doc).
    pub(crate) fn open(self: &Arc<Self>, addr: IpAddr) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let last_active_ms = Arc::new(AtomicU64::new(self.now_ms()));
        let mut table = self.lock();
        if table.unadmitted.len() >= self.limits.unadmitted_max {
            let victim = unadmitted_victim(&table.unadmitted, addr);
            self.evict(table.unadmitted.remove(&victim));
        }
        let entry = Entry { addr, peer: None, close: Arc::clone(&close), last_active_ms: Arc::clone(&last_active_ms) };
        table.unadmitted.insert(id, entry);
        self.assert_within_limits(&table);
        drop(table);
        Slot { slots: Arc::clone(self), id, close, last_active_ms, admitted: AtomicBool::new(false) }
    }

    /// How many connections were evicted so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// How many connections hold a slot: (unadmitted, admitted).
    pub(crate) fn occupied(&self) -> (usize, usize) {
        let table = self.lock();
        (table.unadmitted.len(), table.admitted.len())
    }

    /// Tells an evicted connection to close, and counts it.
    fn evict(&self, entry: Option<Entry>) {
        let entry = entry.expect("the victim is in the table");
        tracing::debug!(addr = %entry.addr, peer = ?entry.peer, "evicting a peer connection");
        entry.close.notify_one();
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Milliseconds since the table was made.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The table, even if a thread panicked holding it (every update leaves it consistent).
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asserts the table's invariant (cheap: the maps are small).
    fn assert_within_limits(&self, table: &Table) {
        let Limits { unadmitted_max, admitted_max, per_peer_max } = self.limits;
        assert!(table.unadmitted.len() <= unadmitted_max, "{} unadmitted > {unadmitted_max}", table.unadmitted.len());
        assert!(table.admitted.len() <= admitted_max, "{} admitted > {admitted_max}", table.admitted.len());
        let mut per_peer: BTreeMap<NodeId, usize> = BTreeMap::new();
        for entry in table.admitted.values() {
            let peer = entry.peer.expect("an admitted connection is bound to a node id");
            let count = per_peer.entry(peer).or_default();
            *count += 1;
            assert!(*count <= per_peer_max, "{count} connections of {peer} > {per_peer_max}");
        }
    }
}

/// The unadmitted connection to evict for a newcomer from `newcomer`: the oldest of the address holding the
/// most unadmitted connections (the newcomer counted), the address whose oldest is older on a tie.
fn unadmitted_victim(unadmitted: &BTreeMap<u64, Entry>, newcomer: IpAddr) -> u64 {
    let mut by_addr: BTreeMap<IpAddr, (usize, u64)> = BTreeMap::new();
    for (&id, entry) in unadmitted {
        by_addr.entry(entry.addr).or_insert((0, id)).0 += 1; // ids ascend: the first seen is the oldest
    }
    if let Some((count, _)) = by_addr.get_mut(&newcomer) {
        *count += 1;
    }
    let (_, (_, oldest)) = by_addr
        .into_iter()
        .max_by_key(|(_, (count, oldest))| (*count, std::cmp::Reverse(*oldest)))
        .expect("called only when the unadmitted slots are full");
    oldest
}

impl Slot {
    /// Moves the connection to the admitted slots, bound to `peer`, evicting that peer's oldest connection if
    /// it has too many, and the admitted connection silent longest if all admitted slots are taken.
    ///
    /// # Errors
    /// [`Evicted`] if the connection was evicted meanwhile (it must close).
    pub(crate) fn admit(&self, peer: NodeId) -> Result<(), Evicted> {
        let slots = &self.slots;
        let mut table = slots.lock();
        let Some(mut entry) = table.unadmitted.remove(&self.id) else { return Err(Evicted) };
        let of_peer: Vec<u64> =
            table.admitted.iter().filter(|(_, e)| e.peer == Some(peer)).map(|(&id, _)| id).collect();
        if of_peer.len() >= slots.limits.per_peer_max {
            let oldest = of_peer[0];
            slots.evict(table.admitted.remove(&oldest));
        }
        if table.admitted.len() >= slots.limits.admitted_max {
            let silent = table.admitted.iter().min_by_key(|(id, e)| (e.last_active_ms.load(Ordering::Relaxed), **id));
            let silent = *silent.expect("the admitted slots are full").0;
            slots.evict(table.admitted.remove(&silent));
        }
        entry.peer = Some(peer);
        table.admitted.insert(self.id, entry);
        slots.assert_within_limits(&table);
        drop(table);
        self.admitted.store(true, Ordering::Relaxed);
        self.touch();
        Ok(())
    }

    /// Whether the connection was admitted: a malformed frame from it is then a member's bug, worth a warning,
    /// rather than a stranger's noise.
    pub(crate) fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Records that the connection delivered something now.
    pub(crate) fn touch(&self) {
        self.last_active_ms.store(self.slots.now_ms(), Ordering::Relaxed);
    }

    /// Resolves once the connection is evicted. Cancel-safe: an eviction is never missed.
    pub(crate) async fn evicted(&self) {
        self.close.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.slots.lock();
        if table.unadmitted.remove(&self.id).is_none() {
            table.admitted.remove(&self.id);
        }
    }
}

/// The connection was evicted from its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Evicted;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LIMITS: Limits = Limits { unadmitted_max: 3, admitted_max: 4, per_peer_max: 2 };

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    /// Whether `slot` was told to close (without waiting).
    fn was_evicted(slot: &Slot) -> bool {
        use std::future::Future;
        let mut evicted = std::pin::pin!(slot.evicted());
        let waker = std::task::Waker::noop();
        evicted.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_ready()
    }

    #[test]
    fn a_full_unadmitted_table_evicts_its_oldest_and_a_flooding_address_evicts_its_own() {
        let slots = Slots::new(LIMITS);
        let member = slots.open(ip(1));
        let flood: Vec<Slot> = (0..2).map(|_| slots.open(ip(9))).collect();
        // Full: a newcomer from the flooding address evicts that address's oldest, not the member's.
        let newer = slots.open(ip(9));
        assert!(was_evicted(&flood[0]) && !was_evicted(&member) && !was_evicted(&flood[1]));
        assert_eq!((slots.occupied(), slots.evicted()), ((3, 0), 1));
        // From one address alone, the oldest goes.
        drop(member);
        let lone = Slots::new(LIMITS);
        let all: Vec<Slot> = (0..5).map(|_| lone.open(ip(1))).collect();
        assert_eq!(all.iter().map(was_evicted).collect::<Vec<_>>(), [true, true, false, false, false]);
        drop(newer);
    }

    #[test]
    fn admission_moves_a_connection_and_an_evicted_one_cannot_be_admitted() {
        let slots = Slots::new(LIMITS);
        let first = slots.open(ip(1));
        let rest: Vec<Slot> = (0..3).map(|_| slots.open(ip(1))).collect();
        assert_eq!(first.admit(NodeId(2)), Err(Evicted));
        assert_eq!(rest[0].admit(NodeId(2)), Ok(()));
        assert_eq!(slots.occupied(), (2, 1));
        drop(rest);
        assert_eq!(slots.occupied(), (0, 0), "dropped slots are released");
    }

    #[test]
    fn a_peer_keeps_its_newest_connections_and_the_most_silent_admitted_one_makes_room() {
        let slots = Slots::new(LIMITS);
        let admitted = |peer: u64| {
            let slot = slots.open(ip(1));
            slot.admit(NodeId(peer)).expect("not evicted");
            slot
        };
        let (a1, a2) = (admitted(2), admitted(2));
        let a3 = admitted(2);
        assert!(was_evicted(&a1) && !was_evicted(&a2) && !was_evicted(&a3), "n2 keeps its two newest");
        let (b, c) = (admitted(3), admitted(4));
        assert_eq!(slots.occupied(), (0, 4));
        // Full: the admitted connection silent longest makes room (all were active at about the same
        // millisecond; the oldest breaks the tie).
        a2.last_active_ms.store(0, Ordering::Relaxed);
        for slot in [&a3, &b, &c] {
            slot.last_active_ms.store(10, Ordering::Relaxed);
        }
        let d = admitted(5);
        assert!(was_evicted(&a2) && !was_evicted(&a3) && !was_evicted(&b) && !was_evicted(&c) && !was_evicted(&d));
        assert_eq!(slots.evicted(), 2);
    }
}
