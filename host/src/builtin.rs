//! The built-in plugins, compiled from the workspace's plugins/ crates by
//! the build script and embedded in the binary.

/// File name and component bytes of each built-in plugin.
pub const PLUGINS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
