//! The wire format: a 4-octet big-endian length (counting the command octet), one command
//! octet, then the data. Commands go to the milter; packets come back.

/// A command for the milter (the `SMFIC_*` codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `SMFIC_OPTNEG`: protocol version, actions we allow, protocol steps we offer.
    OptNeg { version: u32, actions: u32, protocol: u32 },
    /// `SMFIC_MACRO`: macros for the stage `for_cmd` (name, value pairs).
    Macro { for_cmd: u8, pairs: &'a [(String, String)] },
    /// `SMFIC_CONNECT`: the client's name, family, port and address.
    Connect { hostname: &'a str, family: Family, port: u16, address: &'a str },
    /// `SMFIC_HELO`.
    Helo(&'a str),
    /// `SMFIC_MAIL`: the reverse-path in angle brackets, then the ESMTP parameters.
    Mail(&'a [String]),
    /// `SMFIC_RCPT`: the forward-path in angle brackets, then the ESMTP parameters.
    Rcpt(&'a [String]),
    /// `SMFIC_DATA`.
    Data,
    /// `SMFIC_HEADER`: a field's name and value (folded lines joined by LF).
    Header { name: &'a [u8], value: &'a [u8] },
    /// `SMFIC_EOH`.
    EndOfHeaders,
    /// `SMFIC_BODY`: at most [`MILTER_CHUNK_SIZE`](crate::MILTER_CHUNK_SIZE) octets.
    Body(&'a [u8]),
    /// `SMFIC_BODYEOB`: the end of the message; its reply carries the edits.
    EndOfMessage,
    /// `SMFIC_ABORT`: the transaction is over; the connection stays.
    Abort,
    /// `SMFIC_QUIT`.
    Quit,
    /// `SMFIC_QUIT_NC`: the transaction is over and a new connection (SMTP session) follows.
    QuitNewConnection,
}

/// The client's address family in `SMFIC_CONNECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `'4'`
    Inet,
    /// `'6'`
    Inet6,
    /// `'U'`: unknown (no address is sent).
    Unknown,
}

impl Command<'_> {
    /// The command's code octet.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => b'O',
            Command::Macro { .. } => b'D',
            Command::Connect { .. } => b'C',
            Command::Helo(_) => b'H',
            Command::Mail(_) => b'M',
            Command::Rcpt(_) => b'R',
            Command::Data => b'T',
            Command::Header { .. } => b'L',
            Command::EndOfHeaders => b'N',
            Command::Body(_) => b'B',
            Command::EndOfMessage => b'E',
            Command::Abort => b'A',
            Command::Quit => b'Q',
            Command::QuitNewConnection => b'K',
        }
    }

    /// The packet, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let mut data = Vec::new();
        match self {
            Command::OptNeg { version, actions, protocol } => {
                for n in [version, actions, protocol] {
                    data.extend_from_slice(&n.to_be_bytes());
                }
            }
            Command::Macro { for_cmd, pairs } => {
                data.push(*for_cmd);
                for (name, value) in pairs.iter() {
                    cstr(&mut data, name.as_bytes());
                    cstr(&mut data, value.as_bytes());
                }
            }
            Command::Connect { hostname, family, port, address } => {
                cstr(&mut data, hostname.as_bytes());
                match family {
                    Family::Unknown => data.push(b'U'),
                    f => {
                        data.push(if *f == Family::Inet { b'4' } else { b'6' });
                        data.extend_from_slice(&port.to_be_bytes());
                        cstr(&mut data, address.as_bytes());
                    }
                }
            }
            Command::Helo(name) => cstr(&mut data, name.as_bytes()),
            Command::Mail(args) | Command::Rcpt(args) => {
                for a in args.iter() {
                    cstr(&mut data, a.as_bytes());
                }
            }
            Command::Header { name, value } => {
                cstr(&mut data, name);
                cstr(&mut data, value);
            }
            Command::Body(bytes) => data.extend_from_slice(bytes),
            _ => {}
        }
        frame(self.code(), &data)
    }
}

/// One packet's code and data.
pub fn frame(code: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    out.extend_from_slice(&((data.len() + 1) as u32).to_be_bytes());
    out.push(code);
    out.extend_from_slice(data);
    out
}

/// A string as the protocol sends it: NUL-terminated (a NUL inside is cut there).
fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    out.extend_from_slice(&s[..end]);
    out.push(0);
}

