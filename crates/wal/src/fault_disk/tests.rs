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

/// A disk with one named, synced file `f` holding `synced`, and the open handle.
fn disk_with_synced(seed: u64, synced: &[u8]) -> (FaultDisk, FaultFile) {
    let mut disk = FaultDisk::new(seed);
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync dir");
    file.append(synced).expect("append");
    file.sync().expect("sync");
    (disk, file)
}

#[test]
fn sector_size_is_512_or_4096_from_the_seed() {
    let sizes: std::collections::BTreeSet<u64> = (0..32).map(|seed| FaultDisk::new(seed).sector_bytes()).collect();
    assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [512, 4096]);
    assert_eq!(FaultDisk::new(7).sector_bytes(), FaultDisk::new(7).sector_bytes(), "not from the seed");
}

#[test]
fn power_loss_keeps_any_subset_of_unsynced_sectors_and_never_damages_synced_bytes() {
    // Four unsynced writes of four sectors each, byte value w + 1, after 100 synced bytes that share the
    // first sector with write 0.
    let (mut later_kept_earlier_lost, mut hole_in_a_write, mut garbage) = (false, false, false);
    for seed in 0..300 {
        let synced = [0xAA; 100];
        let (mut disk, mut file) = disk_with_synced(seed, &synced);
        let sector = disk.sector_bytes() as usize;
        let writes = 4;
        for w in 0..writes {
            file.append(&vec![w as u8 + 1; if w == 0 { 4 * sector - 100 } else { 4 * sector }]).expect("append");
        }
        let report = disk.power_loss();
        assert_eq!(report.writes, writes as u64, "seed {seed}");
        let bytes = read_all(&mut disk, "f");
        assert_eq!(&bytes[..100], &synced, "seed {seed}: synced bytes in a shared sector damaged");
        // Phase: classify every sector of every write: persisted, lost (zeros or past the end) or garbage.
        let mut kept = vec![false; writes];
        let mut lost = vec![false; writes];
        for s in 0..writes * 4 {
            let w = s / 4;
            let lo = (s * sector).max(100);
            let hi = (s + 1) * sector;
            let content = bytes.get(lo..hi.min(bytes.len())).unwrap_or(&[]);
            if content.len() == hi - lo && content.iter().all(|b| *b == w as u8 + 1) {
                kept[w] = true;
            } else if content.iter().all(|b| *b == 0) {
                lost[w] = true;
            } else {
                garbage = true;
            }
        }
        later_kept_earlier_lost |= (1..writes).any(|w| kept[w] && (0..w).any(|e| lost[e] && !kept[e]));
        hole_in_a_write |= (0..writes).any(|w| kept[w] && lost[w]);
        // Phase: the power loss made it durable: a gentle crash now changes nothing.
        disk.crash();
        assert_eq!(read_all(&mut disk, "f"), bytes, "seed {seed}: power loss result not durable");
    }
    assert!(later_kept_earlier_lost, "no later write survived an earlier lost one");
    assert!(hole_in_a_write, "no write lost a sector between persisted ones");
    assert!(garbage, "no torn sector held garbage");
}

#[test]
fn power_loss_within_one_sector_keeps_a_version_that_includes_earlier_writes() {
    for seed in 0..200 {
        let (mut disk, mut file) = disk_with_synced(seed, b"");
        file.append(&[1; 10]).expect("first write");
        file.append(&[2; 10]).expect("second write");
        disk.power_loss();
        let bytes = read_all(&mut disk, "f");
        if bytes.len() == 20 && bytes[10..] == [2; 10] {
            assert_eq!(&bytes[..10], &[1; 10], "seed {seed}: the later write without the earlier in one sector");
        }
    }
}

