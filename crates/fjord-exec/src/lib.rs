//! The only crate that touches a host. It runs commands (always an argv, never a shell string), writes
//! files atomically (temp file + rename), keeps secrets in 0600 files, and applies and undoes the
//! [`fjord_core::Step`]s of a plan.
//!
//! Everything above this crate (planners, daemon, CLI) describes work as data; this crate does it.
//! `clippy.toml` forbids process spawning and `std::fs::write` elsewhere.

pub mod acme;
pub mod backup;
pub mod cmd;
pub mod fsops;
pub mod host;
pub mod http;
pub mod offsite;
pub mod physical;
pub mod probe;
pub mod secrets;
pub mod steps;
pub mod tls;
pub mod users;

pub use cmd::{Cmd, CmdOutput, OutputSink};
pub use host::Host;
pub use secrets::{Secret, SecretStore};
pub use steps::{Executor, StepUndo};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("command `{command}` failed with {status}{}", tail_suffix(.stderr_tail))]
    Failed { command: String, status: String, stderr_tail: String },
    #[error("command `{command}` timed out after {secs} s")]
    Timeout { command: String, secs: u64 },
    #[error("cancelled")]
    Cancelled,
    #[error("secret {0:?} is not in the secrets store")]
    MissingSecret(String),
    #[error("{0}")]
    Other(String),
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

pub type ExecResult<T> = Result<T, ExecError>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError {
    let context = context.into();
    move |source| ExecError::Io { context, source }
}
