//! The conformance suite on both disks: the production one in a temporary directory, and the
//! in-memory fault-injecting one (with no fault injected).

use std::collections::BTreeMap;

use tally_wal::{FaultDisk, RealDisk, testing};

#[test]
fn real_disk_passes_the_suite() {
    let root = tempfile::tempdir().expect("temporary directory");
    testing::suite(|name| RealDisk::open(&root.path().join(name)).expect("open real disk"));
}

#[test]
fn fault_disk_passes_the_suite() {
    let mut disks: BTreeMap<String, FaultDisk> = BTreeMap::new();
    testing::suite(|name| disks.entry(name.to_owned()).or_insert_with(|| FaultDisk::new(7)).clone());
}
