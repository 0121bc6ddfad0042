//! The `config` target: YAML bytes through the configuration loader.
//!
//! The input is written as `sessiongate.yaml` into a scratch folder that also holds the
//! example `jwks.json`, so configurations that name it load all the way. Invariant: the loader
//! returns a configuration or a [`ConfigError`] naming this file and, unless the file itself
//! could not be read as text, a key and a problem; it never panics (and never loops: the
//! fuzzer's per-input timeout catches that).

use crate::config::{ConfigError, load};

/// The `config` target (see the module docs). Returns whether the configuration loaded.
pub fn config(data: &[u8]) -> bool {
    let scratch = super::Scratch::new("config");
    let file = scratch.path().join("sessiongate.yaml");
    std::fs::write(
        scratch.path().join("jwks.json"),
        include_bytes!("../../examples/jwks.json"),
    )
    .expect("writing the scratch JWKS");
    std::fs::write(&file, data).expect("writing the scratch config");
    match load(&file) {
        Ok(config) => {
            assert_eq!(config.file, file);
            true
        }
        Err(ConfigError::Invalid {
            file: named,
            key,
            problem,
        }) => {
            assert_eq!(named, file, "the error names the config file");
            assert!(!key.trim().is_empty(), "an error without a key: {problem}");
            assert!(
                !problem.trim().is_empty(),
                "an error without a problem at {key}"
            );
            false
        }
        Err(ConfigError::Unreadable {
            file: named,
            message,
        }) => {
            assert_eq!(named, file, "the error names the config file");
            assert!(
                std::str::from_utf8(data).is_err(),
                "a UTF-8 file under 1 MiB was unreadable: {message}"
            );
            false
        }
    }
}
