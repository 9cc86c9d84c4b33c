//! The acceptance, at the unit level: routing by zone and local
//! date with a controlled clock, retention, rotation and gzip, secrets
//! absent from every file and from stderr, both formats, and the install
//! path through the reloadable subscriber. Each test has its own
//! subscriber (`with_default`) and its own temp dir.

use super::*;
use chrono::{TimeDelta, TimeZone};
use serde_json::{Value, json};
use std::io::Read as _;
use std::sync::Mutex;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt as _;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn fixed(now: DateTime<Utc>) -> Clock {
    Arc::new(move || now)
}

fn router(
    root: &Path,
    config: &LogConfig,
    masker: Masker,
    now: DateTime<Utc>,
) -> (RouterLayer, LogHandle) {
    RouterLayer::builder(root, config, Arc::new(masker))
        .with_clock(fixed(now))
        .build()
        .unwrap()
}

/// Every file under `dir`, gzip inflated, with its path relative to `dir`.
fn all_files(dir: &Path) -> Vec<(PathBuf, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push((path.strip_prefix(base).unwrap().to_path_buf(), read(&path)));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        text
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

fn json_lines(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn zones_get_their_local_date_and_executions_their_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs");
    // 23:50 UTC on the 29th: already the 30th in Kolkata (+05:30), still
    // the 29th in Los Angeles (−07:00).
    let now = at("2026-03-29T23:50:00Z");
    let (layer, handle) = router(&root, &LogConfig::default(), Masker::default(), now);
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        let kolkata = tracing::info_span!(
            "execution",
            execution_id = "exec-kolkata",
            job_id = "nightly-report",
            zone = "Asia/Kolkata"
        );
        kolkata.in_scope(|| {
            let step = tracing::info_span!("step", step_id = "fetch");
            step.in_scope(|| {
                tracing::info!(target: "meridian::step", attempt = 1u32, "fetched 3 rows");
            });
        });
        let la = tracing::info_span!(
            "execution",
            execution_id = "exec-la",
            job_id = "payroll",
            zone = "America/Los_Angeles"
        );
        la.in_scope(
            || tracing::warn!(target: "meridian::capability", host = "example.com", "denied"),
        );
        tracing::info!(target: "meridian::scheduler", due = 2u64, "tick");
    });
    handle.flush().unwrap();

    let kolkata = json_lines(&root.join("timezones/Asia_Kolkata/2026-03-30.log"));
    assert_eq!(
        kolkata,
        vec![json!({
            "ts": "2026-03-29T23:50:00.000Z",
            "level": "INFO",
            "target": "meridian::step",
            "message": "fetched 3 rows",
            "fields": {"attempt": 1},
            "span": {"execution_id": "exec-kolkata", "job_id": "nightly-report", "zone": "Asia/Kolkata", "step_id": "fetch"},
        })]
    );
    assert_eq!(
        json_lines(&root.join("executions/exec-kolkata.log")),
        kolkata
    );
    let la = json_lines(&root.join("timezones/America_Los_Angeles/2026-03-29.log"));
    assert_eq!(la.len(), 1);
    assert_eq!(la[0]["message"], "denied");
    assert_eq!(la[0]["span"]["zone"], "America/Los_Angeles");
    assert_eq!(json_lines(&root.join("executions/exec-la.log")), la);
    let system = json_lines(&root.join("system/2026-03-29.log"));
    assert_eq!(system.len(), 1, "{system:?}");
    assert_eq!(system[0]["message"], "tick");
    assert_eq!(system[0]["span"], json!({}));
    // Nothing else was written.
    let names: Vec<PathBuf> = all_files(&root).into_iter().map(|(p, _)| p).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        execution_log_path(&root, "exec-la"),
        Some(root.join("executions/exec-la.log"))
    );
    assert_eq!(
        zone_log_path(&root, chrono_tz::Asia::Kolkata, now),
        root.join("timezones/Asia_Kolkata/2026-03-30.log")
    );
}

#[test]
fn audit_and_performance_go_to_their_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, handle) = router(
        dir.path(),
        &LogConfig::default(),
        Masker::default(),
        at("2026-03-30T01:00:00Z"),
    );
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        tracing::info!(target: "meridian::audit", actor = "alice", "job changed");
        tracing::info!(target: "meridian::audit::grants", "grant changed");
        tracing::info!(target: "meridian::performance", queue_depth = 4u64, "snapshot");
        tracing::info!(target: "meridian::auditor", "not audit");
        let span = tracing::info_span!("execution", execution_id = "e-1", zone = "Europe/Berlin");
        span.in_scope(|| tracing::info!(target: "meridian::audit", "cancelled by alice"));
    });
    handle.flush().unwrap();
    let audit = json_lines(&dir.path().join("audit/2026-03-30.log"));
    let messages: Vec<&str> = audit
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["job changed", "grant changed", "cancelled by alice"]
    );
    assert_eq!(
        json_lines(&dir.path().join("performance/2026-03-30.log")).len(),
        1
    );
    let system = json_lines(&dir.path().join("system/2026-03-30.log"));
    assert_eq!(system.len(), 1);
    assert_eq!(system[0]["target"], "meridian::auditor");
    // An audit event of an execution is in its files too.
    assert_eq!(json_lines(&dir.path().join("executions/e-1.log")).len(), 1);
    assert_eq!(
        json_lines(&dir.path().join("timezones/Europe_Berlin/2026-03-30.log")).len(),
        1
    );
}

