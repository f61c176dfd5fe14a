//! Unit tests of the message writer.

use super::*;
use crate::{BodyType, Recipient, Spool};
use std::io::Read;

fn envelope(spool: &Spool) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: 0,
        sender: String::new(),
        client_ip: "::1".into(),
        helo: "test".into(),
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        prepend: None,
        recipients: vec![Recipient {
            address: "a@b".into(),
            original: "a@b".into(),
            orcpt: None,
            notify: None,
            mailbox: None,
        }],
    }
}

/// Deterministic, non-repeating-per-chunk content.
fn chunk(n: u64, out: &mut [u8]) {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in out.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

#[test]
fn big_message_stays_bounded_in_memory_and_reads_back_identical() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 320; // 20 MiB
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut writer = spool.writer(envelope(&spool)).unwrap();
    let mut data = vec![0u8; CHUNK];
    let mut max_capacity = 0;
    for n in 0..CHUNKS {
        chunk(n, &mut data);
        // Odd split so writes straddle the buffer boundary.
        writer.write(&data[..1000]).unwrap();
        writer.write(&data[1000..]).unwrap();
        max_capacity = max_capacity.max(writer.buffer_capacity());
        assert!(writer.buffer_capacity() <= BUFFER_CAP, "chunk {n}");
    }
    assert!(max_capacity > 0);
    assert_eq!(writer.len(), CHUNKS * CHUNK as u64);
    let id = writer.commit().unwrap();

    let mut body = spool.body(&id).unwrap();
    assert_eq!(body.len(), CHUNKS * CHUNK as u64);
    let mut got = vec![0u8; CHUNK];
    for n in 0..CHUNKS {
        chunk(n, &mut data);
        body.read_exact(&mut got).unwrap();
        assert!(got == data, "chunk {n} differs");
    }
    assert_eq!(body.read(&mut got).unwrap(), 0, "trailing bytes");
    assert_eq!(spool.load(&id).unwrap().size, CHUNKS * CHUNK as u64);
}

#[test]
fn one_huge_write_is_not_copied_into_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut writer = spool.writer(envelope(&spool)).unwrap();
    let data = vec![b'x'; 3 * BUFFER_CAP + 7];
    writer.write(b"head").unwrap();
    writer.write(&data).unwrap();
    assert!(writer.buffer_capacity() <= BUFFER_CAP);
    let id = writer.commit().unwrap();
    let mut body = Vec::new();
    spool.body(&id).unwrap().read_to_end(&mut body).unwrap();
    assert_eq!(&body[..4], b"head");
    assert_eq!(&body[4..], &data[..]);
}

#[test]
fn small_message_never_touches_disk_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut writer = spool.writer(envelope(&spool)).unwrap();
    writer.write(&[b'y'; 5000]).unwrap();
    assert!(writer.file.is_none());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    writer.commit().unwrap();
}

/// Files in `tmp/`.
fn temporaries(spool: &Spool) -> Vec<String> {
    let entries = std::fs::read_dir(spool.path().join("tmp")).unwrap();
    entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

fn body_of(spool: &Spool, id: &QueueId) -> Vec<u8> {
    let mut body = Vec::new();
    spool.body(id).unwrap().read_to_end(&mut body).unwrap();
    body
}

/// `n` bytes of varied content starting at chunk `seed`.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut data = vec![0u8; n];
    chunk(seed, &mut data);
    data
}

/// A copy of `env` with prepended header fields and another recipient, so
/// that its record line is longer.
fn amended(env: &Envelope, prepend: &str) -> Envelope {
    let mut env = env.clone();
    env.prepend = Some(prepend.to_owned());
    env.recipients.push(Recipient {
        address: "c@d".into(),
        original: "C@d".into(),
        orcpt: None,
        notify: None,
        mailbox: Some(("d".into(), "c".into())),
    });
    env
}

#[test]
fn content_of_a_message_in_memory_up_to_exactly_the_buffer_cap() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut writer = spool.writer(envelope(&spool)).unwrap();
    assert_eq!(writer.content().unwrap(), b"");
    let data = bytes(1, BUFFER_CAP);
    writer.write(&data[..1000]).unwrap();
    assert_eq!(writer.content().unwrap(), &data[..1000]);
    writer.write(&data[1000..]).unwrap();
    // Exactly at the cap: still in memory.
    assert!(writer.file.is_none());
    assert_eq!(writer.content().unwrap(), data);
    // One byte more spills everything buffered, then buffers the byte.
    writer.write(b"!").unwrap();
    assert!(writer.file.is_some());
    assert_eq!(writer.buf, b"!");
    assert_eq!(writer.content().unwrap(), [&data[..], b"!"].concat());
    let id = writer.commit().unwrap();
    assert_eq!(body_of(&spool, &id), [&data[..], b"!"].concat());
}

#[test]
fn content_of_a_spilled_message_is_file_then_buffer_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut writer = spool.writer(envelope(&spool)).unwrap();
    let mut expected = Vec::new();
    // A huge write straight to the file, then small ones into the buffer.
    for (n, len) in [(0, 7), (1, 3 * BUFFER_CAP + 5), (2, 1000), (3, BUFFER_CAP - 10), (4, 999)] {
        let data = bytes(n, len);
        writer.write(&data).unwrap();
        expected.extend_from_slice(&data);
        assert_eq!(writer.content().unwrap(), expected, "after write {n}");
    }
    assert!(writer.file.is_some() && !writer.buf.is_empty());
    let id = writer.commit().unwrap();
    assert_eq!(body_of(&spool, &id), expected);
    assert_eq!(spool.load(&id).unwrap().size, expected.len() as u64);
}

