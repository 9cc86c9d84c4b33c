//! The `meridian` command under another name, so that integration tests can
//! start real `meridian serve` processes (and kill them): cargo gives a
//! test the path of its own package's binaries only. It is the same one
//! call as `host/src/main.rs`.

fn main() -> std::process::ExitCode {
    meridian::cli::main()
}
