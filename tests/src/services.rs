//! External services the integration tests use: real database servers on
//! loopback, a private PostgreSQL cluster, tmpfs volumes, which `.ci/run`
//! installs and starts.
//!
//! A test that needs them is declared with [`crate::needs_services!`]: it
//! runs where the services are promised (`CI=true`, or
//! `MERIDIAN_TEST_SERVICES=1` after running the services block of
//! `.ci/run` as root) and is reported *ignored*, with that reason,
//! everywhere else. Inside such a test a missing service is a failure that
//! says what is missing and how to start it: these helpers panic rather
//! than let the test pass without running. Each reads its URL from an
//! environment variable, falling back to what `.ci/run` starts.
//!
//! The benchmarks, which measure what they can reach, use the `try_`
//! forms, which say why a service cannot be used instead of panicking.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A server the tests can reach: its URL (credentials included; tests move
/// the password into a secret) and the parts taken from it.
#[derive(Debug, Clone)]
pub struct Service {
    /// What the tests call it, e.g. "PostgreSQL".
    pub name: &'static str,
    /// The URL or connection string as given.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// PostgreSQL: `MERIDIAN_TEST_PG_URL`, by default the cluster `.ci/run`
/// starts on 127.0.0.1:5432. Panics when it cannot be reached.
pub fn postgres() -> Service {
    try_postgres().unwrap_or_else(|why| missing(&why))
}

/// [`postgres`], or why it cannot be reached.
pub fn try_postgres() -> Result<Service, String> {
    url_service(
        "PostgreSQL",
        "MERIDIAN_TEST_PG_URL",
        "postgres://meridian_test:meridian-test-pw@127.0.0.1:5432/meridian_test",
        5432,
    )
}

/// MySQL or MariaDB: `MERIDIAN_TEST_MYSQL_URL`, by default the MariaDB
/// `.ci/run` starts on 127.0.0.1:3306. Panics when it cannot be reached.
pub fn mysql() -> Service {
    url_service(
        "MariaDB/MySQL",
        "MERIDIAN_TEST_MYSQL_URL",
        "mysql://meridian_test:meridian-test-pw@127.0.0.1:3306/meridian_test",
        3306,
    )
    .unwrap_or_else(|why| missing(&why))
}

/// The URL of [`postgres`].
pub fn postgres_url() -> String {
    postgres().url
}

/// The failure of a test whose service is missing where it was promised.
fn missing(why: &str) -> ! {
    panic!(
        "{why}. This test needs the services .ci/run starts (it runs under CI=true or \
         MERIDIAN_TEST_SERVICES=1 and is ignored elsewhere); a missing one is a failure"
    )
}

/// A SQL Server to test against: a real one when `MSSQL_URL` holds its
/// ADO connection string, else the iridium-server emulator `.ci/run` starts
/// (`MERIDIAN_TEST_IRIDIUM_URL`, by default 127.0.0.1:11433).
#[derive(Debug, Clone)]
pub struct Mssql {
    pub service: Service,
    /// True for iridium-server, whose documented gaps some tests accept.
    pub emulator: bool,
}

/// See [`Mssql`]. Panics when it cannot be reached.
pub fn mssql() -> Mssql {
    if let Some(url) = env("MSSQL_URL") {
        return ado_service("SQL Server (MSSQL_URL)", "MSSQL_URL", &url)
            .map(|service| Mssql {
                service,
                emulator: false,
            })
            .unwrap_or_else(|why| missing(&why));
    }
    let url = env("MERIDIAN_TEST_IRIDIUM_URL").unwrap_or_else(|| {
        "server=tcp:127.0.0.1,11433;user=meridian_test;password=meridian-test-pw".into()
    });
    ado_service(
        "iridium-server (SQL Server emulator)",
        "MERIDIAN_TEST_IRIDIUM_URL",
        &url,
    )
    .map(|service| Mssql {
        service,
        emulator: true,
    })
    .unwrap_or_else(|why| missing(&why))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn url_service(name: &'static str, var: &str, default: &str, port: u16) -> Result<Service, String> {
    let url = env(var).unwrap_or_else(|| default.to_string());
    // scheme://user:password@host:port/database
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (auth, hostpart) = rest.split_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let hostport = hostpart.split(['/', '?']).next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(port)),
        None => (hostport.to_string(), port),
    };
    let service = Service {
        name,
        url: url.clone(),
        host,
        port,
        user: user.to_string(),
        password: password.to_string(),
    };
    reachable(&service, var)
}

