use super::*;

const BINDING: Binding = Binding { log_id: 0x005E_ED1D, seq: 9 };

fn samples() -> Vec<Record> {
    vec![
        Record::SegmentHeader { seq: 9, log_id: BINDING.log_id, previous: 8, sealed_last: 0x1234_5678 },
        Record::HardState(HardState { term: 3, vote: 2, commit: 1 }),
        Record::Entry(WalEntry { index: 5, term: 3, data: b"seven".to_vec() }),
        Record::Entry(WalEntry { index: 6, term: 3, data: Vec::new() }),
        Record::Reset { index: 40, term: 2 },
        Record::BatchEnd { records: 4, previous: 0xDEAD_BEEF, chain: 7 },
    ]
}

fn encode(record: &Record, binding: Binding, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    record.as_ref().encode(binding, offset, 3, &mut out);
    out
}

#[test]
fn every_record_type_round_trips() {
    for record in samples() {
        let mut bytes = Vec::new();
        let checksum = record.as_ref().encode(BINDING, 64, BATCH_MAX, &mut bytes);
        assert_eq!(bytes.len() % 8, 0, "{record:?} not padded to 8");
        let expected = Decoded { record: record.clone(), batch: BATCH_MAX, checksum, len: bytes.len() };
        assert_eq!(decode(&bytes, BINDING, 64), Ok(expected));
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for record in samples() {
        let bytes = encode(&record, BINDING, 128);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged, BINDING, 128).is_err(), "{record:?}: flip of bit {bit} not detected");
        }
    }
}

#[test]
fn a_record_is_valid_only_at_its_own_offset_segment_and_log() {
    // Finding 4 of issue 14: a stale block of a removed segment read back at the same offset of a new
    // segment (or of another log's segment) must not verify.
    let bytes = encode(&samples()[2], BINDING, 96);
    assert!(decode(&bytes, BINDING, 96).is_ok());
    assert!(decode(&bytes, BINDING, 104).is_err(), "record copied to another offset still verifies");
    let other_segment = Binding { seq: BINDING.seq + 1, ..BINDING };
    assert!(decode(&bytes, other_segment, 96).is_err(), "record of a removed segment verifies in a new one");
    let other_log = Binding { log_id: BINDING.log_id + 1, ..BINDING };
    assert!(decode(&bytes, other_log, 96).is_err(), "record of another log verifies");
}

#[test]
fn a_segment_header_verifies_against_its_own_log_id() {
    // Recovery learns the log id from the header, so the header verifies whatever binding it is read with,
    // but not in another segment.
    let bytes = encode(&samples()[0], BINDING, 0);
    assert!(decode(&bytes, Binding { log_id: 1, seq: 9 }, 0).is_ok());
    assert!(decode(&bytes, Binding { log_id: BINDING.log_id, seq: 10 }, 0).is_err());
    assert_eq!(unverified_log_id(&bytes), Some(BINDING.log_id));
}

#[test]
fn torn_and_zeroed_records_are_invalid() {
    for record in samples() {
        let bytes = encode(&record, BINDING, 0);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], BINDING, 0).is_err(), "{record:?} cut at {cut} verifies");
        }
    }
    assert!(decode(&[0; 64], BINDING, 0).is_err(), "zeros verify");
}

#[test]
fn a_version_1_header_is_recognised() {
    // The v1 layout: 24-byte payload (magic, version 1, reserved, sequence), checksum seeded with the offset.
    let mut bytes = vec![24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(b"TALLYWAL");
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&0u64.to_le_bytes()), &bytes[..12]);
    let crc = crc32c::crc32c_append(crc, &bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    assert!(is_version_1_header(&bytes));
    assert!(decode(&bytes, BINDING, 0).is_err(), "a v1 header decodes as v2");
    assert!(!is_version_1_header(&encode(&samples()[0], BINDING, 0)));
}

#[test]
fn records_after_damage_are_found_past_garbage_with_their_batches() {
    let mut bytes = Vec::new();
    let records = [
        (samples()[2].clone(), 4),
        (Record::BatchEnd { records: 1, previous: 0, chain: 0 }, 4),
        (samples()[3].clone(), 5),
    ];
    for (record, batch) in &records {
        let offset = bytes.len() as u64;
        record.as_ref().encode(BINDING, offset, *batch, &mut bytes);
    }
    let second = encode(&records[0].0, BINDING, 0).len() as u64;
    // Damage the first record: the marker and the record after it are still found, with their batches.
    bytes[3] ^= 0x40;
    let found = records_after_damage(&bytes, BINDING, 0);
    let summary: Vec<(u64, u64)> = found.iter().map(|probed| (probed.offset, probed.decoded.batch)).collect();
    assert_eq!(summary, [(second, 4), (second + BATCH_END_LEN, 5)]);
    // Read as another segment, nothing verifies.
    assert!(records_after_damage(&bytes, Binding { seq: 10, ..BINDING }, 0).is_empty());
}

#[test]
fn a_batch_number_past_the_bound_is_refused() {
    // The writer counts on from the last batch recovery saw: the bound leaves it room.
    let mut bytes = Vec::new();
    samples()[1].as_ref().encode(BINDING, 0, BATCH_MAX + 1, &mut bytes);
    let error = decode(&bytes, BINDING, 0).expect_err("batch past the bound");
    assert!(error.contains("batch number"), "{error}");
}