#[test]
fn power_loss_keeps_any_subset_of_directory_changes_and_renames_stay_atomic() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let mut disk = FaultDisk::new(seed);
        let mut old = disk.create("target").expect("create");
        old.append(b"old").expect("append");
        old.sync().expect("sync");
        disk.sync_dir().expect("sync dir");
        // Phase: unsynced changes: two creates, a rename over `target`, a remove.
        for name in ["a", "b"] {
            let mut file = disk.create(name).expect("create");
            file.append(name.as_bytes()).expect("append");
            file.sync().expect("sync");
        }
        let mut new = disk.create("tmp").expect("create tmp");
        new.append(b"new").expect("append");
        new.sync().expect("sync");
        disk.rename("tmp", "target").expect("rename");
        disk.remove("a").expect("remove");
        disk.power_loss();
        let names = disk.file_names();
        let target = read_all(&mut disk, "target");
        assert!(target == b"old" || target == b"new", "seed {seed}: target holds {target:?}");
        assert!(!(names.contains(&"tmp".to_owned()) && target == b"new"), "seed {seed}: rename half done");
        outcomes.insert((names, target));
    }
    // `b` kept while the earlier `a` was not; the rename kept without the create of `tmp` replayed first is
    // impossible, so the new target always came with the create.
    assert!(outcomes.iter().any(|(names, _)| names.contains(&"b".to_owned()) && !names.contains(&"a".to_owned())));
    assert!(outcomes.len() >= 8, "only {} distinct directories: {outcomes:?}", outcomes.len());
}

#[test]
fn process_crash_then_power_loss_may_lose_what_the_restarted_process_read() {
    let mut lost = 0;
    for seed in 0..50 {
        let (mut disk, mut file) = disk_with_synced(seed, b"synced");
        file.append(b" cached").expect("append");
        disk.crash_process();
        assert_eq!(read_all(&mut disk, "f"), b"synced cached", "seed {seed}: page cache lost");
        disk.power_loss();
        let bytes = read_all(&mut disk, "f");
        assert!(bytes.starts_with(b"synced"), "seed {seed}");
        lost += usize::from(bytes != b"synced cached");
    }
    assert!(lost > 10, "power loss after a process crash lost the unsynced write only {lost} times");
}

#[test]
fn a_failed_sync_may_still_leave_part_of_its_writes_on_the_platter() {
    let mut persisted = 0;
    for seed in 0..50 {
        let (mut disk, mut file) = disk_with_synced(seed, b"synced");
        file.append(b" failed").expect("append");
        disk.fail_sync_after(0);
        assert!(file.sync().is_err(), "injected failure");
        disk.power_loss();
        let bytes = read_all(&mut disk, "f");
        assert!(bytes.starts_with(b"synced"), "seed {seed}");
        persisted += usize::from(bytes == b"synced failed");
    }
    assert!(persisted > 5, "the failed writeback never reached the platter ({persisted} of 50)");
}

#[test]
fn latent_sector_error_fails_reads_of_that_sector_until_it_is_rewritten() {
    let (mut disk, mut file) = disk_with_synced(3, &vec![7; 3 * 4096]);
    let sector = disk.sector_bytes();
    disk.latent_sector_error("f", sector + 5);
    let mut buf = [0; 8];
    file.read_at(0, &mut buf).expect("sector 0 reads");
    file.read_at(sector - 4, &mut buf).expect_err("read across the bad sector");
    file.read_at(2 * sector, &mut buf).expect("sector 2 reads");
    // Phase: the error is on the medium: it survives a power loss.
    disk.crash();
    let mut file = disk.open("f").expect("open");
    file.read_at(sector, &mut buf).expect_err("still unreadable after a crash");
    // Phase: a write to the sector remaps it.
    file.write_at(sector, &[1; 8]).expect("rewrite");
    file.read_at(sector, &mut buf).expect("readable after the rewrite");
    assert_eq!(buf, [1; 8]);
}

