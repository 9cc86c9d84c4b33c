//! The audit trail under attack: a flood of requests without a valid token
//! cannot grow it, and a trail rewritten with every hash recomputed is
//! caught by the signed checkpoints of its head, whatever was done to the
//! mirror files (deleted, gzipped) or to the checkpoints (forged, the key
//! gone, the newest ones removed).

use meridian_tests::{ADMIN_TOKEN, TestNode};
use serde_json::Value;
use std::sync::Arc;

/// The API's `api` records with this decision, oldest first.
async fn api_records(
    state: &meridian::api::AppState,
    decision: &str,
) -> Vec<meridian::audit::AuditRecord> {
    state
        .store
        .audit_query(&meridian::audit::AuditQuery {
            kind: Some("api".into()),
            decision: Some(decision.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// 4,000 requests without a token or with a forged one, sent over real
/// connections to the router `serve` runs: the trail grows by one
/// aggregate record for the source (counts summing to 4,000, with the
/// window and the routes hit most), a token holder's 403 is still a record
/// of its own, and the node still answers a normal request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_without_a_valid_token_adds_a_handful_of_records() {
    let node = TestNode::start("", &[]).await;
    let state = Arc::clone(&node.state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meridian::api::serve(listener, Arc::clone(&state), async {
        let _ = stopped.await;
    }));
    state.audit.flush().await;
    let before = state.store.audit_head().await.unwrap().0;

    let client = reqwest::Client::new();
    const FLOOD: usize = 4_000;
    let routes = [
        "/api/v2/jobs",
        "/api/v2/audit",
        "/api/v2/tokens",
        "/api/v2/executions",
    ];
    let mut sent = futures_unordered(FLOOD, |i| {
        let client = client.clone();
        let url = format!("{base}{}", routes[i % routes.len()]);
        async move {
            let req = if i % 2 == 0 {
                client.get(url)
            } else {
                client
                    .post(url)
                    .bearer_auth(format!("mrd_forged{i}"))
                    .body("{}")
            };
            req.send().await.unwrap().status()
        }
    })
    .await;
    sent.sort();
    sent.dedup();
    assert_eq!(sent, [reqwest::StatusCode::UNAUTHORIZED]);

    // A viewer trying an admin route: individual, with the token's name.
    let (viewer, _, _) = meridian::auth::create_token(
        &state.store,
        Some("flood-viewer"),
        meridian::auth::Role::Viewer,
        "test",
    )
    .await
    .unwrap();
    let forbidden = client
        .get(format!("{base}/api/v2/tokens"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), reqwest::StatusCode::FORBIDDEN);

    // The host still serves a token holder.
    let ok = client
        .get(format!("{base}/api/v2/jobs"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), reqwest::StatusCode::OK);

    // Stopping flushes the window.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    state.audit.flush().await;
    let after = state.store.audit_head().await.unwrap().0;
    // The aggregate record, the viewer's token creation and its 403.
    assert_eq!(after - before, 3, "the trail grew by {}", after - before);

    let aggregated = api_records(&state, "unauthenticated").await;
    assert_eq!(aggregated.len(), 1, "{aggregated:#?}");
    let record = &aggregated[0].entry;
    assert_eq!(record.target.as_deref(), Some("127.0.0.1"));
    assert_eq!(record.actor.as_deref(), Some("anonymous"));
    let data: Value = serde_json::from_str(record.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["count"], FLOOD as u64, "{data:#}");
    assert_eq!(data["no_token"], (FLOOD / 2) as u64, "{data:#}");
    assert_eq!(data["invalid_token"], (FLOOD / 2) as u64, "{data:#}");
    let routes_total: u64 = data["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(routes_total, FLOOD as u64, "{data:#}");
    assert!(data["window_start"].as_str().unwrap() <= data["window_end"].as_str().unwrap());
    assert!(
        record
            .detail
            .as_deref()
            .unwrap()
            .contains("4000 requests without a valid token from 127.0.0.1"),
        "{record:#?}"
    );

    let refused = api_records(&state, "forbidden").await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(
        refused[0].entry.actor.as_deref(),
        Some("token:flood-viewer")
    );
    assert_eq!(
        refused[0].entry.target.as_deref(),
        Some("GET /api/v2/tokens")
    );
    assert!(
        meridian::audit::verify_store(&state.store)
            .await
            .unwrap()
            .ok
    );
}

/// Runs `n` futures made by `make`, 64 at a time, and collects their
/// results.
async fn futures_unordered<F, T>(n: usize, make: impl Fn(usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut running = tokio::task::JoinSet::new();
    for i in 0..n {
        if running.len() >= 64 {
            out.push(running.join_next().await.unwrap().unwrap());
        }
        running.spawn(make(i));
    }
    while let Some(r) = running.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// A data dir whose trail is written by real `meridian` processes (the
/// test crate's `meridian-node`): each command mirrors its records to
/// `logs/audit/` and signs a checkpoint of the head as it ends.
struct Trail {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    plugins: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Trail {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
        std::fs::create_dir_all(&plugins).unwrap();
        let config_path = dir.path().join("meridian.toml");
        std::fs::write(&config_path, config).unwrap();
        Self {
            dir,
            data,
            plugins,
            config: config_path,
        }
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = crate::node::meridian_node(&self.data, &self.plugins);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// Runs `meridian <args>`: exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.command().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// One token per name: one audit record and one checkpoint each.
    fn tokens(&self, names: &[&str]) {
        for name in names {
            let (code, out, err) =
                self.run(&["token", "create", "--role", "viewer", "--name", name]);
            assert_eq!(code, Some(0), "{out}{err}");
        }
    }

    /// `audit verify --json <more>`: the exit code and the report.
    fn verify(&self, more: &[&str]) -> (Option<i32>, Value) {
        let mut args = vec!["audit", "verify", "--json"];
        args.extend_from_slice(more);
        let (code, out, err) = self.run(&args);
        let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        (code, report)
    }

    fn audit_dir(&self) -> std::path::PathBuf {
        self.data.join("logs").join("audit")
    }

    fn db(&self) -> std::path::PathBuf {
        self.data.join("meridian.db")
    }

    /// The mirror's files, by name.
    fn files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.audit_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// The attacker's edit: record `seq`'s actor changed in the SQLite
    /// file, its hash and every later one recomputed, the head moved to
    /// match — the chain alone then verifies. Returns the rewritten trail.
    async fn rewrite(&self, seq: i64) -> Vec<meridian::audit::AuditRecord> {
        use sqlx::Connection as _;
        let store = meridian::store::Store::open_sqlite(&self.db())
            .await
            .unwrap();
        let mut records = store.audit_all().await.unwrap();
        store.close().await;
        let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.db().display()))
            .await
            .unwrap();
        let i = records.iter().position(|r| r.seq == seq).unwrap();
        records[i].entry.actor = Some("nobody".into());
        let mut prev = records[i].prev_hash.clone();
        for r in &mut records[i..] {
            r.prev_hash = prev.clone();
            r.hash = r.entry.chain_hash(&prev);
            sqlx::query(
                "UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
            )
            .bind(&r.entry.actor)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind(r.seq)
            .execute(&mut raw)
            .await
            .unwrap();
            prev = r.hash.clone();
        }
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&prev)
            .execute(&mut raw)
            .await
            .unwrap();
        raw.close().await.unwrap();
        records
    }

    /// The attacker's edit of the mirror: every line passed through `edit`
    /// (`None` drops it).
    fn edit_mirror(&self, edit: impl Fn(Value) -> Option<Value>) {
        for file in self.files() {
            let text = std::fs::read_to_string(&file).unwrap();
            let kept: Vec<String> = text
                .lines()
                .filter_map(|l| match serde_json::from_str::<Value>(l) {
                    Ok(v) => edit(v).map(|v| v.to_string()),
                    Err(_) => Some(l.to_owned()),
                })
                .collect();
            std::fs::write(&file, kept.join("\n") + "\n").unwrap();
        }
    }

    /// Rewrites the mirrored records' hashes to the rewritten trail's.
    fn rewrite_mirror(&self, records: &[meridian::audit::AuditRecord]) {
        self.edit_mirror(|mut v| {
            if v["message"] == "audit record" {
                let seq = v["fields"]["seq"].as_i64().unwrap();
                if let Some(r) = records.iter().find(|r| r.seq == seq) {
                    v["fields"]["hash"] = Value::from(r.hash.clone());
                }
            }
            Some(v)
        });
    }

    /// Gzips every mirror file as the log rotation names a closed segment
    /// (`<stem>.<n>.log.gz`) and removes the original.
    fn gzip_mirror(&self) {
        use std::io::Write as _;
        for file in self.files() {
            let name = file.file_name().unwrap().to_str().unwrap();
            let stem = name.strip_suffix(".log").unwrap();
            let gz = file.with_file_name(format!("{stem}.1.log.gz"));
            let mut enc = flate2::write::GzEncoder::new(
                std::fs::File::create(&gz).unwrap(),
                flate2::Compression::default(),
            );
            enc.write_all(&std::fs::read(&file).unwrap()).unwrap();
            enc.finish().unwrap();
            std::fs::remove_file(&file).unwrap();
        }
    }

    /// The host still works after the attack: it appends and the chain
    /// still links.
    fn still_works(&self) {
        self.tokens(&["after-the-attack"]);
        let (code, report) = self.verify(&["--no-mirror"]);
        assert_eq!(code, Some(0), "{report:#}");
        assert_eq!(report["chain_ok"], true);
    }
}

fn reasons(report: &Value) -> String {
    report["reasons"].to_string()
}

/// The attack: the trail rewritten in the SQLite file with every
/// hash recomputed, then the mirror files deleted — `audit verify` said
/// "intact". Now it fails, naming the missing mirror and anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehashed_trail_with_its_mirror_deleted_fails_verify() {
    let trail = Trail::new("");
    trail.tokens(&["one", "two", "three"]);
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["anchor"]["checkpoints"], 3, "{report:#}");

    trail.rewrite(2).await;
    std::fs::remove_dir_all(trail.audit_dir()).unwrap();
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["chain_ok"], true,
        "the chain alone cannot tell: {report:#}"
    );
    assert_eq!(report["ok"], false);
    assert!(
        reasons(&report).contains("the mirror is missing"),
        "{report:#}"
    );
    assert_eq!(
        report["anchor"]["problem"]["fault"], "missing",
        "{report:#}"
    );
    assert!(
        reasons(&report).contains("the anchor is missing"),
        "{report:#}"
    );
    // In text too, on stderr.
    let (code, _, err) = trail.run(&["audit", "verify"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not verified: the mirror is missing"), "{err}");
    trail.still_works();
}

/// The same rewrite with the mirror gzipped instead (verify read only
/// `*.log`): the gzipped copies are read and contradict the store, as do
/// the checkpoints in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehashed_trail_with_its_mirror_gzipped_fails_verify() {
    let trail = Trail::new("");
    trail.tokens(&["one", "two", "three"]);
    trail.rewrite(2).await;
    trail.gzip_mirror();
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["mirror"]["gzipped"], report["mirror"]["files"],
        "{report:#}"
    );
    assert_eq!(report["mirror"]["problem"]["seq"], 2, "{report:#}");
    assert_eq!(
        report["anchor"]["problem"]["fault"], "contradicted",
        "{report:#}"
    );
    assert!(
        reasons(&report).contains("the store's trail was rewritten"),
        "{report:#}"
    );
    trail.still_works();
}

/// The good path: an untouched trail whose mirror was gzipped by the
/// rotation verifies, from the gzipped files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_trail_with_gzipped_files_verifies() {
    let trail = Trail::new("");
    trail.tokens(&["one", "two"]);
    trail.gzip_mirror();
    let (code, out, err) = trail.run(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("agrees: 2 records"), "{out}");
    assert!(out.contains("anchor holds: 2 checkpoints"), "{out}");
    let (_, report) = trail.verify(&[]);
    assert_eq!(
        report["mirror"]["gzipped"], report["mirror"]["files"],
        "{report:#}"
    );
    assert!(
        report["mirror"]["gzipped"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
}

/// Mirror files compressed in a form verify does not read, or damaged,
/// are not skipped silently: verify fails and names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_files_that_cannot_be_read_fail_verify() {
    let trail = Trail::new("");
    trail.tokens(&["one"]);
    let dir = trail.audit_dir();
    std::fs::write(dir.join("2020-01-01.log.zst"), b"(zstd)").unwrap();
    std::fs::write(dir.join("2020-01-02.1.log.gz"), b"\x1f\x8b\x08 damaged").unwrap();
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    let unread = report["mirror"]["unread"].to_string();
    assert!(
        unread.contains("2020-01-01.log.zst") && unread.contains("2020-01-02.1.log.gz"),
        "{report:#}"
    );
    assert!(reasons(&report).contains("could not be read"), "{report:#}");
    // Nothing in the API report names a directory of the server.
    assert!(
        !report.to_string().contains(trail.data.to_str().unwrap()),
        "{report:#}"
    );
}

/// The attacker rewrites the mirror to match the rewritten store, and
/// forges checkpoints for it: signed with a key of their own (not
/// trusted), or with the real key's id and an altered head (the
/// signature does not verify).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_checkpoints_fail_verify() {
    let trail = Trail::new("");
    trail.tokens(&["one", "two", "three"]);
    let records = trail.rewrite(2).await;
    trail.rewrite_mirror(&records);
    let head = records.last().unwrap().clone();
    let now = chrono::Utc::now().timestamp_micros();

    // Their own key.
    let own = trail.dir.path().join("attacker.pem");
    let (attacker, _) = meridian::audit::anchor::Signer::load_or_create(&own, "local").unwrap();
    let forged = attacker.sign(head.seq, &head.hash, now);
    trail.edit_mirror(|mut v| {
        if v["message"] == "audit checkpoint" {
            for (k, x) in [
                ("seq", Value::from(forged.seq)),
                ("hash", Value::from(forged.hash.clone())),
                ("at_us", Value::from(forged.at_us)),
                ("key_id", Value::from(forged.key_id.clone())),
                ("signature", Value::from(forged.signature.clone())),
            ] {
                v["fields"][k] = x;
            }
        }
        Some(v)
    });
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["mirror"]["ok"], true,
        "the mirror was made to agree: {report:#}"
    );
    assert_eq!(
        report["anchor"]["problem"]["fault"], "unknown_key",
        "{report:#}"
    );
    assert!(
        reasons(&report).contains("which is not trusted"),
        "{report:#}"
    );

    // The real key's id, the rewritten head, a signature that is not the
    // key's.
    let (_, out, _) = trail.run(&["audit", "key", "--json"]);
    let key: Value = serde_json::from_str(&out).unwrap();
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    trail.edit_mirror(|mut v| {
        if v["message"] == "audit checkpoint" {
            v["fields"]["key_id"] = Value::from(key_id.clone());
        }
        Some(v)
    });
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["anchor"]["problem"]["fault"], "forged", "{report:#}");
    trail.still_works();
}

