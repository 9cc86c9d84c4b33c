//! TLS for `serve`: the API over rustls (through axum-server, on the ring
//! provider reqwest already uses), from a certificate chain and a private
//! key in PEM files (`[api] tls_cert` / `tls_key`, or `serve --tls-cert`
//! / `--tls-key`).
//!
//! The files are watched (their contents hashed every
//! [`RELOAD_EVERY`]): when they change, the pair is loaded again and
//! swapped in for new connections, so a renewed certificate needs no
//! restart; connections already open keep theirs. A pair that does not
//! load (a half-written file, a key that does not match) is logged and
//! the certificate in use stays until a good pair is there.

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the certificate and key files are checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

pub use crate::config::TlsFiles;

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS certificate {} and key {} do not make a server certificate: {message}", cert.display(), key.display())]
    Load {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The loaded certificate, shared with the server, and what it was
/// loaded from.
#[derive(Clone)]
pub struct Tls {
    pub(super) config: axum_server::tls_rustls::RustlsConfig,
    files: TlsFiles,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// Both files' contents and their hash.
async fn read(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>, [u8; 32]), TlsError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| TlsError::Read { path, source })
        }
    };
    let cert = read(&files.cert).await?;
    let key = read(&files.key).await?;
    let mut h = Sha256::new();
    h.update(&cert);
    h.update([0]);
    h.update(&key);
    Ok((cert, key, h.finalize().into()))
}

impl Tls {
    /// Loads the pair; an error names the files and what is wrong.
    pub async fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let (cert, key, _) = read(&files).await?;
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
            .await
            .map_err(|e| load_error(&files, &e))?;
        Ok(Self { config, files })
    }

    /// Checks the files every [`RELOAD_EVERY`] and swaps a changed pair in
    /// for new connections, until the task is aborted.
    pub fn spawn_reload(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut loaded = read(&this.files).await.ok().map(|(_, _, h)| h);
            // A bad pair is told once, not every few seconds.
            let mut told = None;
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (cert, key, hash) = match read(&this.files).await {
                    Ok(r) => r,
                    Err(e) => {
                        let text = e.to_string();
                        if told.as_ref() != Some(&text) {
                            tracing::warn!(error = %text, "the TLS files cannot be read; the certificate in use stays");
                            told = Some(text);
                        }
                        continue;
                    }
                };
                if loaded == Some(hash) {
                    continue;
                }
                match this.config.reload_from_pem(cert, key).await {
                    Ok(()) => {
                        loaded = Some(hash);
                        told = None;
                        tracing::info!(cert = %this.files.cert.display(), "TLS certificate reloaded: new connections get it");
                    }
                    Err(e) => {
                        let text = load_error(&this.files, &e).to_string();
                        if told.as_ref() != Some(&text) {
                            tracing::warn!(error = %text, "the changed TLS files do not load; the certificate in use stays");
                            told = Some(text);
                        }
                    }
                }
            }
        })
    }
}

fn load_error(files: &TlsFiles, e: &std::io::Error) -> TlsError {
    TlsError::Load {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message: e.to_string(),
    }
}
