//! The chain's head anchored outside the store: signed checkpoints.
//!
//! Someone who can rewrite the `audit_log` table can also recompute every
//! hash, so the chain alone proves nothing to them. A **checkpoint** is
//! the head of the chain at one moment — `seq`, `hash`, the time, the node
//! and the id of the key that signed it — with an Ed25519 signature by a
//! key that is not in the store: a PKCS#8 PEM file (`[audit] signing_key`,
//! default `<data_dir>/audit-signing-key.pem`) created with mode 0600 by
//! the first process that needs it. Because record *n*'s hash covers every
//! record before it, a checkpoint of `(n, hash)` pins the whole trail up
//! to *n*: rewriting any of those records changes record *n*'s hash, which
//! the checkpoint then contradicts, and no one without the key can sign a
//! new one.
//!
//! **Where checkpoints go.** Each is written to the mirror (the audit log
//! files, target `meridian::audit`, message `audit checkpoint`) and,
//! with `[audit] witness_url`, POSTed as JSON to an external witness (see
//! [`Witness`]). A serving node checkpoints when it starts, every
//! `checkpoint_interval_s` (whether or not the head moved: a recent
//! checkpoint is what shows the anchor is not behind) and when it stops;
//! a CLI command that appended records checkpoints when it ends. Each node
//! signs with its own key and checkpoints the store's head, whoever
//! appended the records.
//!
//! **Checking** ([`check`]) needs only public keys: those of `[audit]
//! trusted_keys` and `audit verify --trusted-key`, or — when none is
//! given — the public half of this node's own key file. A checkpoint signed
//! by a key not trusted, one whose signature does not verify, or one the
//! store contradicts fails the check; so does a store with records and no
//! checkpoint at all, or one whose head is past the newest checkpoint while
//! that checkpoint is older than the interval allows ([`max_lag`]).
//!
//! What this does not stop: records appended since the last checkpoint
//! (at most one interval's worth) can be rewritten unseen, and someone who
//! holds the signing key can sign anything — keep the key where the
//! database's users cannot read it, and pin the public keys in the config
//! or on the verifying machine so a replaced key file is noticed.

use super::{AuditRecord, GENESIS};
use crate::secrets::SecretValue;
use crate::store::{Store, StoreError};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The default of `[audit] checkpoint_interval_s`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The signing key's default file name in the data dir.
pub const KEY_FILE: &str = "audit-signing-key.pem";
/// What the signature covers first, so a checkpoint's signature can never
/// be taken for a signature over anything else.
const DOMAIN: &str = "meridian-audit-checkpoint-v1";
/// Checkpoints kept for the witness while it does not answer; the oldest
/// go first (a newer checkpoint covers everything an older one did).
const WITNESS_BACKLOG: usize = 1024;
/// How long one POST to the witness may take.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries.
const WITNESS_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How far the newest checkpoint may trail the store's head: two intervals
/// (one for the next checkpoint to come, one for clocks and slow writes).
pub fn max_lag(interval: Duration) -> Duration {
    interval * 2
}

/// `[audit]`: where the signing key is, how often to checkpoint, whose
/// checkpoints to trust and the witness.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The private key file (PKCS#8 PEM), created with mode 0600 on first
    /// use.
    pub signing_key: PathBuf,
    pub checkpoint_interval: Duration,
    /// Public keys whose checkpoints verify; empty means this node's own.
    pub trusted_keys: Vec<PublicKey>,
    pub witness: Option<WitnessSettings>,
}

impl AuditSettings {
    /// The defaults for a data dir.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            signing_key: data_dir.join(KEY_FILE),
            checkpoint_interval: DEFAULT_INTERVAL,
            trusted_keys: Vec::new(),
            witness: None,
        }
    }
}

/// Where checkpoints are POSTed, and the bearer token to send.
#[derive(Debug, Clone)]
pub struct WitnessSettings {
    pub url: url::Url,
    pub token: Option<SecretValue>,
}

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the audit signing key {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit signing key {} is not an Ed25519 key in PKCS#8 PEM: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cannot create the audit signing key {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not an Ed25519 public key (64 hex characters)")]
    PublicKey(String),
}