/// The key that signed the checkpoints is gone (deleted to hide whose
/// checkpoints these are, or to have the next process make a new one):
/// verify cannot trust anything and says so; given the public key, as on
/// another machine, it checks with that alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_anchor_key_fails_verify_and_the_public_key_is_enough() {
    let trail = Trail::new("");
    trail.tokens(&["one", "two"]);
    let (code, public, err) = trail.run(&["audit", "key"]);
    assert_eq!(code, Some(0), "{err}");
    let public = public.trim().to_owned();
    let key = trail.data.join("audit-signing-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::remove_file(&key).unwrap();
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["anchor"]["problem"]["fault"], "no_key", "{report:#}");
    assert!(
        reasons(&report).contains("audit-signing-key.pem is missing"),
        "{report:#}"
    );
    assert!(!key.exists(), "verify must not make a key");

    let (code, report) = trail.verify(&["--trusted-key", &public]);
    assert_eq!(code, Some(0), "{report:#}");

    // The next writer makes a new key; the old checkpoints are then of a
    // key this node does not trust, until the old public key is given.
    trail.tokens(&["three"]);
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["anchor"]["problem"]["fault"], "unknown_key",
        "{report:#}"
    );
    let (_, new_public, _) = trail.run(&["audit", "key"]);
    let (code, report) =
        trail.verify(&["--trusted-key", &public, "--trusted-key", new_public.trim()]);
    assert_eq!(code, Some(0), "{report:#}");
}