fn ado_service(name: &'static str, var: &str, ado: &str) -> Result<Service, String> {
    let get = |keys: &[&str]| {
        ado.split(';').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            keys.contains(&k.trim().to_ascii_lowercase().as_str())
                .then(|| v.trim().to_string())
        })
    };
    let server = get(&["server", "data source"]).unwrap_or_default();
    let server = server.strip_prefix("tcp:").unwrap_or(&server);
    let (host, port) = match server.split_once(',') {
        Some((h, p)) => (h.to_string(), p.trim().parse().unwrap_or(1433)),
        None => (server.to_string(), 1433),
    };
    let service = Service {
        name,
        url: ado.to_string(),
        host,
        port,
        user: get(&["user", "user id", "uid"]).unwrap_or_default(),
        password: get(&["password", "pwd"]).unwrap_or_default(),
    };
    reachable(&service, var)
}

fn reachable(service: &Service, var: &str) -> Result<Service, String> {
    let addr = format!("{}:{}", service.host, service.port);
    let ok = addr.to_socket_addrs().ok().is_some_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    });
    if ok {
        return Ok(service.clone());
    }
    Err(format!(
        "{} is not reachable at {addr} (set {var}, or run the services block of .ci/run as root to install and start it)",
        service.name
    ))
}

/// A PostgreSQL cluster of a test's own: `initdb` in a temporary directory
/// and a `postgres` server on a free loopback port, run as the `postgres`
/// user, so a fault test can stop, hang and restart it without touching
/// the shared server other tests use. It needs the server binaries (Debian's
/// `postgresql` package, which `.ci/run` installs) and root (to run the
/// server as `postgres`); without them the test fails (declare it with
/// [`crate::needs_services!`]). Dropping it stops the server and removes its
/// files.
#[cfg(unix)]
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

#[cfg(unix)]
impl PrivatePostgres {
    /// Creates and starts the cluster; panics, saying why, where it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|why| {
            missing(&format!(
                "a private PostgreSQL cluster cannot be started: {why} (run as root with \
                 the postgresql package installed, as .ci/run does)"
            ))
        })
    }

    fn try_start() -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".into());
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
        let dir = tempfile::Builder::new()
            .prefix("meridian-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let pg = Self { dir, bin, port };
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(pg.dir.path())
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !chown.success() {
            return Err(format!(
                "chown postgres {}: {chown}",
                pg.dir.path().display()
            ));
        }
        pg.run_as_postgres(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        pg.start_again()?;
        Ok(pg)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn run_as_postgres(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .map_err(|e| format!("runuser {program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The URL a store connects with (the `postgres` superuser, trusted on
    /// loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.dir.path().join("server.log").to_string_lossy(),
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server at once (`immediate`: sessions are cut as a crash
    /// would cut them).
    pub fn stop(&self) -> Result<(), String> {
        self.run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Freezes (`true`) or thaws (`false`) the server and every backend
    /// (SIGSTOP / SIGCONT): connections are accepted by the kernel but
    /// nothing answers, as with a hung host.
    pub fn freeze(&self, frozen: bool) -> Result<(), String> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .map_err(|e| format!("postmaster.pid: {e}"))?;
        let postmaster: i32 = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("postmaster.pid holds no pid")?;
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc")
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        let signal = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        Ok(())
    }
}

#[cfg(unix)]
impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.freeze(false);
        let _ = self.stop();
    }
}

/// A small tmpfs of a test's own, for a volume that fills up: mounted on
/// a temporary directory, unmounted when dropped. It needs root (to mount);
/// without it it skips loudly, and under `CI=true` it fails.
#[cfg(unix)]
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

#[cfg(unix)]
impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes; panics, saying why, where it
    /// cannot.
    pub fn mount(bytes: u64) -> Self {
        let attempt = || -> Result<Self, String> {
            if !nix::unistd::geteuid().is_root() {
                return Err("not root".into());
            }
            let dir = tempfile::Builder::new()
                .prefix("meridian-tmpfs-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let out = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(dir.path())
                .output()
                .map_err(|e| format!("mount: {e}"))?;
            if !out.status.success() {
                return Err(format!("mount: {}", String::from_utf8_lossy(&out.stderr)));
            }
            Ok(Self { dir })
        };
        attempt().unwrap_or_else(|why| {
            missing(&format!(
                "a tmpfs cannot be mounted: {why} (run as root, as .ci/run does)"
            ))
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills it: writes `filler` until the volume has no room; returns the
    /// file, whose removal frees the space.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // What is left (less than a chunk) too.
        while file.write(b"x").is_ok_and(|n| n > 0) {}
        path
    }
}

#[cfg(unix)]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