/// An Ed25519 public key; written as 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::PublicKey(s.to_owned());
        let bytes: [u8; 32] = hex::decode(s.trim())
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad())
    }
}

impl PublicKey {
    /// The key's id: the first 8 bytes of the SHA-256 of the key, in hex.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..8])
    }
}

/// A node's signing key.
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
    id: String,
    node: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.id)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Reads a PKCS#8 PEM signing key.
fn read_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl Signer {
    fn new(key: SigningKey, node: &str) -> Self {
        let public = PublicKey(key.verifying_key());
        Self {
            id: public.id(),
            key,
            public,
            node: node.to_owned(),
        }
    }

    /// The key in `path`, signing for `node`; a missing file is an error.
    pub fn load(path: &Path, node: &str) -> Result<Self, KeyError> {
        read_key(path).map(|k| Self::new(k, node))
    }

    /// The key in `path`, created (mode 0600, by a temporary file and a
    /// link, so two processes starting at once end up with one key) when
    /// there is none. The flag says whether it was created.
    pub fn load_or_create(path: &Path, node: &str) -> Result<(Self, bool), KeyError> {
        match Self::load(path, node) {
            Ok(s) => {
                warn_if_readable_by_others(path);
                return Ok((s, false));
            }
            Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => return Err(e),
        }
        let create = |source| KeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| create(std::io::Error::other(e.to_string())))?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| create(std::io::Error::other(e.to_string())))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(create)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".audit-key-")
            .tempfile_in(&dir)
            .map_err(create)?;
        // tempfile creates the file with mode 0600 on unix.
        std::io::Write::write_all(&mut tmp, pem.as_bytes()).map_err(create)?;
        tmp.as_file().sync_all().map_err(create)?;
        match std::fs::hard_link(tmp.path(), path) {
            Ok(()) => Ok((Self::new(key, node), true)),
            // Another process made one first: use it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::load(path, node).map(|s| (s, false))
            }
            Err(e) => Err(create(e)),
        }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// A checkpoint of the head `(seq, hash)` at `at_us`.
    pub fn sign(&self, seq: i64, hash: &str, at_us: i64) -> Checkpoint {
        let mut cp = Checkpoint {
            seq,
            hash: hash.to_owned(),
            at_us,
            node: self.node.clone(),
            key_id: self.id.clone(),
            signature: String::new(),
        };
        cp.signature = hex::encode(self.key.sign(&cp.message()).to_bytes());
        cp
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the audit signing key can be read by other users: chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// The signed head of the chain at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The head record's `seq` (0 for an empty trail).
    pub seq: i64,
    /// Its hash ([`GENESIS`] for an empty trail).
    pub hash: String,
    /// When it was signed (µs since the epoch, UTC).
    pub at_us: i64,
    /// The node that signed it (`[cluster] node_id`).
    pub node: String,
    /// [`PublicKey::id`] of the key that signed it.
    pub key_id: String,
    /// Ed25519 signature (hex) over the fields above.
    pub signature: String,
}

impl Checkpoint {
    /// What the signature covers: every field but the signature, one per
    /// line after the domain.
    fn message(&self) -> Vec<u8> {
        format!(
            "{DOMAIN}\n{}\n{}\n{}\n{}\n{}",
            self.seq, self.hash, self.at_us, self.node, self.key_id
        )
        .into_bytes()
    }

    /// Whether a trusted key signed exactly this.
    pub fn verify(&self, keys: &TrustedKeys) -> Result<(), Fault> {
        let Some(key) = keys.keys.get(&self.key_id) else {
            return Err(Fault::UnknownKey);
        };
        let signature = hex::decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(Fault::Forged)?;
        key.0
            .verify_strict(&self.message(), &signature)
            .map_err(|_| Fault::Forged)
    }

    /// When it was signed, for messages.
    pub fn at(&self) -> String {
        rfc3339(self.at_us)
    }
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| us.to_string())
}

/// Why a checkpoint does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Signed by a key that is not trusted.
    UnknownKey,
    /// The signature does not verify with the key it names.
    Forged,
}

/// The public keys whose checkpoints count, by id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, PublicKey>,
    /// Why there are none, when there are none.
    missing: Option<String>,
}