/// The attacker rewrites the last record, the mirror to match, and drops
/// the checkpoints that cover it: the newest checkpoint left is older than
/// the interval allows while the store's head is past it — the anchor is
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_behind_anchor_fails_verify() {
    // One-second checkpoints: the anchor may trail by two seconds.
    let trail = Trail::new("[audit]\ncheckpoint_interval_s = 1\n");
    trail.tokens(&["one", "two", "three"]);
    let records = trail.rewrite(3).await;
    trail.rewrite_mirror(&records);
    trail.edit_mirror(|v| {
        (!(v["message"] == "audit checkpoint" && v["fields"]["seq"] == 3)).then_some(v)
    });
    // Within the allowance it cannot be told from a checkpoint yet to come.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["mirror"]["ok"], true, "{report:#}");
    assert_eq!(report["anchor"]["problem"]["fault"], "behind", "{report:#}");
    assert_eq!(report["anchor"]["newest"]["seq"], 2, "{report:#}");
    assert!(
        reasons(&report).contains("records 3..3 are not anchored"),
        "{report:#}"
    );
    trail.still_works();
}

/// What the witness was sent: the `Authorization` header and the body.
type Received = Arc<std::sync::Mutex<Vec<(Option<String>, Value)>>>;

/// A witness on loopback: it keeps every checkpoint POSTed to it (after a
/// first refusal, which the node retries), with the bearer token sent.
struct WitnessServer {
    addr: std::net::SocketAddr,
    received: Received,
    _task: tokio::task::JoinHandle<()>,
}