#[test]
fn text_format_is_one_readable_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        format: LogFormat::Text,
        ..LogConfig::default()
    };
    let (layer, handle) = router(
        dir.path(),
        &config,
        Masker::default(),
        at("2026-03-29T23:50:00Z"),
    );
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        let span = tracing::info_span!("execution", execution_id = "e-2", zone = "Asia/Kolkata");
        span.in_scope(|| {
            tracing::info!(target: "meridian::step", step_id = "fetch", attempt = 2u32, "line one\nline two");
        });
    });
    handle.flush().unwrap();
    assert_eq!(
        read(&dir.path().join("executions/e-2.log")),
        "2026-03-29T23:50:00.000Z  INFO meridian::step{execution_id=e-2 zone=Asia/Kolkata}: \
         line one\\nline two step_id=fetch attempt=2\n"
    );
}

#[test]
fn unknown_zones_and_bad_ids_still_log_somewhere_safe() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, handle) = router(
        dir.path(),
        &LogConfig::default(),
        Masker::default(),
        at("2026-03-29T23:50:00Z"),
    );
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        let span = tracing::info_span!(
            "execution",
            execution_id = "../../etc/passwd",
            zone = "Mars/Olympus"
        );
        span.in_scope(|| tracing::info!("hello"));
    });
    handle.flush().unwrap();
    let files: Vec<PathBuf> = all_files(dir.path()).into_iter().map(|(p, _)| p).collect();
    assert_eq!(files, [PathBuf::from("timezones/unknown/2026-03-29.log")]);
    assert_eq!(execution_log_path(dir.path(), "../../etc/passwd"), None);
    assert_eq!(execution_log_path(dir.path(), ""), None);
}

