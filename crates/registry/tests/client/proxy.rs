//! A small HTTP/1.1 proxy on 127.0.0.1 in front of a registry, with hooks:
//! it logs every request (with its Range / Content-Range headers), counts
//! blob GETs in flight, throttles, drops a blob's connection once after N
//! bytes, corrupts a blob, and can answer a path with a canned response.
//! One request per connection (`Connection: close` both ways).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub content_range: Option<String>,
}

/// A canned answer: status line (`200 OK`), headers, body.
pub type Canned = (String, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
pub struct State {
    upstream: String,
    pub log: Mutex<Vec<Logged>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Blob body bytes written to clients.
    pub blob_bytes: AtomicU64,
    /// (bytes per write, pause after each) for blob bodies.
    pub throttle: Mutex<Option<(usize, Duration)>>,
    /// Drop the first GET of this blob after so many body bytes.
    pub drop_after: Mutex<Option<(String, usize)>>,
    /// Flip a byte in every GET of this blob.
    pub corrupt: Mutex<Option<String>>,
    /// Canned answers by path: (status line, headers, body).
    pub fake: Mutex<HashMap<String, Canned>>,
}

pub struct Proxy {
    pub host: String,
    pub state: Arc<State>,
}

impl Proxy {
    /// A proxy to `upstream` (`127.0.0.1:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            ..State::default()
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(&st, conn);
                });
            }
        });
        Proxy { host, state }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

fn is_blob_get(method: &str, path: &str) -> bool {
    method == "GET" && path.contains("/blobs/sha256:")
}

fn handle(st: &State, mut client: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let Some(first) = head.first() else {
        return Ok(());
    };
    let mut parts = first.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(()); // TLS hello or garbage: just close
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let path = target.split('?').next().unwrap_or("").to_owned();
    let get = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    assert!(
        get("transfer-encoding").is_none(),
        "chunked request bodies are not supported"
    );
    let len: usize = get("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    st.log.lock().unwrap().push(Logged {
        method: method.clone(),
        path: path.clone(),
        range: get("range"),
        content_range: get("content-range"),
    });

    if let Some((status, headers, fbody)) = st.fake.lock().unwrap().get(&path).cloned() {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            fbody.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        client.write_all(out.as_bytes())?;
        if method != "HEAD" {
            client.write_all(&fbody)?;
        }
        return Ok(());
    }

    let blob = is_blob_get(&method, &path);
    if blob {
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    let mut counted = blob;
    let result = forward(
        st,
        &mut client,
        &method,
        &target,
        &path,
        &head,
        &body,
        &mut counted,
    );
    if counted {
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn forward(
    st: &State,
    client: &mut TcpStream,
    method: &str,
    target: &str,
    path: &str,
    head: &[String],
    body: &[u8],
    counted: &mut bool,
) -> std::io::Result<()> {
    let blob = *counted;
    let mut up = TcpStream::connect(&st.upstream)?;
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for h in head.iter().skip(1) {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // Host stays the proxy's: registries build Location URLs from it.
        if name == "connection" {
            continue;
        }
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    let (rhead, rbody) = resp.split_at(split);
    let mut rbody = rbody.to_vec();
    client.write_all(rhead)?;
    if !blob {
        client.write_all(&rbody)?;
        return Ok(());
    }
    let digest = path.rsplit('/').next().unwrap_or("").to_owned();
    if st.corrupt.lock().unwrap().as_deref() == Some(digest.as_str()) && !rbody.is_empty() {
        let mid = rbody.len() / 2;
        rbody[mid] ^= 0xff;
    }
    let mut limit = rbody.len();
    {
        let mut d = st.drop_after.lock().unwrap();
        if let Some((dg, n)) = d.as_ref()
            && *dg == digest
            && *n < rbody.len()
        {
            limit = *n;
            *d = None;
        }
    }
    let throttle = *st.throttle.lock().unwrap();
    let chunk = throttle.map_or(64 * 1024, |(c, _)| c);
    let mut sent = 0;
    while sent < limit {
        if sent > 0
            && let Some((_, pause)) = throttle
        {
            std::thread::sleep(pause);
        }
        let n = chunk.min(limit - sent);
        if sent + n == rbody.len() {
            // The client may start its next request once it has this
            // last piece: it is no longer in flight as far as we count.
            if *counted {
                st.in_flight.fetch_sub(1, Ordering::SeqCst);
                *counted = false;
            }
        }
        client.write_all(&rbody[sent..sent + n])?;
        sent += n;
        st.blob_bytes.fetch_add(n as u64, Ordering::SeqCst);
    }
    if limit < rbody.len() {
        client.flush()?;
        client.shutdown(Shutdown::Both)?;
    }
    Ok(())
}
