//! Per-registry TLS as Docker sets it up: the system roots plus the CAs in
//! `<certs.d>/<host[:port]>/*.crt`, and a client certificate from a
//! `*.cert` + `*.key` pair in the same directory.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::ClientError;

/// Docker's directory of per-registry certificates.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";

/// The system's CA bundle (Debian's ca-certificates).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn tls_err(registry: &str, reason: String) -> ClientError {
    ClientError::Tls {
        registry: registry.to_owned(),
        reason,
    }
}

fn pem_certs(registry: &str, path: &Path) -> Result<Vec<Certificate<'static>>, ClientError> {
    let pem = std::fs::read(path)
        .map_err(|e| tls_err(registry, format!("read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(tls_err(registry, format!("{}: {e}", path.display()))),
        }
    }
    Ok(out)
}

/// The TLS configuration for `registry` (`host[:port]`) with the
/// certificates under `certs_dir/<registry>/`; ureq's defaults (Mozilla's
/// roots) when that directory does not exist. Without `verify` (an
/// insecure registry) the server's certificate is not checked and only a
/// client certificate is taken from the directory.
pub fn config(certs_dir: &Path, registry: &str, verify: bool) -> Result<TlsConfig, ClientError> {
    let unverified = || TlsConfig::builder().disable_verification(!verify);
    let dir = certs_dir.join(registry);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(unverified().build()),
        Err(e) => return Err(tls_err(registry, format!("read {}: {e}", dir.display()))),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| tls_err(registry, format!("read {}: {e}", dir.display())))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_owned());
        }
    }
    names.sort();
    let mut cas = Vec::new();
    let mut client = None;
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".crt") && verify {
            cas.extend(pem_certs(registry, &path)?);
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key_name = format!("{stem}.key");
            if !names.contains(&key_name) {
                return Err(tls_err(
                    registry,
                    format!("missing key {key_name} for client certificate {name}"),
                ));
            }
            let chain = pem_certs(registry, &path)?;
            let key_path = dir.join(&key_name);
            let pem = std::fs::read(&key_path)
                .map_err(|e| tls_err(registry, format!("read {}: {e}", key_path.display())))?;
            let key = PrivateKey::from_pem(&pem)
                .map_err(|e| tls_err(registry, format!("{}: {e}", key_path.display())))?;
            client = Some(ClientCert::new_with_certs(&chain, key));
        } else if let Some(stem) = name.strip_suffix(".key")
            && !names.contains(&format!("{stem}.cert"))
        {
            return Err(tls_err(
                registry,
                format!("missing client certificate {stem}.cert for key {name}"),
            ));
        }
    }
    let mut builder = unverified().client_cert(client);
    if !cas.is_empty() {
        // Docker adds certs.d CAs to the system pool rather than replacing it.
        if let Ok(system) = pem_certs(registry, Path::new(SYSTEM_BUNDLE)) {
            cas.extend(system);
        }
        builder = builder.root_certs(RootCerts::Specific(Arc::new(cas)));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_dir_layout() {
        let dir = tempfile::tempdir().unwrap();
        // No directory for the registry: defaults.
        let c = config(dir.path(), "r:1", true).unwrap();
        assert!(c.client_cert().is_none());

        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let d = dir.path().join("r:1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.crt"), ca.cert.pem()).unwrap();
        std::fs::write(d.join("client.cert"), leaf.cert.pem()).unwrap();
        let e = config(dir.path(), "r:1", true).unwrap_err().to_string();
        assert!(e.contains("missing key client.key"), "{e}");
        std::fs::write(d.join("client.key"), leaf.signing_key.serialize_pem()).unwrap();
        let c = config(dir.path(), "r:1", true).unwrap();
        assert!(c.client_cert().is_some());
        match c.root_certs() {
            RootCerts::Specific(certs) => assert_eq!(certs[0].der(), ca.cert.der().as_ref()),
            other => panic!("{other:?}"),
        }
        // Insecure: the server is not verified, certs.d's CAs are not read,
        // its client certificate is still presented.
        let c = config(dir.path(), "r:1", false).unwrap();
        assert!(c.disable_verification());
        assert!(c.client_cert().is_some());
        assert!(!matches!(c.root_certs(), RootCerts::Specific(_)));
        std::fs::write(d.join("lonely.key"), "x").unwrap();
        let e = config(dir.path(), "r:1", true).unwrap_err().to_string();
        assert!(e.contains("missing client certificate lonely.cert"), "{e}");
    }
}
