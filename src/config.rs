//! Settings: command-line flags win over `VECTORGATE_*` environment variables, which win
//! over the TOML file given with `--config`, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
pub const DEFAULT_DATA: &str = "./vectorgate-data";
pub const DEFAULT_MAX_K: usize = 10_000;

/// The settings file, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub max_k: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub max_k: usize,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

impl Config {
    /// Merge flag-or-environment values (already resolved by clap) over the file.
    pub fn resolve(
        listen: Option<String>,
        data: Option<PathBuf>,
        max_k: Option<usize>,
        file: FileConfig,
    ) -> anyhow::Result<Config> {
        let listen = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            anyhow::anyhow!("invalid listen address \"{listen}\": expected ADDR:PORT")
        })?;
        let max_k = max_k.or(file.max_k).unwrap_or(DEFAULT_MAX_K);
        if max_k == 0 {
            anyhow::bail!("max_k must be at least 1");
        }
        Ok(Config {
            listen,
            data: data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            max_k,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_in() {
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:7000\"\nmax_k = 50\n").expect("toml");
        let c = Config::resolve(None, Some("/tmp/x".into()), None, file).expect("config");
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.max_k, 50);
        assert_eq!(c.data, PathBuf::from("/tmp/x"));
        let c = Config::resolve(Some("0.0.0.0:1".into()), None, None, FileConfig::default())
            .expect("config");
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.data, PathBuf::from(DEFAULT_DATA));
        assert!(Config::resolve(Some("nope".into()), None, None, FileConfig::default()).is_err());
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }
}
