//! A minimal HTTP/1.1 client for load: one keep-alive connection per simulated client, the
//! request written in one piece, the response read by its `content-length`. Light enough
//! that the load generator does not take the CPU the server under test needs.

use std::net::SocketAddr;

use actix_rt::net::TcpStream;
use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    buf: BytesMut,
    request: Vec<u8>,
}

/// A response's status and body.
pub struct Response {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            addr,
            buf: BytesMut::with_capacity(16 * 1024),
            request: Vec::with_capacity(1024),
        })
    }

    /// `POST path` with a JSON body and `headers` (`name: value` each).
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        use std::io::Write;
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        )?;
        for (name, value) in headers {
            write!(self.request, "{name}: {value}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_len]).context("response head")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("response status line")?;
        let mut length = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported by the load client");
                }
            }
        }
        let length = length.unwrap_or(0);
        while self.buf.len() < head_len + length {
            self.fill().await?;
        }
        self.buf.advance(head_len);
        let body = self.buf.split_to(length).freeze();
        Ok(Response { status, body })
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