/// A packet read from the milter: its code and data, not yet interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub data: Vec<u8>,
}

/// Why the milter's bytes cannot be a packet; the connection is then unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A length of zero: not even a command octet.
    Empty,
    /// A packet longer than allowed (the milter would make us buffer without bound).
    TooLong { code: u8, len: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty packet"),
            DecodeError::TooLong { code, len } => {
                write!(f, "packet of {len} octets (code {:?}) exceeds the limit", char::from(*code))
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Takes one packet off the front of `buf`: `Ok(None)` while it is incomplete. A packet
/// may be at most [`MAX_PACKET`](crate::MAX_PACKET) long, body replacement chunks (`'b'`)
/// at most `body_cap`. The limit is checked on the header alone, so a hostile length never
/// makes the caller read the rest.
pub fn decode(buf: &mut Vec<u8>, body_cap: usize) -> Result<Option<Packet>, DecodeError> {
    if buf.len() < 5 {
        if buf.len() >= 4 && buf[..4] == [0, 0, 0, 0] {
            return Err(DecodeError::Empty);
        }
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    let code = buf[4];
    let cap = if code == b'b' { body_cap.max(crate::MAX_PACKET) } else { crate::MAX_PACKET };
    if len > cap {
        return Err(DecodeError::TooLong { code, len });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let data = buf[5..4 + len].to_vec();
    buf.drain(..4 + len);
    Ok(Some(Packet { code, data }))
}

/// How many more octets the packet at the front of `buf` needs (at least 1 while incomplete):
/// lets the driver read no further than one packet.
pub fn wanted(buf: &[u8]) -> usize {
    if buf.len() < 5 {
        return 5 - buf.len();
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    (4 + len).saturating_sub(buf.len()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_encodes_family_port_and_address() {
        let c = Command::Connect { hostname: "mx.example", family: Family::Inet, port: 25, address: "192.0.2.1" };
        let p = c.encode();
        assert_eq!(&p[..5], &[0, 0, 0, 25, b'C']);
        assert_eq!(&p[5..], b"mx.example\x004\x00\x19192.0.2.1\x00");
        let u = Command::Connect { hostname: "x", family: Family::Unknown, port: 0, address: "" }.encode();
        assert_eq!(&u[4..], b"Cx\0U");
    }

    #[test]
    fn optneg_and_macros() {
        let p = Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }.encode();
        assert_eq!(p, [0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]);
        let pairs = vec![("j".to_string(), "mx".to_string())];
        assert_eq!(&Command::Macro { for_cmd: b'C', pairs: &pairs }.encode()[4..], b"DCj\0mx\0");
    }

    #[test]
    fn decode_waits_for_whole_packets_and_keeps_the_rest() {
        let mut buf = frame(b'c', b"");
        buf.extend_from_slice(&frame(b'h', b"X\0y\0"));
        let whole = buf.clone();
        for cut in 0..whole.len() {
            let mut part = whole[..cut].to_vec();
            while let Some(_p) = decode(&mut part, 0).unwrap() {}
        }
        assert_eq!(decode(&mut buf, 0).unwrap(), Some(Packet { code: b'c', data: vec![] }));
        assert_eq!(wanted(&buf[..3]), 2);
        assert_eq!(decode(&mut buf, 0).unwrap(), Some(Packet { code: b'h', data: b"X\0y\0".to_vec() }));
        assert!(buf.is_empty());
    }

    #[test]
    fn hostile_lengths_are_refused_from_the_header_alone() {
        let mut zero = vec![0, 0, 0, 0];
        assert_eq!(decode(&mut zero, 0), Err(DecodeError::Empty));
        let mut huge = vec![0x7f, 0xff, 0xff, 0xff, b'h'];
        assert!(matches!(decode(&mut huge, 0), Err(DecodeError::TooLong { .. })));
        // A body replacement chunk may be as large as the message limit.
        let mut body = vec![0, 0x20, 0, 0, b'b'];
        assert_eq!(decode(&mut body, 4 << 20), Ok(None));
        let mut body = vec![0, 0x20, 0, 0, b'b'];
        assert!(decode(&mut body, 0).is_err());
    }

    #[test]
    fn nul_inside_a_string_ends_it() {
        assert_eq!(&Command::Helo("a\0b").encode()[4..], b"Ha\0");
    }
}
