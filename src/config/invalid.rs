//! A setting whose value is wrong, as a subsystem's conversion of its own section reports it.

/// The key (a path such as `ssf.transmitters[0].jwks_file`) and what is wrong with it. The
/// loader adds the file, making it a [`super::ConfigError::Invalid`]; the subsystems that convert
/// their sections never need to know which file they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The offending key, as a path.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl InvalidSetting {
    /// `key` is wrong because of `problem`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
