use std::fmt;

/// The one error type of `dmq-types`.
#[derive(Debug, thiserror::Error)]
pub enum TypesError {
    /// A topic name outside `[a-zA-Z0-9._-]{1,249}` (or `.`/`..`).
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },

    /// `services.json` could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// `services.json` is not valid JSON or does not have the expected shape.
    #[error("config file {path} is malformed: {message}")]
    ConfigSyntax { path: String, message: String },

    /// `services.json` parsed, but its content is inconsistent. Every problem is listed.
    #[error("config file {path} has {} problem(s):\n{}", problems.len(), ProblemList(problems))]
    ConfigInvalid {
        path: String,
        problems: Vec<ConfigProblem>,
    },

    /// A certificate, key or CA file for HTTPS could not be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// One thing wrong with a `services.json`, phrased for the operator who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem(pub String);

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct ProblemList<'a>(&'a [ConfigProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}