impl WitnessServer {
    async fn start() -> Self {
        use axum::http::{HeaderMap, StatusCode};
        let received: Received = Arc::default();
        let refused_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let kept = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/checkpoints",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let kept = Arc::clone(&kept);
                let refused_once = Arc::clone(&refused_once);
                async move {
                    if !refused_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    kept.lock().unwrap().push((auth, body.0));
                    StatusCode::CREATED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            received,
            _task: task,
        }
    }

    fn checkpoints(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A serving node POSTs its checkpoints to the witness (retrying after a
/// refusal, with the bearer token from its secret), the last one as it
/// stops. An attacker who holds the node's signing key can rewrite the
/// store and the mirror and re-sign every checkpoint in it, which the
/// node's own files cannot show — but the witness's export can:
/// `audit verify --witness-file` finds its checkpoints contradicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_keeps_checkpoints_that_catch_a_resigned_trail() {
    use crate::node::{Node, Token};
    let witness = WitnessServer::start().await;
    let trail = Trail::new(&format!(
        "[secrets]\nwitness_token = \"w-secret-token\"\n\n[audit]\ncheckpoint_interval_s = 1\n\
         witness_url = \"http://{}/checkpoints\"\nwitness_token_secret = \"witness_token\"\n",
        witness.addr
    ));
    let mut node = Node::start(
        "witnessed",
        trail.command(),
        trail.dir.path(),
        Token::FirstAdmin,
    )
    .await;
    assert!(
        node.stderr().contains("created the audit signing key"),
        "{}",
        node.stderr()
    );
    let http = reqwest::Client::new();
    for name in ["one", "two"] {
        let res = http
            .post(node.url("/api/v2/tokens"))
            .bearer_auth(node.token())
            .json(&serde_json::json!({"role": "viewer", "name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    }
    // The first admin token, the two new ones and the two requests that
    // made them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !witness.checkpoints().iter().any(|c| c["seq"] == 5) {
        assert!(
            std::time::Instant::now() < deadline,
            "the witness got {:#?}",
            witness.checkpoints()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = node.terminate(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let kept = witness.received.lock().unwrap().clone();
    assert!(
        kept.iter()
            .all(|(auth, _)| auth.as_deref() == Some("Bearer w-secret-token")),
        "{kept:#?}"
    );
    let export = trail.dir.path().join("witness.jsonl");
    let lines: Vec<String> = witness.checkpoints().iter().map(Value::to_string).collect();
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let export_arg = export.to_str().unwrap();
    let (code, report) = trail.verify(&["--witness-file", export_arg]);
    assert_eq!(code, Some(0), "{report:#}");

    // The attacker, with the key: store and mirror rewritten, every
    // checkpoint in the mirror re-signed for the rewritten trail.
    let records = trail.rewrite(2).await;
    trail.rewrite_mirror(&records);
    let key = trail.data.join("audit-signing-key.pem");
    trail.edit_mirror(|mut v| {
        if v["message"] == "audit checkpoint" {
            let f = &v["fields"];
            let seq = f["seq"].as_i64().unwrap();
            if let Some(r) = records.iter().find(|r| r.seq == seq) {
                let signer =
                    meridian::audit::anchor::Signer::load(&key, f["node"].as_str().unwrap())
                        .unwrap();
                let cp = signer.sign(seq, &r.hash, f["at_us"].as_i64().unwrap());
                v["fields"]["hash"] = Value::from(cp.hash);
                v["fields"]["signature"] = Value::from(cp.signature);
            }
        }
        Some(v)
    });
    let (code, report) = trail.verify(&[]);
    assert_eq!(
        code,
        Some(0),
        "the node's own files cannot tell: {report:#}"
    );
    let (code, report) = trail.verify(&["--witness-file", export_arg]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["anchor"]["problem"]["fault"], "contradicted",
        "{report:#}"
    );
    assert!(
        reasons(&report).contains("witness.jsonl line"),
        "{report:#}"
    );
    // A witness export that is not checkpoints is an error, not a pass.
    std::fs::write(&export, "{\"seq\": 1}\n").unwrap();
    let (code, _, err) = trail.run(&["audit", "verify", "--witness-file", export_arg]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("witness.jsonl line 1: not a checkpoint"),
        "{err}"
    );
}

meridian_tests::needs_services! {
    /// Two nodes on one PostgreSQL store: each mirrors only the records it
    /// appended and signs its checkpoints with its own key. Each node's files
    /// verify on their own (its checkpoints cover the whole chain); both
    /// nodes' files together need both public keys — a checkpoint of a key
    /// not given is refused, not skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_on_one_postgres_store_each_anchor_the_trail() {
        two_nodes_on_postgres(&meridian_tests::services::postgres_url()).await;
    }
}

async fn two_nodes_on_postgres(base: &str) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("anchor_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let store = meridian::store::Store::open_postgres_schema(base, &schema, 2)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let node = |id: &str| Trail::new(&format!("store = {url:?}\n[cluster]\nnode_id = {id:?}\n"));
    let (n1, n2) = (node("n1"), node("n2"));
    n1.tokens(&["a1"]);
    n2.tokens(&["b1"]);
    n1.tokens(&["a2"]);
    n2.tokens(&["b2"]);
    let key = |t: &Trail| t.run(&["audit", "key"]).1.trim().to_owned();
    let (k1, k2) = (key(&n1), key(&n2));
    assert_ne!(k1, k2);
    for t in [&n1, &n2] {
        let (code, report) = t.verify(&[]);
        assert_eq!(code, Some(0), "{report:#}");
        assert_eq!(report["mirror"]["mirrored"], 2, "{report:#}");
        assert_eq!(report["mirror"]["not_mirrored"], 2, "{report:#}");
    }
    let (d1, d2) = (n1.audit_dir(), n2.audit_dir());
    let both = [
        "--mirror",
        d1.to_str().unwrap(),
        "--mirror",
        d2.to_str().unwrap(),
    ];
    let (code, report) = n1.verify(&both);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["anchor"]["problem"]["fault"], "unknown_key",
        "{report:#}"
    );
    let mut args = both.to_vec();
    args.extend(["--trusted-key", &k1, "--trusted-key", &k2]);
    let (code, report) = n1.verify(&args);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["mirror"]["not_mirrored"], 0, "{report:#}");
    assert_eq!(report["anchor"]["checkpoints"], 4, "{report:#}");
    store.close().await;
}