impl TrustedKeys {
    /// The keys given (config and command line); when there are none, this
    /// node's own public key, read from its signing key file (never
    /// created here: a verifier that makes a key would trust whatever
    /// signs next).
    pub fn resolve(given: &[PublicKey], signing_key: &Path) -> Self {
        if !given.is_empty() {
            return Self {
                keys: given.iter().map(|k| (k.id(), *k)).collect(),
                missing: None,
            };
        }
        match read_key(signing_key) {
            Ok(k) => {
                let public = PublicKey(k.verifying_key());
                Self {
                    keys: HashMap::from([(public.id(), public)]),
                    missing: None,
                }
            }
            Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self {
                    keys: HashMap::new(),
                    missing: Some(format!(
                        "the audit signing key {} is missing and no public key was given \
                         ([audit] trusted_keys, or --trusted-key)",
                        file_name(signing_key)
                    )),
                }
            }
            Err(e) => {
                let why = match e {
                    KeyError::Read { source, .. } => source.to_string(),
                    KeyError::Parse { message, .. } => message,
                    other => other.to_string(),
                };
                Self {
                    keys: HashMap::new(),
                    missing: Some(format!(
                        "the audit signing key {} cannot be read: {why}",
                        file_name(signing_key)
                    )),
                }
            }
        }
    }

    /// These keys only.
    pub fn of(keys: &[PublicKey]) -> Self {
        Self::resolve(keys, Path::new(""))
    }

    /// The ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A path's last component, for messages an API client may read.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Writes a checkpoint to the audit log files.
pub(crate) fn mirror(cp: &Checkpoint) {
    tracing::info!(
        target: "meridian::audit",
        seq = cp.seq,
        hash = %cp.hash,
        at_us = cp.at_us,
        node = %cp.node,
        key_id = %cp.key_id,
        signature = %cp.signature,
        "audit checkpoint"
    );
}

/// Makes checkpoints of one store's head: to the mirror and, when set, to
/// the witness.
#[derive(Debug)]
pub struct Checkpointer {
    store: Store,
    signer: Signer,
    witness: Option<Witness>,
}

impl Checkpointer {
    pub fn new(store: Store, signer: Signer, witness: Option<Witness>) -> Self {
        Self {
            store,
            signer,
            witness,
        }
    }

    /// Signs the store's head now and writes the checkpoint out.
    pub async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let (seq, hash) = self.store.audit_head().await?;
        let cp = self
            .signer
            .sign(seq, &hash, chrono::Utc::now().timestamp_micros());
        mirror(&cp);
        if let Some(w) = &self.witness {
            w.send(cp.clone());
        }
        Ok(cp)
    }

    /// Checkpoints now and then every `every` until the task is aborted.
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.checkpoint().await {
                    tracing::warn!(error = %e, "cannot checkpoint the audit trail's head");
                }
            }
        })
    }

    /// The last checkpoint (at shutdown): signs the head, then gives the
    /// witness up to `grace` to take what it has not yet.
    pub async fn finish(self, grace: Duration) {
        if let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "cannot checkpoint the audit trail's head");
        }
        if let Some(w) = self.witness {
            w.close(grace).await;
        }
    }
}

/// The external witness: every checkpoint POSTed as JSON to `[audit]
/// witness_url` (with `Authorization: Bearer <witness_token_secret>` when
/// set) by a task of its own, so the audit writer never waits for it.
/// A failed POST is retried with a backoff doubling from 1 s to 5 min; the
/// newest [`WITNESS_BACKLOG`] checkpoints wait meanwhile.
///
/// A witness is expected to answer 2xx only once the checkpoint is stored
/// durably, to keep every checkpoint it is sent (append-only, on storage
/// that the node's operators and database users cannot rewrite), and to
/// export them as JSON lines (one checkpoint object a line) for
/// `meridian audit verify --witness-file`.
#[derive(Debug)]
pub struct Witness {
    tx: mpsc::UnboundedSender<Checkpoint>,
    task: tokio::task::JoinHandle<()>,
}