#[test]
fn a_secret_never_reaches_a_file_or_stderr() {
    const SECRET: &str = "hunter2-Sup3r";
    // A secret with characters JSON escapes: its escaped form must not
    // appear either.
    const QUOTED: &str = "pa\"ss\\word";
    for format in [LogFormat::Json, LogFormat::Text] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            format,
            max_file_bytes: 600,
            ..LogConfig::default()
        };
        let (layer, handle) = router(
            dir.path(),
            &config,
            Masker::new([SECRET, QUOTED]),
            at("2026-03-29T23:50:00Z"),
        );
        tracing::subscriber::with_default(Registry::default().with(layer), || {
            let span = tracing::info_span!(
                "execution",
                execution_id = "e-3",
                zone = "UTC",
                token = SECRET
            );
            span.in_scope(|| {
                for i in 0..5u32 {
                    tracing::info!(target: "meridian::step", i, header = %format!("Bearer {SECRET}"), "step printed {SECRET}");
                    tracing::warn!(target: "meridian::capability", body = ?QUOTED, "sent {QUOTED} to the API");
                }
                let error = std::io::Error::other(format!("login failed for {SECRET}"));
                tracing::error!(error = &error as &(dyn std::error::Error + 'static), "failed");
            });
            tracing::info!(target: "meridian::audit", password = QUOTED, "audited");
        });
        handle.flush().unwrap();
        let files = all_files(dir.path());
        assert!(
            files
                .iter()
                .any(|(p, _)| p.to_string_lossy().ends_with(".gz")),
            "rotation should have made gzip segments too: {files:?}"
        );
        let escaped = serde_json::to_string(QUOTED).unwrap();
        let escaped = escaped.trim_matches('"');
        for (path, text) in &files {
            assert!(
                !text.contains(SECRET),
                "{format:?} {}: {text}",
                path.display()
            );
            assert!(
                !text.contains(QUOTED),
                "{format:?} {}: {text}",
                path.display()
            );
            assert!(
                !text.contains(escaped),
                "{format:?} {}: {text}",
                path.display()
            );
            assert!(
                !text.contains("hunter2"),
                "{format:?} {}: {text}",
                path.display()
            );
            assert!(
                text.contains("***"),
                "{format:?} {}: {text}",
                path.display()
            );
        }
    }

    // stderr, through the process subscriber's stack.
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = {
        let captured = Arc::clone(&captured);
        Arc::new(move |bytes: &[u8]| captured.lock().unwrap().extend_from_slice(bytes))
    };
    let (stack, slots) = subscriber::stack(subscriber::LogFilter::parse("info").unwrap(), sink);
    let data = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(stack, || {
        let handle = slots
            .install(
                &LogConfig {
                    level: "info".into(),
                    ..LogConfig::default()
                },
                Arc::new(Masker::new([SECRET])),
                data.path(),
            )
            .unwrap();
        tracing::warn!(target: "meridian::step", value = SECRET, "leaked {SECRET}");
        handle.flush().unwrap();
    });
    let stderr = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    assert!(stderr.contains("leaked ***"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    for (path, text) in all_files(&data.path().join("logs")) {
        assert!(!text.contains(SECRET), "{}: {text}", path.display());
    }
}

#[test]
fn install_routes_through_the_reloadable_subscriber() {
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = {
        let captured = Arc::clone(&captured);
        Arc::new(move |bytes: &[u8]| captured.lock().unwrap().extend_from_slice(bytes))
    };
    let (stack, slots) = subscriber::stack(subscriber::LogFilter::parse("info").unwrap(), sink);
    let data = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(stack, || {
        tracing::info!("before install: stderr only");
        let handle = slots
            .install(
                &LogConfig {
                    // The execution span is `info`: routing must work anyway.
                    level: "warn".into(),
                    stderr: false,
                    ..LogConfig::default()
                },
                Arc::new(Masker::default()),
                data.path(),
            )
            .unwrap();
        let span = tracing::info_span!("execution", execution_id = "e-4", zone = "Asia/Tokyo");
        span.in_scope(|| {
            tracing::info!("filtered out by level = warn");
            tracing::warn!("kept");
        });
        tracing::warn!("after install: files only");
        handle.flush().unwrap();
        assert_eq!(handle.root(), data.path().join("logs"));
    });
    let stderr = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    assert!(stderr.contains("before install"), "{stderr}");
    assert!(
        !stderr.contains("after install"),
        "stderr = false: {stderr}"
    );
    let exec = json_lines(&data.path().join("logs/executions/e-4.log"));
    assert_eq!(exec.len(), 1, "{exec:?}");
    assert_eq!(exec[0]["message"], "kept");
    assert_eq!(exec[0]["span"]["zone"], "Asia/Tokyo");
    let files = all_files(&data.path().join("logs"));
    let system: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.starts_with("system"))
        .collect();
    assert_eq!(system.len(), 1, "{files:?}");
    assert!(system[0].1.contains("after install"));
    assert!(!system[0].1.contains("before install"));
}

#[test]
fn rotation_closes_segments_in_order_and_gzips_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_file_bytes: 1000,
        ..LogConfig::default()
    };
    let (layer, handle) = router(
        dir.path(),
        &config,
        Masker::default(),
        at("2026-03-30T12:00:00Z"),
    );
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        for i in 0..40u32 {
            tracing::info!(target: "meridian::scheduler", i, "a line long enough to fill a kilobyte in a few");
        }
    });
    handle.flush().unwrap();
    let system = dir.path().join("system");
    let mut names: Vec<String> = std::fs::read_dir(&system)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names.contains(&"2026-03-30.1.log.gz".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"2026-03-30.log".to_string()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".tmp") || n.ends_with(".1.log")),
        "{names:?}"
    );
    // Read back in order: segments 1, 2, … then the live file.
    let segments = names.len() - 1;
    let mut order = Vec::new();
    for n in 1..=segments {
        let path = system.join(format!("2026-03-30.{n}.log.gz"));
        assert!(std::fs::metadata(&path).unwrap().len() < 1000);
        order.extend(json_lines(&path));
    }
    let live = system.join("2026-03-30.log");
    assert!(std::fs::metadata(&live).unwrap().len() <= 1000);
    order.extend(json_lines(&live));
    let seq: Vec<u64> = order
        .iter()
        .map(|l| l["fields"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..40).collect::<Vec<u64>>());
}

