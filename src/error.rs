//! The config-error type: an error in the user's config or command line, which
//! `curate` reports with exit code 2 (every other error exits with 1).

/// An error in the user's config or command line: `curate` exits with code 2.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Shorthand: a config error as an `anyhow::Error`.
pub fn config_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ConfigError(msg.into()))
}