#[test]
fn misdirected_write_lands_elsewhere_and_the_intended_place_keeps_its_bytes() {
    let (mut other_file, mut same_file) = (0, 0);
    for seed in 0..40 {
        let (mut disk, mut file) = disk_with_synced(seed, &vec![0; 64 * 1024]);
        let mut other = disk.create("g").expect("create g");
        other.append(&vec![0; 64 * 1024]).expect("append");
        other.sync().expect("sync");
        disk.sync_dir().expect("sync dir");
        disk.misdirect_next_write();
        file.write_at(4096, b"record").expect("write");
        file.sync().expect("sync");
        disk.power_loss();
        let [misdirection] = disk.misdirections().try_into().expect("one misdirection");
        assert_eq!((misdirection.intended_file.as_str(), misdirection.intended_offset), ("f", 4096));
        assert_ne!((misdirection.file.as_str(), misdirection.offset), ("f", 4096), "seed {seed}: not misdirected");
        assert_eq!(&read_all(&mut disk, "f")[4096..4102], &[0; 6], "seed {seed}: the intended place was written");
        let landed = read_all(&mut disk, &misdirection.file);
        let at = misdirection.offset as usize;
        assert_eq!(&landed[at..at + 6], b"record", "seed {seed}: not where it says");
        if misdirection.file == "g" { other_file += 1 } else { same_file += 1 }
    }
    assert!(other_file > 5 && same_file > 5, "other file {other_file}, same file {same_file}");
}

#[test]
fn damage_last_synced_write_hits_one_sector_of_the_newest_synced_write() {
    let mut zeroed = 0;
    for seed in 0..40 {
        // Even seeds: a write over several sectors (garbled only: zeros from a sector boundary could erase whole
        // batches); odd seeds: a write inside one sector (zeroed or garbled, past its first 8 bytes).
        let len = if seed % 2 == 0 { 5000 } else { 20 };
        let (disk, mut file) = disk_with_synced(seed, &[1; 1000]);
        file.append(&[0; 8192]).expect("preallocate");
        file.sync().expect("sync");
        file.write_at(1000, &vec![2; len]).expect("last write");
        file.sync().expect("sync");
        let end = 1000 + len as u64;
        let (lo, hi) = disk.damage_last_synced_write("f").expect("damaged");
        assert!(lo >= 1000 && hi <= end && hi - lo <= disk.sector_bytes(), "seed {seed}: damaged {lo}..{hi}");
        disk.crash();
        let bytes = disk.read_file("f").expect("file");
        assert!(bytes[..1000].iter().all(|b| *b == 1), "seed {seed}: earlier write damaged");
        assert!(bytes[lo as usize..hi as usize].iter().any(|b| *b != 2), "seed {seed}: nothing damaged");
        let mut untouched = bytes[1000..lo as usize].iter().chain(&bytes[hi as usize..end as usize]);
        assert!(untouched.all(|b| *b == 2), "seed {seed}");
        let all_zero = bytes[lo as usize..hi as usize].iter().all(|b| *b == 0);
        if len > 512 {
            assert!(!all_zero, "seed {seed}: zeros from a sector boundary inside a multi-sector write");
        } else {
            assert!(lo >= 1008, "seed {seed}: the write's first 8 bytes are kept");
            zeroed += usize::from(all_zero);
        }
    }
    assert!(zeroed > 2 && zeroed < 18, "zeroed {zeroed} of 20 one-sector writes: want both zeros and garbage");
    let mut disk = FaultDisk::new(1);
    disk.create("empty").expect("create");
    assert_eq!(disk.damage_last_synced_write("empty"), None);
}

#[test]
fn new_log_ids_are_non_zero_and_replay_from_the_seed() {
    let ids = |seed| {
        let mut disk = FaultDisk::new(seed);
        [disk.new_log_id(), disk.new_log_id()]
    };
    assert_eq!(ids(9), ids(9));
    assert_ne!(ids(9), ids(10));
    assert!(ids(9).iter().all(|id| *id != 0));
}
