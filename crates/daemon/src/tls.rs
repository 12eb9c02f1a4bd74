//! `-H tcp://…` with mutual TLS: the server's rustls configuration (client
//! certificates must chain to `--tlscacert`) and a listener that hands
//! finished handshakes to `axum::serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--tlscacert`, `--tlscert`, `--tlskey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA that client certificates must chain to.
    pub ca: PathBuf,
    /// The server's certificate (chain), PEM.
    pub cert: PathBuf,
    /// The server's private key, PEM.
    pub key: PathBuf,
}

/// Reads the files and builds the server configuration: TLS 1.2 and 1.3,
/// a client certificate is required and must chain to the CA, ALPN
/// `http/1.1`.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(&files.ca, "--tlscacert")? {
        roots
            .add(cert)
            .with_context(|| format!("--tlscacert {}: unusable CA", files.ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .with_context(|| format!("--tlscacert {}", files.ca.display()))?;
    let chain = pem_certs(&files.cert, "--tlscert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow::anyhow!(
            "--tlskey {}: no usable private key: {e}",
            files.key.display()
        )
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "--tlscert {} and --tlskey {} do not make a usable pair",
                files.cert.display(),
                files.key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn pem_certs(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{flag} {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// `tcp://host:port`, `tcp://:port` (all addresses), `tcp://host` (port
/// 2376, dockerd's TLS port) → `host:port` to bind.
pub fn tcp_addr(host: &str) -> anyhow::Result<String> {
    let Some(rest) = host.strip_prefix("tcp://") else {
        bail!("invalid host {host:?}: not tcp://");
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        bail!("invalid host {host:?}: no path allowed after the address");
    }
    let (h, port) = match rest.strip_prefix('[') {
        Some(r) => match r.split_once(']') {
            Some((ip, "")) => (&rest[..ip.len() + 2], "2376"),
            Some((ip, after)) => match after.strip_prefix(':') {
                Some(p) => (&rest[..ip.len() + 2], p),
                None => bail!("invalid host {host:?}: expected ':' after ']'"),
            },
            None => bail!("invalid host {host:?}: unclosed '['"),
        },
        None => rest.split_once(':').unwrap_or((rest, "2376")),
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("invalid host {host:?}: bad port {port:?}"))?;
    let h = if h.is_empty() { "0.0.0.0" } else { h };
    Ok(format!("{h}:{port}"))
}

/// A TCP listener whose connections come out of the TLS handshake. Each
/// handshake runs in its own task, so a slow client holds up nobody; one
/// that fails it (no certificate, one of another CA) is logged and dropped.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Binds `addr` (`host:port`).
    pub async fn bind(addr: &str, cfg: Arc<rustls::ServerConfig>) -> anyhow::Result<TlsListener> {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on tcp://{addr}"))?;
        let local = tcp.local_addr().context("local address")?;
        let acceptor = TlsAcceptor::from(cfg);
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "tcp accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "TLS handshake refused");
                        }
                        Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends when aborted, i.e. never while
            // this listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_hosts() {
        assert_eq!(tcp_addr("tcp://127.0.0.1:2376").unwrap(), "127.0.0.1:2376");
        assert_eq!(tcp_addr("tcp://:2376").unwrap(), "0.0.0.0:2376");
        assert_eq!(tcp_addr("tcp://127.0.0.1").unwrap(), "127.0.0.1:2376");
        assert_eq!(tcp_addr("tcp://[::1]:99").unwrap(), "[::1]:99");
        assert_eq!(tcp_addr("tcp://[::1]").unwrap(), "[::1]:2376");
        assert!(tcp_addr("tcp://1.2.3.4:x").is_err());
        assert!(tcp_addr("tcp://1.2.3.4:5/x").is_err());
    }
}
