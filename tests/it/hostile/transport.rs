//! Transport and exposure: a real `meridian serve` speaks TLS from PEM
//! files and takes a renewed certificate without a restart; it refuses to
//! put tokens on a network in the clear unless told `--insecure-http`;
//! and API answers show paths on the server (which name the data dir, and
//! so the store's file) to admins only.

use crate::node::{Node, Token, meridian_node};
use meridian_tests::{ADMIN_TOKEN, TestNode, fixtures};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM,
/// key PEM, cert DER).
fn certificate() -> (String, String, Vec<u8>) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (
        c.cert.pem(),
        c.key_pair.serialize_pem(),
        c.cert.der().to_vec(),
    )
}

/// A client that trusts only `cert_pem`, on a new connection per client.
fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The certificate the server presented for `GET <url>`, or the error.
async fn served_certificate(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let res = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let info = res.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    Ok(info.peer_certificate().unwrap().to_vec())
}

/// Writes a file by a temporary file and a rename, as certificate
/// renewal tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `serve` with `[api] tls_cert` / `tls_key`: HTTPS only (a plain HTTP
/// request gets no answer), the certificate renewed on disk is what new
/// connections get within seconds, a broken pair on disk leaves the one
/// in use serving, and SIGTERM still stops the node cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_and_takes_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let (cert_a, key_a, der_a) = certificate();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(
        &config,
        format!("[api]\ntls_cert = {cert_path:?}\ntls_key = {key_path:?}\n"),
    )
    .unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    let mut node = Node::start("tls", cmd, dir.path(), Token::FirstAdmin).await;
    assert!(
        node.base().starts_with("https://127.0.0.1:"),
        "{}",
        node.base()
    );
    let health = node.url("/api/v2/health");
    assert_eq!(
        served_certificate(&trusting(&cert_a), &health)
            .await
            .unwrap(),
        der_a
    );
    // An authenticated call over TLS.
    let res = trusting(&cert_a)
        .get(node.url("/api/v2/jobs"))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    // Plain HTTP on the same port is no way in.
    let plain = reqwest::Client::new()
        .get(health.replacen("https://", "http://", 1))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // The certificate renewed on disk.
    let (cert_b, key_b, der_b) = certificate();
    replace(&key_path, &key_b);
    replace(&cert_path, &cert_b);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(der) = served_certificate(&trusting(&cert_b), &health).await {
            assert_eq!(der, der_b);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served\n{}",
            node.log_tail(50)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = served_certificate(&trusting(&cert_a), &health).await;
    assert!(old.is_err(), "the old certificate is still served: {old:?}");

    // A broken pair (a key that is not the certificate's) is not taken.
    let (_, key_c, _) = certificate();
    replace(&key_path, &key_c);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.stderr().contains("the changed TLS files do not load") {
        assert!(Instant::now() < deadline, "{}", node.log_tail(50));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        served_certificate(&trusting(&cert_b), &health)
            .await
            .unwrap(),
        der_b
    );

    let status = node.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
}

