use super::*;

fn samples() -> Vec<Record> {
    vec![
        Record::SegmentHeader { seq: 9 },
        Record::HardState(HardState { term: 3, vote: 2, commit: 1 }),
        Record::Entry(WalEntry { index: 5, term: 3, data: b"seven".to_vec() }),
        Record::Entry(WalEntry { index: 6, term: 3, data: Vec::new() }),
        Record::Reset { index: 40, term: 2 },
        Record::BatchEnd { records: 4 },
    ]
}

fn encode(record: &Record, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    record.as_ref().encode(offset, &mut out);
    out
}

#[test]
fn every_record_type_round_trips() {
    for record in samples() {
        let bytes = encode(&record, 64);
        assert_eq!(bytes.len() % 8, 0, "{record:?} not padded to 8");
        assert_eq!(decode(&bytes, 64), Ok((record.clone(), bytes.len())));
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for record in samples() {
        let bytes = encode(&record, 128);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged, 128).is_err(), "{record:?}: flip of bit {bit} not detected");
        }
    }
}

#[test]
fn a_record_is_valid_only_at_its_own_offset() {
    let bytes = encode(&samples()[2], 8);
    assert!(decode(&bytes, 16).is_err(), "record copied to another offset still verifies");
}

#[test]
fn torn_and_zeroed_records_are_invalid() {
    for record in samples() {
        let bytes = encode(&record, 0);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 0).is_err(), "{record:?} cut at {cut} verifies");
        }
    }
    assert!(decode(&[0; 64], 0).is_err(), "zeros verify");
}

#[test]
fn a_later_batch_after_damage_is_found_past_garbage() {
    let mut bytes = Vec::new();
    let records = [samples()[2].clone(), Record::BatchEnd { records: 1 }, samples()[3].clone()];
    for record in &records {
        let offset = bytes.len() as u64;
        record.as_ref().encode(offset, &mut bytes);
    }
    let second = encode(&records[0], 0).len() as u64;
    // Damage the first record: the marker and the record after it prove a later batch.
    bytes[3] ^= 0x40;
    assert_eq!(record_after_batch_end(&bytes, 0), Some(second + encoded_len(8)));
    // Without a record after the marker the damage may be a torn unfinished batch.
    let without_last = &bytes[..(second + encoded_len(8)) as usize];
    assert_eq!(record_after_batch_end(without_last, 0), None);
}
