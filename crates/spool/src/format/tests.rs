use super::*;
use crate::{BodyType, Recipient};

fn envelope(n: u64, rcpts: usize) -> Envelope {
    Envelope {
        id: format!("{n:016X}").parse().unwrap(),
        received_at: 1,
        sender: "a@b\n\"x\"".into(),
        client_ip: "127.0.0.1".into(),
        helo: "h".into(),
        body: BodyType::EightBitMime,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        prepend: None,
        recipients: (0..rcpts)
            .map(|i| Recipient {
                address: format!("r{i}@x"),
                original: format!("R{i}@x"),
                orcpt: None,
                notify: Some(crate::Notify::NEVER),
                mailbox: None,
            })
            .collect(),
    }
}

/// A batch file of the given (envelope, body) pairs.
fn batch(messages: &[(Envelope, &[u8])]) -> Vec<u8> {
    let mut file = batch_header(messages.len()).to_vec();
    for (env, body) in messages {
        let mut line = encode_record_line(env).unwrap();
        set_body_len(&mut line, body.len() as u64);
        file.extend(line);
        file.extend_from_slice(body);
    }
    file
}

#[test]
fn record_line_layout() {
    let env = envelope(0xAB, 1);
    let mut line = encode_record_line(&env).unwrap();
    set_body_len(&mut line, 5120);
    let json = serde_json::to_string(&env).unwrap();
    let expected = format!("M 00000000000000AB {:020} 00000000000000005120 {json}\n", json.len());
    assert_eq!(String::from_utf8(line).unwrap(), expected);
    assert_eq!(&batch_header(3), b"DAKIYA-SPOOL 2 00000003\n");
    assert_eq!(&batch_header(12_345_678), b"DAKIYA-SPOOL 2 12345678\n");
    assert_eq!(SPILLED_BODY_LEN_AT, 24 + 40);
}

#[test]
fn length_fields_are_twenty_zero_padded_digits() {
    assert_eq!(&len_field(0), b"00000000000000000000");
    assert_eq!(&len_field(5120), b"00000000000000005120");
    assert_eq!(&len_field(u64::MAX), b"18446744073709551615");
    for len in [1, 9, 10, 99, 100, 1 << 40, u64::MAX - 1] {
        assert_eq!(len_field(len).to_vec(), format!("{len:020}").into_bytes());
    }
}

#[test]
fn batch_round_trip_finds_every_message_and_its_extents() {
    let (a, b, c) = (envelope(1, 2), envelope(2, 1), envelope(3, 3));
    let file = batch(&[(a.clone(), b"first body"), (b.clone(), b""), (c.clone(), b"\r\n.\r\nM 0000\n")]);
    let found = read_batch(&file[..], file.len() as u64).unwrap();
    assert_eq!(found.len(), 3);
    for (f, (env, body)) in found.iter().zip([(a, &b"first body"[..]), (b, b""), (c, b"\r\n.\r\nM 0000\n")]) {
        assert_eq!(f.envelope, env);
        let e = f.extent;
        assert_eq!(&file[e.body_off as usize..(e.body_off + e.body_len) as usize], body);
        assert_eq!(read_envelope(&file[..], &e).unwrap(), env);
    }
}