impl Witness {
    pub fn start(settings: WitnessSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(WITNESS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(witness_task(client, settings, rx));
        Ok(Self { tx, task })
    }

    fn send(&self, cp: Checkpoint) {
        let _ = self.tx.send(cp);
    }

    /// Stops taking checkpoints and waits up to `grace` for the ones
    /// pending to be taken.
    async fn close(self, grace: Duration) {
        let Self { tx, mut task } = self;
        drop(tx);
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("the audit witness did not take every checkpoint before shutdown");
        }
    }
}

async fn witness_task(
    client: reqwest::Client,
    settings: WitnessSettings,
    mut rx: mpsc::UnboundedReceiver<Checkpoint>,
) {
    let mut pending: VecDeque<Checkpoint> = VecDeque::new();
    let mut open = true;
    let push = |pending: &mut VecDeque<Checkpoint>, cp| {
        if pending.len() >= WITNESS_BACKLOG {
            pending.pop_front();
            tracing::warn!(
                "the audit witness is behind: its oldest pending checkpoint was dropped"
            );
        }
        pending.push_back(cp);
    };
    let mut delay = Duration::from_secs(1);
    let mut failing = false;
    loop {
        if pending.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(cp) => push(&mut pending, cp),
                None => return,
            }
        }
        while let Ok(cp) = rx.try_recv() {
            push(&mut pending, cp);
        }
        let Some(cp) = pending.front() else {
            continue;
        };
        let mut req = client.post(settings.url.clone()).json(cp);
        if let Some(token) = &settings.token {
            req = req.bearer_auth(token.expose());
        }
        let outcome = match req.send().await {
            Ok(res) if res.status().is_success() => Ok(()),
            Ok(res) => Err(format!("it answered {}", res.status())),
            Err(e) => Err(e.without_url().to_string()),
        };
        match outcome {
            Ok(()) => {
                pending.pop_front();
                delay = Duration::from_secs(1);
                if failing {
                    tracing::info!("the audit witness takes checkpoints again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "the audit witness did not take a checkpoint; retrying with backoff");
                    failing = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    cp = rx.recv(), if open => match cp {
                        Some(cp) => push(&mut pending, cp),
                        None => open = false,
                    },
                }
                delay = (delay * 2).min(WITNESS_MAX_BACKOFF);
            }
        }
    }
}

/// Where a checkpoint was read: a mirror file's name or a witness file's
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub checkpoint: Checkpoint,
    pub origin: String,
}

/// What is wrong with the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorFault {
    /// No key to check checkpoints with.
    NoKey,
    /// Records, and no checkpoint.
    Missing,
    /// The newest checkpoint is older than the interval allows and the
    /// head is past it.
    Behind,
    /// A checkpoint signed by a key that is not trusted.
    UnknownKey,
    /// A checkpoint whose signature does not verify.
    Forged,
    /// A checkpoint the store contradicts (a rewritten or cut trail).
    Contradicted,
}

/// The first thing wrong with the anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorProblem {
    pub fault: AnchorFault,
    pub message: String,
}

/// The newest checkpoint, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Newest {
    pub seq: i64,
    pub at: String,
    pub node: String,
    pub key_id: String,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    pub ok: bool,
    /// Checkpoints that verified and agree with the store.
    pub checkpoints: u64,
    /// The one signed last.
    pub newest: Option<Newest>,
    /// The ids of the keys trusted.
    pub trusted_keys: Vec<String>,
    pub problem: Option<AnchorProblem>,
}

