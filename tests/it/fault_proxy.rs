//! A loopback HTTP proxy that injects faults between a client and a hub: 503s, 429s with
//! `Retry-After`, connection resets, and truncated bodies, on a fixed schedule.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the proxy does to the n-th request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Unavailable,
    TooMany,
    Reset,
    Truncate,
    Corrupt,
}

/// The schedule: mostly passes, with every kind of fault mixed in.
fn fault_for(n: usize) -> Fault {
    match n % 9 {
        2 => Fault::Unavailable,
        4 => Fault::TooMany,
        6 => Fault::Reset,
        7 => Fault::Corrupt,
        8 => Fault::Truncate,
        _ => Fault::Pass,
    }
}

pub struct FaultProxy {
    pub url: String,
    pub counts: Arc<[AtomicUsize; 6]>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`http://127.0.0.1:port`) until the test process ends.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let counts: Arc<[AtomicUsize; 6]> = Arc::new(Default::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let c = counts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (up, seen, c) = (upstream.clone(), seen.clone(), c.clone());
                std::thread::spawn(move || serve(conn, &up, &seen, &c));
            }
        });
        FaultProxy { url, counts }
    }

    pub fn injected(&self) -> usize {
        self.counts[1..].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Reads one request head (requests the client sends through here have no body).
fn read_head(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

fn serve(mut conn: TcpStream, upstream: &str, seen: &AtomicUsize, counts: &[AtomicUsize; 6]) {
    // One request per connection: every answer closes it.
    let Some(head) = read_head(&mut conn) else { return };
    let n = seen.fetch_add(1, Ordering::Relaxed);
    let fault = fault_for(n);
    counts[fault as usize].fetch_add(1, Ordering::Relaxed);
    let reply: Vec<u8> = match fault {
        Fault::Unavailable => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
        Fault::TooMany => b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
        Fault::Reset => {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        Fault::Pass | Fault::Truncate | Fault::Corrupt => match forward(&head, upstream) {
            Some(r) => r,
            None => return,
        },
    };
    let reply = match fault {
        Fault::Truncate => truncate(reply),
        Fault::Corrupt => corrupt(reply),
        _ => reply,
    };
    let _ = conn.write_all(&reply);
    let _ = conn.shutdown(Shutdown::Both);
}

/// Sends the request upstream with `Connection: close` and reads the whole answer.
fn forward(head: &[u8], upstream: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty()).collect();
    lines.push("Connection: close");
    let request = format!("{}\r\n\r\n", lines.join("\r\n"));
    let mut up = TcpStream::connect(upstream).ok()?;
    up.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    up.read_to_end(&mut reply).ok()?;
    Some(reply)
}

/// Flips one bit in the middle of the body (a bad cache or disk upstream).
fn corrupt(mut reply: Vec<u8>) -> Vec<u8> {
    if let Some(split) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
        let body = reply.len() - split - 4;
        if body > 16 {
            reply[split + 4 + body / 2] ^= 0x10;
        }
    }
    reply
}

/// Keeps the head and the first half of the body: the client sees the connection close early.
fn truncate(reply: Vec<u8>) -> Vec<u8> {
    let Some(split) = reply.windows(4).position(|w| w == b"\r\n\r\n") else { return reply };
    let body = reply.len() - split - 4;
    reply[..split + 4 + body / 2].to_vec()
}