#[test]
fn set_envelope_on_a_message_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let env = envelope(&spool);
    let mut writer = spool.writer(env.clone()).unwrap();
    writer.write(b"Subject: x\r\n\r\nhello\r\n").unwrap();
    let new = amended(&env, "Authentication-Results: mx.example; spf=pass\r\n");
    writer.set_envelope(new.clone()).unwrap();
    assert!(temporaries(&spool).is_empty());
    assert_eq!(writer.content().unwrap(), b"Subject: x\r\n\r\nhello\r\n");
    let id = writer.commit().unwrap();
    assert_eq!(spool.load(&id).unwrap().envelope, new);
    assert_eq!(body_of(&spool, &id), b"Subject: x\r\n\r\nhello\r\n");
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope, new);
    assert_eq!(recovered[0].states.len(), 2);
    assert_eq!(body_of(&spool, &id), b"Subject: x\r\n\r\nhello\r\n");
}

#[test]
fn set_envelope_on_a_spilled_message_rewrites_its_record_line() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let env = envelope(&spool);
    let id = env.id.clone();
    let mut writer = spool.writer(env.clone()).unwrap();
    let first = bytes(5, 2 * BUFFER_CAP + 3);
    writer.write(&first[..100]).unwrap();
    writer.write(&first[100..]).unwrap();
    assert!(writer.file.is_some());
    // Longer, then shorter than the original: the body moves both ways.
    let longer = amended(&env, &"X-Long: header\r\n".repeat(500));
    writer.set_envelope(longer).unwrap();
    assert_eq!(writer.content().unwrap(), first);
    assert_eq!(temporaries(&spool), [id.to_string()]);
    // The new file takes further writes, both buffered and spilled.
    let second = bytes(6, BUFFER_CAP + 17);
    writer.write(&second).unwrap();
    let expected = [&first[..], &second[..]].concat();
    let shorter = Envelope { prepend: Some("X-Short: 1\r\n".into()), ..env.clone() };
    writer.set_envelope(shorter.clone()).unwrap();
    assert_eq!(writer.content().unwrap(), expected);
    assert_eq!(writer.len(), expected.len() as u64);
    assert_eq!(writer.commit().unwrap(), id);
    assert!(temporaries(&spool).is_empty());
    assert_eq!(spool.load(&id).unwrap().envelope, shorter);
    assert_eq!(spool.load(&id).unwrap().size, expected.len() as u64);
    assert_eq!(body_of(&spool, &id), expected);
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope, shorter);
    assert_eq!(body_of(&spool, &id), expected);
    assert_eq!(std::fs::read_dir(dir.path().join("corrupt")).unwrap().count(), 0);
}

#[test]
fn set_envelope_refuses_another_id_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let env = envelope(&spool);
    let mut writer = spool.writer(env.clone()).unwrap();
    writer.write(&bytes(7, BUFFER_CAP + 1)).unwrap();
    let other = Envelope { id: spool.new_id(), ..env.clone() };
    let err = writer.set_envelope(other.clone()).unwrap_err();
    assert!(
        matches!(&err, SpoolError::EnvelopeIdMismatch { writer, envelope } if *writer == env.id && *envelope == other.id),
        "{err:?}"
    );
    let id = writer.commit().unwrap();
    assert_eq!(spool.load(&id).unwrap().envelope, env);
}

#[test]
fn abort_after_set_envelope_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    for len in [10, BUFFER_CAP + 1, 3 * BUFFER_CAP] {
        let env = envelope(&spool);
        let mut writer = spool.writer(env.clone()).unwrap();
        writer.write(&bytes(8, len)).unwrap();
        writer.set_envelope(amended(&env, "X-A: b\r\n")).unwrap();
        drop(writer);
        assert!(temporaries(&spool).is_empty(), "{len} bytes");
    }
    assert!(spool.list().unwrap().is_empty());
}

#[test]
fn a_failed_rewrite_fails_the_writer_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let env = envelope(&spool);
    let mut writer = spool.writer(env.clone()).unwrap();
    writer.write(&bytes(9, BUFFER_CAP + 1)).unwrap();
    // Something in the way of tmp/ID.new.
    let scratch = dir.path().join("tmp").join(format!("{}.new", env.id));
    std::fs::create_dir(&scratch).unwrap();
    let err = writer.set_envelope(amended(&env, "X-A: b\r\n")).unwrap_err();
    assert!(matches!(err, SpoolError::Io { op: "create", .. }), "{err:?}");
    assert!(matches!(writer.write(b"x"), Err(SpoolError::WriterFailed)));
    assert!(matches!(writer.content(), Err(SpoolError::WriterFailed)));
    assert!(matches!(writer.set_envelope(env.clone()), Err(SpoolError::WriterFailed)));
    assert!(matches!(writer.commit(), Err(SpoolError::WriterFailed)));
    std::fs::remove_dir(&scratch).unwrap();
    assert!(temporaries(&spool).is_empty());
    assert!(spool.list().unwrap().is_empty());
}
