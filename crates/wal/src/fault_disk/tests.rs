use super::*;

fn read_all(disk: &mut FaultDisk, name: &str) -> Vec<u8> {
    let mut file = disk.open(name).expect("open");
    let mut bytes = vec![0; file.len() as usize];
    file.read_at(0, &mut bytes).expect("read");
    bytes
}

#[test]
fn crash_keeps_synced_bytes_and_loses_the_rest() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    file.append(b"synced").expect("append");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync dir");
    file.append(b" lost").expect("append");
    file.write_at(0, b"S").expect("overwrite");
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"synced");
    // Phase: the old handle is stale after the crash.
    assert!(file.append(b"x").is_err(), "stale handle wrote");
}

#[test]
fn crash_undoes_unsynced_directory_changes() {
    let mut disk = FaultDisk::new(1);
    let mut kept = disk.create("kept").expect("create");
    kept.append(b"k").expect("append");
    kept.sync().expect("sync");
    disk.sync_dir().expect("sync dir");
    // Phase: a synced file whose name never became durable disappears.
    let mut orphan = disk.create("orphan").expect("create");
    orphan.append(b"o").expect("append");
    orphan.sync().expect("sync");
    disk.remove("kept").expect("remove");
    disk.crash();
    assert_eq!(disk.file_names(), ["kept"]);
    // Phase: a rename is undone unless the directory was synced after it.
    disk.rename("kept", "renamed").expect("rename");
    disk.crash();
    assert_eq!(disk.file_names(), ["kept"]);
    disk.rename("kept", "renamed").expect("rename");
    disk.sync_dir().expect("sync dir");
    disk.crash();
    assert_eq!(disk.file_names(), ["renamed"]);
    assert_eq!(read_all(&mut disk, "renamed"), b"k");
}

#[test]
fn truncation_is_durable_only_after_sync() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync dir");
    file.append(b"abcdef").expect("append");
    file.sync().expect("sync");
    file.truncate(2).expect("truncate");
    file.truncate(4).expect("extend with zeros");
    assert_eq!(read_all(&mut disk, "f"), b"ab\0\0");
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"abcdef");
    let mut file = disk.open("f").expect("open");
    file.truncate(2).expect("truncate");
    file.truncate(4).expect("extend");
    file.sync().expect("sync");
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"ab\0\0");
}

#[test]
fn failed_sync_makes_nothing_durable_and_stops_writes() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync 1");
    disk.fail_sync_after(1);
    file.append(b"one").expect("append");
    file.sync().expect("sync 2 succeeds");
    file.append(b"two").expect("append");
    assert!(file.sync().is_err(), "sync 3 must fail");
    assert_eq!(disk.syncs(), 3);
    assert!(file.append(b"x").is_err(), "write after a failed sync");
    assert!(disk.create("g").is_err(), "create after a failed sync");
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"one");
    // Phase: the crash (a reboot) clears the failure.
    disk.open("f").expect("open").append(b"!").expect("append after reboot");
}

#[test]
fn torn_write_keeps_a_strict_prefix_of_the_last_write() {
    for seed in 0..200 {
        let mut disk = FaultDisk::new(seed);
        let mut file = disk.create("f").expect("create");
        disk.sync_dir().expect("sync dir");
        file.append(b"durable.").expect("append");
        file.sync().expect("sync");
        let last = b"0123456789abcdef0123456789abcdef";
        file.append(last).expect("append");
        assert!(disk.crash_tearing(), "seed {seed}: nothing torn");
        let bytes = read_all(&mut disk, "f");
        assert!(bytes.starts_with(b"durable."), "seed {seed}: durable bytes damaged");
        let kept = bytes.len() - 8;
        assert!(kept < last.len(), "seed {seed}: the whole write survived");
        let garbage = bytes[8..].iter().zip(last).filter(|(a, b)| a != b).count();
        assert!(garbage <= 16, "seed {seed}: {garbage} garbage bytes");
    }
}

#[test]
fn flip_bit_corrupts_durable_data() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync dir");
    file.append(&[0b0000_0001]).expect("append");
    file.sync().expect("sync");
    disk.flip_bit("f", 0, 1);
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), [0b0000_0011]);
}

#[test]
fn preallocated_zeros_cost_no_memory() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    file.append(&vec![0; 8 << 20]).expect("append zeros");
    file.write_at(100, b"record").expect("write");
    file.sync().expect("sync");
    let state = disk.lock();
    let data = &state.files.values().next().expect("one file").data;
    assert_eq!(data.len, 8 << 20);
    assert_eq!(data.head.len(), 106);
}

#[test]
fn process_crash_keeps_the_page_cache_but_not_durability() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    file.append(b"synced").expect("append");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync dir");
    file.append(b" cached").expect("append");
    disk.crash_process();
    assert!(file.append(b"x").is_err(), "stale handle wrote");
    // Phase: the restarted process reads the unsynced bytes from the page cache.
    assert_eq!(read_all(&mut disk, "f"), b"synced cached");
    // Phase: they were never durable, so a power loss takes them.
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"synced");
}

#[test]
fn a_failed_sync_marks_pages_clean_so_a_later_sync_does_not_persist_them() {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create("f").expect("create");
    file.append(b"synced").expect("append");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync dir");
    file.append(b" dropped").expect("append");
    disk.fail_sync_after(0);
    assert!(file.sync().is_err(), "injected failure");
    disk.crash_process();
    let mut file = disk.open("f").expect("open");
    file.sync().expect("sync after restart");
    assert_eq!(read_all(&mut disk, "f"), b"synced dropped", "the page cache still holds them");
    // Phase: the successful sync made the length durable but not the bytes marked clean (they read as
    // zeros after a power loss); rewriting them makes them durable.
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"synced\0\0\0\0\0\0\0\0");
    let mut file = disk.open("f").expect("open");
    file.write_at(6, b" dropped").expect("rewrite");
    file.sync().expect("sync");
    disk.crash();
    assert_eq!(read_all(&mut disk, "f"), b"synced dropped");
}
