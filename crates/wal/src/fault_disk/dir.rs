//! The fault disk's directory: live and durable name bindings, and the operations in between, any subset
//! of which a power loss may keep.

use std::collections::BTreeMap;

use super::PowerLoss;
use super::rng::Rng;

/// A directory change since the last successful `sync_dir`, with the file id it bound or unbound.
#[derive(Clone, Debug)]
enum DirOp {
    Create { name: String, id: u64 },
    Remove { name: String, id: u64 },
    Rename { from: String, to: String, id: u64 },
}

impl DirOp {
    /// Applies the operation to `names` if it could run there as it ran live (a create of a free name, a
    /// remove or rename of the same file), so a power loss never builds a directory that replaying some
    /// subset of the operations in order could not. Returns whether it applied.
    fn replay(&self, names: &mut BTreeMap<String, u64>) -> bool {
        match self {
            DirOp::Create { name, id } => {
                if names.contains_key(name) {
                    return false;
                }
                names.insert(name.clone(), *id);
            }
            DirOp::Remove { name, id } => {
                if names.get(name) != Some(id) {
                    return false;
                }
                names.remove(name);
            }
            DirOp::Rename { from, to, id } => {
                if names.get(from) != Some(id) {
                    return false;
                }
                // One step: the new binding of `to` and the end of `from` survive together or not at all.
                names.remove(from);
                names.insert(to.clone(), *id);
            }
        }
        true
    }

    fn id(&self) -> u64 {
        match self {
            DirOp::Create { id, .. } | DirOp::Remove { id, .. } | DirOp::Rename { id, .. } => *id,
        }
    }
}

/// Name to file id, as calls see it and as a power loss would leave it.
///
/// Invariant: replaying `pending` on `durable` gives `live`.
#[derive(Clone, Debug, Default)]
pub(super) struct Directory {
    /// What every call sees.
    pub(super) live: BTreeMap<String, u64>,
    /// What the last successful `sync_dir` made durable.
    pub(super) durable: BTreeMap<String, u64>,
    /// Changes since then, oldest first.
    pending: Vec<DirOp>,
}

impl Directory {
    pub(super) fn create(&mut self, name: &str, id: u64) {
        let previous = self.live.insert(name.to_owned(), id);
        assert!(previous.is_none(), "create over existing {name}");
        self.pending.push(DirOp::Create { name: name.to_owned(), id });
    }

    pub(super) fn remove(&mut self, name: &str) {
        let Some(id) = self.live.remove(name) else { unreachable!("remove of missing {name}") };
        self.pending.push(DirOp::Remove { name: name.to_owned(), id });
    }

    pub(super) fn rename(&mut self, from: &str, to: &str) {
        let Some(id) = self.live.remove(from) else { unreachable!("rename of missing {from}") };
        self.live.insert(to.to_owned(), id);
        self.pending.push(DirOp::Rename { from: from.to_owned(), to: to.to_owned(), id });
    }

    pub(super) fn sync(&mut self) {
        self.durable = self.live.clone();
        self.pending.clear();
    }

    /// The gentle power loss: no unsynced change survives.
    pub(super) fn lose_unsynced(&mut self) {
        self.live = self.durable.clone();
        self.pending.clear();
    }

    /// The harsh power loss: each unsynced change survives with even odds, if it still applies.
    pub(super) fn power_loss(&mut self, rng: &mut Rng, report: &mut PowerLoss) {
        for op in std::mem::take(&mut self.pending) {
            if rng.chance(1, 2) && op.replay(&mut self.durable) {
                report.dir_ops_kept += 1;
            } else {
                report.dir_ops_lost += 1;
            }
        }
        self.live = self.durable.clone();
    }

    /// Whether file `id` is named now, after a sync, or by a change a power loss may keep.
    pub(super) fn reaches(&self, id: u64) -> bool {
        self.live.values().any(|v| *v == id)
            || self.durable.values().any(|v| *v == id)
            || self.pending.iter().any(|op| op.id() == id)
    }

    /// The live name of file `id`, if it has one.
    pub(super) fn name_of(&self, id: u64) -> Option<&str> {
        self.live.iter().find(|(_, v)| **v == id).map(|(name, _)| name.as_str())
    }
}