#[test]
fn every_truncation_of_a_batch_is_corrupt() {
    let file = batch(&[(envelope(1, 1), b"hello"), (envelope(2, 1), b"world, longer")]);
    for cut in 0..file.len() {
        match read_batch(&file[..cut], cut as u64) {
            Err(DecodeError::Corrupt(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Trailing garbage, and lengths that do not match, too.
    let mut longer = file.clone();
    longer.extend_from_slice(b"x");
    assert!(matches!(read_batch(&longer[..], longer.len() as u64), Err(DecodeError::Corrupt(_))));
    let mut wrong = file.clone();
    let at = BATCH_HEADER_LEN + BODY_LEN_AT + LEN_DIGITS - 1;
    wrong[at] = b'6'; // body length 5 -> 6
    assert!(matches!(read_batch(&wrong[..], wrong.len() as u64), Err(DecodeError::Corrupt(_))));
}

#[test]
fn record_whose_envelope_names_another_id_is_corrupt() {
    let mut file = batch(&[(envelope(1, 1), b"x")]);
    let at = BATCH_HEADER_LEN + RECORD_MARK.len() + QueueId::LEN - 1;
    file[at] = b'2';
    assert!(matches!(read_batch(&file[..], file.len() as u64), Err(DecodeError::Corrupt(r)) if r.contains("envelope")));
}

#[test]
fn version_1_files_are_read() {
    let env = envelope(7, 2);
    let mut file = format!("DAKIYA-SPOOL 1 {:020}\n", 4).into_bytes();
    file.extend(serde_json::to_vec(&env).unwrap());
    file.extend(b"\nbody");
    let found = read_batch(&file[..], file.len() as u64).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].envelope, env);
    assert_eq!(&file[found[0].extent.body_off as usize..], b"body");
    let short = &file[..file.len() - 1];
    assert!(matches!(read_batch(short, short.len() as u64), Err(DecodeError::Corrupt(_))));
}

#[test]
fn garbage_and_foreign_versions() {
    let cases: [(&[u8], bool); 15] = [
        (b"", false),
        (b"From: x\r\n\r\nhello", false),
        (b"DAKIYA-SPOOL 1 123\n{}\n", false),
        (b"DAKIYA-SPOOL 1 00000000000000000000\n{\"id\":\"../x\"}\n", false),
        (b"DAKIYA-SPOOL 1 00000000000000000000\n{\"id\"", false),
        (b"DAKIYA-SPOOL 2\n", false),
        (b"DAKIYA-SPOOL 2 00000000\n", false),
        (b"DAKIYA-SPOOL 2 00000001\n", false),
        (b"DAKIYA-SPOOL 2 00000001\nM ../x", false),
        (b"DAKIYA-SPOOL 3\n", false),
        (b"DAKIYA-SPOOL 3 00000001 0000000\n", false),
        (b"DAKIYA-SPOOL 3 00000001 0000000G\nM ", false),
        (b"DAKIYA-SPOOL 3 00000000 00000000\n", false),
        (b"DAKIYA-SPOOL 3 00000001 00000000\n", false),
        (b"DAKIYA-SPOOL 5\nwhatever", true),
    ];
    for (bytes, is_version) in cases {
        match read_batch(bytes, bytes.len() as u64) {
            Err(DecodeError::Version(v)) => assert!(is_version, "{v}"),
            Err(DecodeError::Corrupt(_)) => assert!(!is_version, "{:?}", String::from_utf8_lossy(bytes)),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }
}

/// A sealed batch (version 3) as a commit round writes it: version 2's records after a
/// header with the count and a CRC-32 of every byte after the header.
fn sealed(messages: &[(Envelope, &[u8])]) -> Vec<u8> {
    let records = batch(messages).split_off(BATCH_HEADER_LEN);
    let mut file = sealed_header(messages.len(), crc32fast::hash(&records)).to_vec();
    file.extend(records);
    file
}

#[test]
fn sealed_header_layout() {
    assert_eq!(&sealed_header(3, 0x0123_abcd), b"DAKIYA-SPOOL 3 00000003 0123abcd\n");
    assert_eq!(&sealed_header(12_345_678, u32::MAX), b"DAKIYA-SPOOL 3 12345678 ffffffff\n");
    assert_eq!(&sealed_header(1, 0), b"DAKIYA-SPOOL 3 00000001 00000000\n");
    assert_eq!(SEALED_HEADER_LEN, 33);
}

#[test]
fn sealed_batch_round_trip() {
    let (a, b) = (envelope(1, 2), envelope(2, 1));
    let file = sealed(&[(a.clone(), b"first body"), (b.clone(), b"")]);
    let found = read_batch(&file[..], file.len() as u64).unwrap();
    assert_eq!(found.iter().map(|f| &f.envelope).collect::<Vec<_>>(), [&a, &b]);
    let e = found[0].extent;
    assert_eq!(e.env_off, (SEALED_HEADER_LEN + RECORD_PREFIX) as u64);
    assert_eq!(&file[e.body_off as usize..(e.body_off + e.body_len) as usize], b"first body");
    // Large enough for the checksum to be read in several pieces.
    let big = vec![b'x'; 200_000];
    let file = sealed(&[(a, &big), (b, b"y")]);
    assert_eq!(read_batch(&file[..], file.len() as u64).unwrap().len(), 2);
}

/// What a crash between a round's rename and its fsync can leave in `queue/NAME.msg`: any
/// byte of a body not yet written (a page of zeros, or of the file's old contents) breaks the
/// seal, though every record still has the right shape.
#[test]
fn a_sealed_batch_with_any_body_byte_changed_is_corrupt() {
    let body = b"Subject: x\r\n\r\nthe body of a message\r\n";
    let file = sealed(&[(envelope(1, 1), body), (envelope(2, 1), body)]);
    let found = read_batch(&file[..], file.len() as u64).unwrap();
    for f in &found {
        for at in f.extent.body_off..f.extent.body_off + f.extent.body_len {
            let mut torn = file.clone();
            torn[at as usize] ^= 0x20;
            match read_batch(&torn[..], torn.len() as u64) {
                Err(DecodeError::Corrupt(reason)) => assert!(reason.contains("checksum mismatch"), "{reason}"),
                other => panic!("byte {at}: {other:?}"),
            }
        }
    }
    // A wrong checksum in the header, too; and every truncation.
    let mut wrong = file.clone();
    wrong[SEALED_HEADER_LEN - 2] = if wrong[SEALED_HEADER_LEN - 2] == b'0' { b'1' } else { b'0' };
    assert!(matches!(read_batch(&wrong[..], wrong.len() as u64), Err(DecodeError::Corrupt(_))));
    for cut in 0..file.len() {
        assert!(matches!(read_batch(&file[..cut], cut as u64), Err(DecodeError::Corrupt(_))), "cut at {cut}");
    }
}

/// `require_tls` (RFC 8689 REQUIRETLS) is written only when set, so envelopes without it
/// stay as before, and older spools (without the field) read as false.
#[test]
fn require_tls_is_written_only_when_set_and_defaults_to_false() {
    let plain = envelope(1, 1);
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("require_tls"), "{json}");
    let back: Envelope = serde_json::from_str(&json).unwrap();
    assert!(!back.require_tls);
    let strict = Envelope { require_tls: true, ..plain };
    let json = serde_json::to_string(&strict).unwrap();
    assert!(json.contains("\"require_tls\":true"), "{json}");
    assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap(), strict);
}

/// A slot's batch (version 4): the records, a header that also gives their length, and
/// after them whatever the slot held before.
fn slot(messages: &[(Envelope, &[u8])], stale: &[u8]) -> Vec<u8> {
    let records = batch(messages)[BATCH_HEADER_LEN..].to_vec();
    let mut file = slot_header(messages.len(), crc32fast::hash(&records), records.len() as u64).to_vec();
    file.extend(records);
    file.extend_from_slice(stale);
    file
}

#[test]
fn a_slot_is_read_up_to_its_length_and_its_stale_tail_is_ignored() {
    let (a, b) = (envelope(1, 1), envelope(2, 2));
    let header = slot_header(2, 0x5f1c09ab, 1234);
    assert_eq!(&header[..], b"DAKIYA-SPOOL 4 00000002 5f1c09ab 00000000000000001234\n");
    assert_eq!(header.len(), SLOT_HEADER_LEN);
    // After the records: zeros, an older batch's bytes, or nothing at all.
    let old = slot(&[(envelope(9, 1), b"an older, longer batch that was here before")], &[0; 64]);
    for stale in [&[0u8; 4096][..], &old[..], b""] {
        let file = slot(&[(a.clone(), b"first"), (b.clone(), b"second")], stale);
        let found = read_batch(&file[..], file.len() as u64).unwrap();
        assert_eq!(found.iter().map(|f| f.envelope.clone()).collect::<Vec<_>>(), [a.clone(), b.clone()]);
        let e = found[1].extent;
        assert_eq!(&file[e.body_off as usize..(e.body_off + e.body_len) as usize], b"second");
    }
}

/// What a crash while a slot is rewritten can leave: any body byte of the new batch not yet
/// written, a length or count that does not match, records running past the slot. Each is
/// corrupt, and so is a first line of zeros (a free slot, which recovery looks for first).
#[test]
fn a_torn_slot_is_corrupt() {
    let file = slot(&[(envelope(1, 1), b"the body"), (envelope(2, 1), b"another")], &[0; 256]);
    let found = read_batch(&file[..], file.len() as u64).unwrap();
    for f in &found {
        for at in f.extent.body_off..f.extent.body_off + f.extent.body_len {
            let mut torn = file.clone();
            torn[at as usize] = 0;
            assert!(matches!(read_batch(&torn[..], torn.len() as u64), Err(DecodeError::Corrupt(_))), "byte {at}");
        }
    }
    let records = found[1].extent.body_off + found[1].extent.body_len - SLOT_HEADER_LEN as u64;
    for len in [0, 1, records - 1, records + 1, records + 256, records + 10_000, u64::MAX] {
        let mut wrong = file.clone();
        wrong[SEALED_HEADER_LEN..SLOT_HEADER_LEN - 1].copy_from_slice(&len_field(len));
        assert!(matches!(read_batch(&wrong[..], wrong.len() as u64), Err(DecodeError::Corrupt(_))), "len {len}");
    }
    let mut zeroed = file.clone();
    zeroed[..SLOT_HEADER_LEN].fill(0);
    assert!(matches!(read_batch(&zeroed[..], zeroed.len() as u64), Err(DecodeError::Corrupt(_))));
}