/// Runs `meridian-node <args>` until it prints its listening line (then
/// returns the child and that line) or exits (then returns its stderr).
async fn serve_until_listening(
    data: &Path,
    plugins: &Path,
    args: &[&str],
) -> Result<(std::process::Child, String), (Option<i32>, String)> {
    let log = data.with_extension("stderr");
    let mut child = meridian_node(data, plugins)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("meridian listening on ").nth(1) {
            return Ok((child, rest.lines().next().unwrap_or("").to_owned()));
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err((status.code(), text));
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn stop(mut child: std::process::Child) {
    let pid = child.id();
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `serve --listen 0.0.0.0:…` without TLS is refused before anything
/// starts, with an error that names both ways out; each way out works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_needs_insecure_http_in_so_many_words() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let data = dir.path().join("refused");
    let refused = serve_until_listening(&data, &plugins, &["serve", "--listen", "0.0.0.0:0"]).await;
    let Err((code, stderr)) = refused else {
        panic!("a non-loopback plain HTTP listener was opened")
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to serve plain HTTP on 0.0.0.0:0")
            && stderr.contains("--tls-cert and --tls-key")
            && stderr.contains("--insecure-http"),
        "{stderr}"
    );
    assert!(!data.join("meridian.db").exists(), "the store was opened");
    // `[::]` too; and loopback needs nothing.
    let v6 = serve_until_listening(&data, &plugins, &["serve", "--listen", "[::]:0"]).await;
    assert!(matches!(v6, Err((Some(2), _))), "{v6:?}");

    // Said in so many words.
    let data = dir.path().join("insecure");
    let (child, line) = serve_until_listening(
        &data,
        &plugins,
        &["serve", "--listen", "0.0.0.0:0", "--insecure-http"],
    )
    .await
    .unwrap();
    assert!(line.starts_with("http://0.0.0.0:"), "{line}");
    let port = line.rsplit(':').next().unwrap();
    let res = reqwest::get(format!("http://127.0.0.1:{port}/api/v2/health"))
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    stop(child);

    // With a certificate, on the command line.
    let (cert, key, _) = certificate();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let data = dir.path().join("tls");
    let (child, line) = serve_until_listening(
        &data,
        &plugins,
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            dir.path().join("cert.pem").to_str().unwrap(),
            "--tls-key",
            dir.path().join("key.pem").to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    assert!(line.starts_with("https://0.0.0.0:"), "{line}");
    let port = line.rsplit(':').next().unwrap();
    let url = format!("https://127.0.0.1:{port}/api/v2/health");
    served_certificate(&trusting(&cert), &url).await.unwrap();
    stop(child);

    // A certificate that does not load is refused with the files named.
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let bad = serve_until_listening(
        &dir.path().join("bad"),
        &plugins,
        &[
            "serve",
            "--tls-cert",
            dir.path().join("cert.pem").to_str().unwrap(),
            "--tls-key",
            dir.path().join("key.pem").to_str().unwrap(),
        ],
    )
    .await;
    let Err((code, stderr)) = bad else {
        panic!("served with a key that does not load")
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("key.pem") && stderr.contains("do not make a server certificate"),
        "{stderr}"
    );
}

/// One request through the router with this token.
async fn get(
    state: std::sync::Arc<meridian::api::AppState>,
    token: &str,
    uri: &str,
) -> (reqwest::StatusCode, String) {
    use tower::ServiceExt as _;
    let req = axum::http::Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = meridian::api::router(state).oneshot(req).await.unwrap();
    let status = reqwest::StatusCode::from_u16(res.status().as_u16()).unwrap();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A viewer, an operator and an auditor see no path on the server in the
/// plugin list, a plugin's inspection, the step types or the health
/// details (the data dir there named the store's file, which a read-only
/// SQL grant then attached); an admin still sees them, and every role
/// still gets the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_name_server_paths_to_admins_only() {
    use meridian::auth::{Role, create_token};
    let node = TestNode::start("", &[fixtures::TRIVIAL]).await;
    let state = std::sync::Arc::clone(&node.state);
    std::fs::create_dir_all(state.log_dir.join("audit")).unwrap();
    let data_dir = node.data_dir.path().to_str().unwrap().to_owned();
    let fixture_dir = Path::new(fixtures::TRIVIAL)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let routes = [
        "/api/v2/plugins",
        "/api/v2/plugins/trivial",
        "/api/v2/steps/types",
        "/api/v2/health",
    ];
    for role in [Role::Viewer, Role::Operator, Role::Auditor] {
        let (token, _, _) = create_token(&state.store, Some(role.as_str()), role, "test")
            .await
            .unwrap();
        for uri in routes {
            let (status, body) = get(state.clone(), &token, uri).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{uri} as {role:?}: {body}");
            assert!(
                !body.contains(&data_dir) && !body.contains(&fixture_dir),
                "{uri} as {role:?} names a server path: {body}"
            );
        }
        let (_, body) = get(state.clone(), &token, "/api/v2/plugins/trivial").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["source"], serde_json::json!({"kind": "file"}), "{body}");
        let (_, body) = get(state.clone(), &token, "/api/v2/health").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let logs = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "logs")
            .unwrap();
        assert!(
            logs["detail"].as_str().unwrap().contains("writable"),
            "{body}"
        );
    }
    let (_, body) = get(state.clone(), ADMIN_TOKEN, "/api/v2/plugins/trivial").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["source"]["path"], fixtures::TRIVIAL, "{body}");
    let (_, body) = get(state.clone(), ADMIN_TOKEN, "/api/v2/health").await;
    assert!(
        body.contains(&data_dir),
        "an admin sees where the logs are: {body}"
    );
    let (_, body) = get(state, ADMIN_TOKEN, "/api/v2/plugins").await;
    assert!(body.contains(fixtures::TRIVIAL), "{body}");
}
