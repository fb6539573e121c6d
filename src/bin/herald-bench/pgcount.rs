//! Counting what Herald asks of PostgreSQL: a TCP proxy between Herald and the server that
//! reads the wire protocol's message framing (nothing else) and counts, over Herald's own
//! connections only:
//!
//! * round trips: `ReadyForQuery` messages from the server. A client must wait for one at
//!   the end of every simple query and every extended-protocol `Sync`, so this is the number
//!   of times Herald waited on the database (including the one per connection at start-up);
//! * statements: `Execute` (extended protocol) and `Query` (simple protocol) messages;
//! * transactions: `ReadyForQuery` reporting "idle" after a round trip that ran a statement
//!   (an implicit or explicit transaction ended there).
//!
//! Herald's connections are told the server does not do TLS (the proxy answers the
//! `SSLRequest` itself) so that the framing stays readable.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    thread,
};

#[derive(Default, Debug)]
pub struct Counts {
    pub round_trips: AtomicU64,
    pub statements: AtomicU64,
    pub transactions: AtomicU64,
    pub connections: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub round_trips: u64,
    pub statements: u64,
    pub transactions: u64,
    pub connections: u64,
}

impl Snapshot {
    pub fn since(self, before: Snapshot) -> Snapshot {
        Snapshot {
            round_trips: self.round_trips - before.round_trips,
            statements: self.statements - before.statements,
            transactions: self.transactions - before.transactions,
            connections: self.connections - before.connections,
        }
    }

    /// Per unit of work, as JSON (`{"round_trips": …, "statements": …, "transactions": …}`).
    pub fn per(self, units: usize) -> serde_json::Value {
        let per = |n: u64| crate::setup::round_to(n as f64 / units.max(1) as f64, 5);
        serde_json::json!({
            "round_trips": per(self.round_trips),
            "statements": per(self.statements),
            "transactions": per(self.transactions),
        })
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counts = c.clone();
                thread::spawn(move || {
                    let _ = relay(client, upstream, counts);
                });
            }
        });
        Ok(Proxy { addr, counts })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            round_trips: self.counts.round_trips.load(Relaxed),
            statements: self.counts.statements.load(Relaxed),
            transactions: self.counts.transactions.load(Relaxed),
            connections: self.counts.connections.load(Relaxed),
        }
    }

    /// A proxy in front of `database_url`'s server when `wanted`, and the URL to give
    /// Herald (through the proxy, or `database_url` itself).
    pub fn if_asked(wanted: bool, database_url: &str) -> anyhow::Result<(Option<Proxy>, String)> {
        if !wanted {
            return Ok((None, database_url.to_string()));
        }
        let proxy = Proxy::start(upstream_of(database_url)?)?;
        let url = proxy.url_for(database_url)?;
        Ok((Some(proxy), url))
    }

    /// `database_url` (postgres://user@host:port/db) pointed at this proxy instead.
    pub fn url_for(&self, database_url: &str) -> anyhow::Result<String> {
        let mut url = url::Url::parse(database_url)?;
        url.set_host(Some(&self.addr.ip().to_string()))?;
        url.set_port(Some(self.addr.port()))
            .map_err(|_| anyhow::anyhow!("cannot set a port on {database_url}"))?;
        // The framing must stay readable: no TLS between Herald and the proxy.
        url.query_pairs_mut().append_pair("sslmode", "disable");
        Ok(url.to_string())
    }
}

/// The server of a `postgres://` URL, as a socket address.
pub fn upstream_of(database_url: &str) -> anyhow::Result<SocketAddr> {
    let url = url::Url::parse(database_url)?;
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))
}

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;

fn relay(mut client: TcpStream, upstream: SocketAddr, counts: Arc<Counts>) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    // Start-up: untyped messages (length, then a code). Refuse encryption requests.
    let startup = loop {
        let mut len = [0u8; 4];
        client.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        client.read_exact(&mut body)?;
        let code = u32::from_be_bytes(body[..4].try_into().unwrap_or_default());
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            client.write_all(b"N")?;
            continue;
        }
        let mut msg = (len as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        break msg;
    };
    let mut server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    server.write_all(&startup)?;
    counts.connections.fetch_add(1, Relaxed);

    let (client2, server2, counts2) = (client.try_clone()?, server.try_clone()?, counts.clone());
    // Server to client: count ReadyForQuery and the transactions it ends.
    let down = thread::spawn(move || {
        let mut framer = Framer::default();
        let mut ran_statement = false;
        pump(server2, client2, &mut framer, |kind, first| {
            match kind {
                b'C' => ran_statement = true, // CommandComplete
                b'Z' => {
                    counts2.round_trips.fetch_add(1, Relaxed);
                    if first == Some(b'I') && std::mem::take(&mut ran_statement) {
                        counts2.transactions.fetch_add(1, Relaxed);
                    }
                }
                _ => {}
            }
        })
    });
    // Client to server: count statements.
    let mut framer = Framer::default();
    let _ = pump(client, server, &mut framer, |kind, _| {
        if kind == b'E' || kind == b'Q' {
            counts.statements.fetch_add(1, Relaxed);
        }
    });
    let _ = down.join();
    Ok(())
}

/// Copies `from` to `to`, calling `seen(type, first body byte)` for every message.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    framer: &mut Framer,
    mut seen: impl FnMut(u8, Option<u8>),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let result = loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        framer.feed(&buf[..n], &mut seen);
        if let Err(e) = to.write_all(&buf[..n]) {
            break Err(e);
        }
    };
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
    result
}

/// Finds message boundaries in a stream of `type byte, u32 length, body`.
#[derive(Default)]
struct Framer {
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to skip.
    skip: usize,
    /// The current message's type, while its first body byte is awaited.
    pending: Option<u8>,
}

impl Framer {
    fn feed(&mut self, mut data: &[u8], seen: &mut impl FnMut(u8, Option<u8>)) {
        while !data.is_empty() {
            if self.skip > 0 {
                if let Some(kind) = self.pending.take() {
                    seen(kind, Some(data[0]));
                }
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let kind = self.header[0];
                let len = u32::from_be_bytes(self.header[1..5].try_into().unwrap_or_default());
                self.skip = (len as usize).saturating_sub(4);
                if self.skip == 0 {
                    seen(kind, None);
                } else {
                    self.pending = Some(kind);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Framer;

    #[test]
    fn frames_split_anywhere() {
        // ReadyForQuery 'I', then a CommandComplete, then an empty Sync.
        let stream = [
            &b"Z\0\0\0\x05I"[..],
            &b"C\0\0\0\x0fINSERT 0 1\0"[..],
            &b"S\0\0\0\x04"[..],
        ]
        .concat();
        for split in 0..stream.len() {
            let mut framer = Framer::default();
            let mut seen = Vec::new();
            let mut f = |k: u8, first: Option<u8>| seen.push((k, first));
            framer.feed(&stream[..split], &mut f);
            framer.feed(&stream[split..], &mut f);
            assert_eq!(
                seen,
                vec![(b'Z', Some(b'I')), (b'C', Some(b'I')), (b'S', None)],
                "split at {split}"
            );
        }
    }
}
