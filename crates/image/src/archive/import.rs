//! `docker import`: a root filesystem tarball becomes a one-layer image.

use std::io::{self, BufRead, BufReader, Read, Write};

use super::ArchiveError;
use crate::content::{Algorithm, Digester, Ingester};
use crate::media;
use crate::store::{GcOptions, Image, ImageStore, Platform, Resource};

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name to tag the image with; untagged (named by its id) if None.
    pub name: Option<String>,
    /// Platform recorded in the config (the host's by default).
    pub platform: Option<Platform>,
    /// The config's `config` object (Cmd, Env, … as `--change` sets them).
    pub config: Option<serde_json::Value>,
    /// History comment (`--message`).
    pub message: Option<String>,
}

/// Imports a (plain, gzip or zstd) tarball of a root filesystem as a
/// one-layer image. The tarball is stored as it comes, as the layer blob;
/// its diffID is computed in the same pass.
pub fn import(
    store: &ImageStore,
    reader: impl Read,
    opts: &ImportOptions,
) -> Result<Image, ArchiveError> {
    let lease = store.lease(None)?;
    let result = (|| {
        let wref = format!("import-{}", lease.id());
        let mut w = store.content().writer(&wref, None)?;
        let mut input = BufReader::with_capacity(1 << 20, reader);
        let head = input.fill_buf().map_err(ArchiveError::Read)?;
        let media_type = if head.starts_with(&[0x1f, 0x8b]) {
            media::OCI_LAYER_GZIP
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            media::OCI_LAYER_ZSTD
        } else {
            media::OCI_LAYER
        };
        let diff_id = {
            let tee = BufReader::with_capacity(
                1 << 20,
                Tee {
                    inner: &mut input,
                    out: &mut w,
                },
            );
            let plain = super::decompressed(tee).map_err(ArchiveError::Read)?;
            let mut hashed = Hashing {
                inner: plain,
                digester: Digester::new(Algorithm::Sha256),
            };
            {
                let mut ar = tar::Archive::new(&mut hashed);
                let mut n = 0u64;
                for e in ar.entries().map_err(|e| not_tar(&e))? {
                    let mut e = e.map_err(|e| not_tar(&e))?;
                    io::copy(&mut e, &mut io::sink()).map_err(ArchiveError::Read)?;
                    n += 1;
                }
                if n == 0 {
                    return Err(ArchiveError::Invalid("the tarball holds no file".into()));
                }
            }
            // The end-of-archive blocks and padding are part of the diffID.
            io::copy(&mut hashed, &mut io::sink()).map_err(ArchiveError::Read)?;
            hashed.digester.finish()
        };
        // Bytes after the compressed stream's end still belong to the blob.
        io::copy(&mut input, &mut w).map_err(ArchiveError::Read)?;
        let digest = w.digest();
        let size = w.offset();
        lease.add(&Resource::Content(digest.clone()))?;
        w.commit(&digest, size)?;

        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut history = serde_json::json!({"created": now, "created_by": "berth import"});
        if let Some(m) = &opts.message {
            history["comment"] = m.clone().into();
        }
        let mut config = serde_json::json!({
            "created": now,
            "architecture": platform.architecture,
            "os": platform.os,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [history],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = v.clone().into();
        }
        if let Some(c) = &opts.config {
            config["config"] = c.clone();
        }
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| ArchiveError::Invalid(format!("encode config: {e}")))?;
        let config_digest = lease.put_bytes(&bytes)?;
        let target = lease.write_manifest(
            &config_digest,
            bytes.len() as u64,
            &[(digest, size, media_type)],
        )?;
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| config_digest.to_string());
        Ok(store.put(&name, target)?)
    })();
    match result {
        Ok(img) => {
            lease.release()?;
            Ok(img)
        }
        Err(e) => {
            drop(lease);
            let _ = store.gc(&GcOptions::default());
            Err(e)
        }
    }
}

fn not_tar(e: &io::Error) -> ArchiveError {
    ArchiveError::Invalid(format!("not a tar archive: {e}"))
}

/// Copies everything read from `inner` into `out`.
struct Tee<'a, R, W> {
    inner: &'a mut R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Hashes everything read through it.
struct Hashing<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}
