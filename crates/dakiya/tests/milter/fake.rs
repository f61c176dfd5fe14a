//! A scripted milter on loopback: it negotiates, records what it is sent, and answers each
//! stage as the test's script says — including hanging, closing, and garbage.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the milter does when it receives a command.
pub enum Answer {
    /// These packets (code, data), in order.
    Send(Vec<(u8, Vec<u8>)>),
    /// Nothing (the stage is not answered, or the test wants silence).
    Nothing,
    /// Wait this long, then these packets.
    Later(Duration, Vec<(u8, Vec<u8>)>),
    /// Close the connection.
    Close,
    /// These raw bytes.
    Raw(Vec<u8>),
}

/// Every command received: (code, data).
pub type Seen = Arc<Mutex<Vec<(u8, Vec<u8>)>>>;

pub type Script = dyn Fn(u8, &[u8]) -> Answer + Send + Sync;

/// A running scripted milter.
pub struct FakeMilter {
    pub addr: SocketAddr,
    /// Every command received (code, data), across connections.
    pub seen: Seen,
    pub connections: Arc<Mutex<usize>>,
}

/// `protocol`: the `SMFIP_*` flags the milter asks for in its negotiation.
pub fn start(protocol: u32, script: impl Fn(u8, &[u8]) -> Answer + Send + Sync + 'static) -> FakeMilter {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(Mutex::new(0));
    let script: Arc<Script> = Arc::new(script);
    let (s, c) = (seen.clone(), connections.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            *c.lock().unwrap() += 1;
            let (s, script) = (s.clone(), script.clone());
            std::thread::spawn(move || serve(stream, protocol, &s, &*script));
        }
    });
    FakeMilter { addr, seen, connections }
}

/// The same milter on a Unix socket at `path` (its `addr` is a placeholder).
pub fn start_unix(
    path: &std::path::Path,
    protocol: u32,
    script: impl Fn(u8, &[u8]) -> Answer + Send + Sync + 'static,
) -> FakeMilter {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(Mutex::new(0));
    let script: Arc<Script> = Arc::new(script);
    let (s, c) = (seen.clone(), connections.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            *c.lock().unwrap() += 1;
            let (s, script) = (s.clone(), script.clone());
            std::thread::spawn(move || serve(stream, protocol, &s, &*script));
        }
    });
    FakeMilter { addr: SocketAddr::from(([127, 0, 0, 1], 9)), seen, connections }
}

fn packet(code: u8, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(code);
    out.extend_from_slice(data);
    out
}

fn serve(mut stream: impl Read + Write, protocol: u32, seen: &Mutex<Vec<(u8, Vec<u8>)>>, script: &Script) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
        if stream.read_exact(&mut data).is_err() || data.is_empty() {
            return;
        }
        let code = data.remove(0);
        seen.lock().unwrap().push((code, data.clone()));
        let answer = match code {
            b'O' => {
                let mut d = 6u32.to_be_bytes().to_vec();
                d.extend_from_slice(&0x1ffu32.to_be_bytes());
                d.extend_from_slice(&protocol.to_be_bytes());
                Answer::Send(vec![(b'O', d)])
            }
            b'D' | b'A' => Answer::Nothing,
            b'Q' | b'K' => return,
            _ => script(code, &data),
        };
        let out = match answer {
            Answer::Send(ps) => ps.iter().flat_map(|(c, d)| packet(*c, d)).collect(),
            Answer::Nothing => Vec::new(),
            Answer::Later(wait, ps) => {
                std::thread::sleep(wait);
                ps.iter().flat_map(|(c, d)| packet(*c, d)).collect()
            }
            Answer::Close => return,
            Answer::Raw(bytes) => bytes,
        };
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// `Answer::Send` of one packet.
pub fn one(code: u8, data: &[u8]) -> Answer {
    Answer::Send(vec![(code, data.to_vec())])
}

/// Continue at every stage but `at`, where the answer is `answer()`.
pub fn at(
    stage: u8,
    answer: impl Fn() -> Answer + Send + Sync + 'static,
) -> impl Fn(u8, &[u8]) -> Answer + Send + Sync {
    move |code, _| if code == stage { answer() } else { one(b'c', b"") }
}