#[test]
fn retention_removes_what_is_too_old_keeps_audit_and_gzips_past_days() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // 02:00 UTC: the 30th in UTC and in Kolkata, still the 29th in Los
    // Angeles.
    let now = at("2026-03-30T02:00:00Z");
    let file = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    };
    let old_files = [
        "timezones/Asia_Kolkata/2025-12-29.log", // 90 + 1 days
        "timezones/Asia_Kolkata/2025-11-01.2.log.gz",
        "timezones/Pacific_Kiritimati/2025-12-01.log", // a zone that has no other file
        "system/2026-02-27.log",                       // 31 days
        "system/2026-02-01.1.log.gz",
        "performance/2026-03-15.log", // 15 days
        "audit/2019-03-01.log",       // 2,586 days: over 7 years
    ];
    for rel in old_files {
        file(rel, "{}\n");
    }
    let kept_live = [
        "timezones/Asia_Kolkata/2025-12-30.log", // exactly 90 days: kept
        "system/2026-02-28.log",                 // 30 days
        "performance/2026-03-16.log",
        "audit/2019-04-01.log", // old, but within 7 years
    ];
    for rel in kept_live {
        file(rel, &format!("{{\"kept\":\"{rel}\"}}\n"));
    }
    let today = [
        "timezones/Asia_Kolkata/2026-03-30.log",
        // Still the 29th in Los Angeles: not sealed.
        "timezones/America_Los_Angeles/2026-03-29.log",
        "system/2026-03-30.log",
    ];
    for rel in today {
        file(rel, "{}\n");
    }
    let leftover = file("system/2026-03-29.1.log", "{\"left\":1}\n");
    let unrelated = file("system/notes.txt", "mine");
    let set_mtime = |path: &Path, when: DateTime<Utc>| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when.into())
            .unwrap();
    };
    let old_exec = file("executions/old-exec.log", "{}\n");
    set_mtime(&old_exec, now - TimeDelta::days(31));
    let old_exec_segment = file("executions/old-exec.1.log.gz", "");
    set_mtime(&old_exec_segment, now - TimeDelta::days(40));
    let new_exec = file("executions/new-exec.log", "{}\n");
    set_mtime(&new_exec, now - TimeDelta::days(29));

    let (layer, handle) = router(root, &LogConfig::default(), Masker::default(), now);
    let report =
        tracing::subscriber::with_default(Registry::default().with(layer), || handle.cleanup());
    handle.flush().unwrap();

    let mut removed: Vec<String> = report
        .removed
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    removed.sort();
    let mut expected: Vec<String> = old_files
        .iter()
        .map(|s| s.to_string())
        .chain([
            "executions/old-exec.log".into(),
            "executions/old-exec.1.log.gz".into(),
        ])
        .collect();
    expected.sort();
    assert_eq!(removed, expected, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    for rel in &expected {
        assert!(!root.join(rel).exists(), "{rel} should be gone");
    }
    assert!(!root.join("timezones/Pacific_Kiritimati").exists());
    // Kept days that are over were closed and gzipped, readable with flate2.
    for rel in kept_live {
        let gz = root.join(rel.replace(".log", ".1.log.gz"));
        assert_eq!(read(&gz), format!("{{\"kept\":\"{rel}\"}}\n"), "{rel}");
        assert!(!root.join(rel).exists(), "{rel} should now be gzipped");
    }
    assert_eq!(
        read(&root.join("system/2026-03-29.1.log.gz")),
        "{\"left\":1}\n"
    );
    assert!(!leftover.exists());
    for rel in today {
        assert!(root.join(rel).exists(), "{rel} is today's");
    }
    assert!(unrelated.exists());
    assert!(
        new_exec.exists(),
        "an execution's live file is kept, not gzipped"
    );

    // What was removed is logged, to `system`.
    let system = read(&root.join("system/2026-03-30.log"));
    for rel in &expected {
        assert!(system.contains(rel.as_str()), "{rel} not logged: {system}");
    }
}

#[test]
fn cleanup_with_compress_off_keeps_files_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc.with_ymd_and_hms(2026, 3, 30, 12, 0, 0).unwrap();
    let past = dir.path().join("system/2026-03-20.log");
    std::fs::create_dir_all(past.parent().unwrap()).unwrap();
    std::fs::write(&past, "{}\n").unwrap();
    let config = LogConfig {
        compress: false,
        ..LogConfig::default()
    };
    let (_layer, handle) = router(dir.path(), &config, Masker::default(), now);
    let report = handle.cleanup();
    handle.flush().unwrap();
    assert_eq!(report, CleanupReport::default());
    assert!(past.exists());
}

#[test]
fn dropped_lines_are_reported_before_the_next_line() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, handle) = router(
        dir.path(),
        &LogConfig::default(),
        Masker::default(),
        at("2026-03-30T12:00:00Z"),
    );
    handle.shared.count_dropped(7);
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        let span = tracing::info_span!("execution", execution_id = "e-5", zone = "UTC");
        span.in_scope(|| tracing::info!("after the gap"));
    });
    handle.flush().unwrap();
    assert_eq!(handle.dropped(), 7);
    let system = json_lines(&dir.path().join("system/2026-03-30.log"));
    assert_eq!(system.len(), 1);
    assert_eq!(system[0]["level"], "WARN");
    assert_eq!(system[0]["target"], "meridian::logging");
    assert_eq!(system[0]["fields"]["dropped"], 7);
    assert_eq!(json_lines(&dir.path().join("executions/e-5.log")).len(), 1);
}
