//! A minimal HTTP/1.1 client for health checks: connect to an address, send one GET with a chosen Host
//! header, read the answer. Enough to prove a site is really served; no TLS, no redirects followed.

use crate::{ExecError, ExecResult};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// GETs `url` (`http://ADDR:PORT/path`), sending `host` as the Host header and any extra headers.
pub async fn get(url: &str, host: &str, extra: &[(&str, &str)]) -> ExecResult<HttpAnswer> {
    let rest = url.strip_prefix("http://").ok_or_else(|| ExecError::Other(format!("only http:// URLs: {url}")))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if addr.contains(':') { addr.to_string() } else { format!("{addr}:80") };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: fjord\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(60), fetch)
        .await
        .map_err(|_| ExecError::Other(format!("{url}: no answer within 60 s")))?
        .map_err(crate::io_err(format!("GET {url}")))?;
    parse(&buf).ok_or_else(|| ExecError::Other(format!("{url}: not an HTTP answer")))
}

fn parse(buf: &[u8]) -> Option<HttpAnswer> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Some(HttpAnswer { status, headers, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_chunked_answers() {
        let a = super::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!((a.status, a.body.as_str(), a.header("x-a")), (200, "abcde", Some("b")));
    }
}