/// Checks `found` checkpoints against the store's `records` and `head`:
/// each must be signed by a trusted key and agree with the store; there
/// must be one when the store has records, and the newest must not trail
/// a head past it by more than `max_lag` at `now_us`.
pub fn check(
    records: &[AuditRecord],
    head: (i64, &str),
    found: &[Found],
    keys: &TrustedKeys,
    now_us: i64,
    max_lag: Duration,
) -> AnchorReport {
    let mut report = AnchorReport {
        ok: false,
        checkpoints: 0,
        newest: None,
        trusted_keys: keys.ids(),
        problem: None,
    };
    let fail = |mut report: AnchorReport, fault, message: String| {
        report.problem = Some(AnchorProblem { fault, message });
        report
    };
    if keys.is_empty() && (head.0 > 0 || !found.is_empty()) {
        let why = keys
            .missing
            .clone()
            .unwrap_or_else(|| "no public key to check checkpoints with".into());
        return fail(
            report,
            AnchorFault::NoKey,
            format!("cannot check the anchor: {why}"),
        );
    }
    let by_seq: BTreeMap<i64, &str> = records.iter().map(|r| (r.seq, r.hash.as_str())).collect();
    let mut sorted: Vec<&Found> = found.iter().collect();
    sorted.sort_by_key(|f| (f.checkpoint.seq, f.checkpoint.at_us));
    let mut newest: Option<&Checkpoint> = None;
    let mut covered = 0i64;
    for f in sorted {
        let cp = &f.checkpoint;
        let said = format!(
            "the checkpoint of record {} signed by node {:?} at {} ({})",
            cp.seq,
            cp.node,
            cp.at(),
            f.origin
        );
        match cp.verify(keys) {
            Err(Fault::UnknownKey) => {
                return fail(
                    report,
                    AnchorFault::UnknownKey,
                    format!(
                        "{said} is signed by key {}, which is not trusted (trusted: {}); \
                         a forged checkpoint, or another node's key to trust with --trusted-key",
                        cp.key_id,
                        keys.ids().join(", ")
                    ),
                );
            }
            Err(Fault::Forged) => {
                return fail(
                    report,
                    AnchorFault::Forged,
                    format!(
                        "{said} does not verify with key {}: it was forged or altered",
                        cp.key_id
                    ),
                );
            }
            Ok(()) => {}
        }
        let stored = if cp.seq == 0 {
            Some(GENESIS)
        } else {
            by_seq.get(&cp.seq).copied()
        };
        match stored {
            Some(h) if h == cp.hash => {}
            Some(h) => {
                return fail(
                    report,
                    AnchorFault::Contradicted,
                    format!(
                        "{said} says its hash is {}, the store's record {} has {}: \
                         the store's trail was rewritten up to there",
                        short(&cp.hash),
                        cp.seq,
                        short(h)
                    ),
                );
            }
            None => {
                return fail(
                    report,
                    AnchorFault::Contradicted,
                    format!(
                        "{said} names a record the store does not hold (its head is record {}): \
                         records were removed",
                        head.0
                    ),
                );
            }
        }
        report.checkpoints += 1;
        covered = covered.max(cp.seq);
        if newest.is_none_or(|n| cp.at_us > n.at_us) {
            newest = Some(cp);
        }
    }
    let Some(newest) = newest else {
        if head.0 == 0 {
            report.ok = true;
            return report;
        }
        return fail(
            report,
            AnchorFault::Missing,
            format!(
                "the store holds {} records and no checkpoint of them was found: \
                 the anchor is missing (mirror files deleted, or never written)",
                head.0
            ),
        );
    };
    report.newest = Some(Newest {
        seq: newest.seq,
        at: newest.at(),
        node: newest.node.clone(),
        key_id: newest.key_id.clone(),
    });
    let age_us = now_us.saturating_sub(newest.at_us);
    let lag_us = i64::try_from(max_lag.as_micros()).unwrap_or(i64::MAX);
    if head.0 > covered && age_us > lag_us {
        return fail(
            report,
            AnchorFault::Behind,
            format!(
                "the anchor is behind: the newest checkpoint (record {covered}, signed at {}) is \
                 {} s old, more than the {} s the checkpoint interval allows, and the store's head \
                 is record {}: records {}..{} are not anchored (checkpoints removed, or no node \
                 checkpointing: compare the running nodes' mirrors too)",
                newest.at(),
                age_us / 1_000_000,
                max_lag.as_secs(),
                head.0,
                covered + 1,
                head.0
            ),
        );
    }
    report.ok = true;
    report
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Reads a witness's export: one checkpoint (JSON) a line; blank lines are
/// skipped. A line that is not a checkpoint is an error naming it.
pub fn read_witness_file(path: &Path) -> Result<Vec<Found>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = file_name(path);
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint: Checkpoint = serde_json::from_str(line)
            .map_err(|e| format!("{name} line {}: not a checkpoint: {e}", i + 1))?;
        found.push(Found {
            checkpoint,
            origin: format!("{name} line {}", i + 1),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, hash: &str) -> AuditRecord {
        AuditRecord {
            seq,
            entry: Default::default(),
            prev_hash: String::new(),
            hash: hash.into(),
        }
    }

    fn found(cp: Checkpoint) -> Found {
        Found {
            checkpoint: cp,
            origin: "test".into(),
        }
    }

    #[test]
    fn keys_are_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(KEY_FILE);
        let (a, created) = Signer::load_or_create(&path, "n1").unwrap();
        assert!(created);
        let (b, created) = Signer::load_or_create(&path, "n1").unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = a.public().to_string();
        assert_eq!(text.parse::<PublicKey>().unwrap(), a.public());
        assert!("zz".parse::<PublicKey>().is_err());
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            Signer::load_or_create(&path, "n1"),
            Err(KeyError::Parse { .. })
        ));
    }

    #[test]
    fn checkpoints_verify_only_with_their_key_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = Signer::load_or_create(&dir.path().join("k.pem"), "n1").unwrap();
        let (other, _) = Signer::load_or_create(&dir.path().join("o.pem"), "n2").unwrap();
        let trusted = TrustedKeys::of(&[signer.public()]);
        let cp = signer.sign(3, "abc", 1);
        assert_eq!(cp.verify(&trusted), Ok(()));
        assert_eq!(
            other.sign(3, "abc", 1).verify(&trusted),
            Err(Fault::UnknownKey)
        );
        let mut altered = cp.clone();
        altered.seq = 4;
        assert_eq!(altered.verify(&trusted), Err(Fault::Forged));
        // Another key's signature under this key's id.
        let mut borrowed = other.sign(3, "abc", 1);
        borrowed.key_id = signer.key_id().into();
        assert_eq!(borrowed.verify(&trusted), Err(Fault::Forged));
    }

    #[test]
    fn the_anchor_fails_when_missing_behind_or_contradicted() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = Signer::load_or_create(&dir.path().join("k.pem"), "n1").unwrap();
        let keys = TrustedKeys::of(&[signer.public()]);
        let records = [record(1, "h1"), record(2, "h2"), record(3, "h3")];
        let lag = Duration::from_secs(120);
        let now = 1_000_000_000_000;
        let run =
            |found: &[Found], head: (i64, &str)| check(&records, head, found, &keys, now, lag);
        let fault = |r: AnchorReport| r.problem.map(|p| p.fault);

        assert_eq!(fault(run(&[], (3, "h3"))), Some(AnchorFault::Missing));
        let recent = found(signer.sign(3, "h3", now - 1_000_000));
        let r = run(std::slice::from_ref(&recent), (3, "h3"));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.newest.unwrap().seq, 3);
        // Behind: old checkpoint, head past it.
        let old = found(signer.sign(2, "h2", now - 600_000_000));
        assert_eq!(
            fault(run(std::slice::from_ref(&old), (3, "h3"))),
            Some(AnchorFault::Behind)
        );
        // An old checkpoint of the head itself is not behind (nothing since).
        assert!(run(&[found(signer.sign(3, "h3", 0))], (3, "h3")).ok);
        // A recent checkpoint with the head a little past it: allowed.
        assert!(run(&[found(signer.sign(2, "h2", now - 1_000_000))], (3, "h3")).ok);
        // Contradicted: a different hash, or a record the store lacks.
        let wrong = found(signer.sign(2, "hX", now));
        assert_eq!(
            fault(run(&[wrong], (3, "h3"))),
            Some(AnchorFault::Contradicted)
        );
        let gone = found(signer.sign(4, "h4", now));
        assert_eq!(
            fault(run(&[gone], (3, "h3"))),
            Some(AnchorFault::Contradicted)
        );
        // An empty trail's checkpoint.
        assert!(run(&[found(signer.sign(0, GENESIS, now))], (0, GENESIS)).ok);
        // No key at all.
        let none = check(
            &records,
            (3, "h3"),
            &[recent],
            &TrustedKeys::default(),
            now,
            lag,
        );
        assert_eq!(fault(none), Some(AnchorFault::NoKey));
    }
}
