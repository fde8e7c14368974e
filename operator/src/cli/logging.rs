//! The logs of the subcommands that run the controller (`netfence run`, `netfence sandbox`):
//! `RUST_LOG` (or the command's default filter), text or JSON lines, colour only on a terminal.
//!
//! ```text
//! RUST_LOG, or the command's default --> filter --> text (ANSI only when the writer is a terminal and
//!                                                   NO_COLOR is unset) | json --> stdout (run) | stderr (sandbox)
//! ```
//!
//! A file or a pipe (`netfence run 2>&1 | tee run.log`, a container runtime's log file) gets
//! plain text: escape codes there are noise in every viewer but a terminal.

use std::io::IsTerminal;

use tracing_subscriber::{
    EnvFilter, Layer as _, Registry, layer::SubscriberExt as _, reload,
    util::SubscriberInitExt as _,
};

/// Log formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`netfence run`: nothing else is printed there).
    Stdout,
    /// Standard error (`netfence sandbox`, whose stdout is its report).
    Stderr,
}

impl Target {
    fn is_terminal(self) -> bool {
        match self {
            Target::Stdout => std::io::stdout().is_terminal(),
            Target::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// Whether text logs to `target` are coloured: only on a terminal, and never with `NO_COLOR`
/// set to anything but the empty string (<https://no-color.org>).
fn colour(target: Target) -> bool {
    target.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Changes the filter after start-up, unless `RUST_LOG` chose it (the user's choice stands).
pub struct FilterHandle {
    handle: reload::Handle<EnvFilter, Registry>,
    from_environment: bool,
}

impl FilterHandle {
    /// Use `directives` from now on, unless `RUST_LOG` is set.
    pub fn set_default(&self, directives: &str) {
        if !self.from_environment {
            let _ = self.handle.reload(EnvFilter::new(directives));
        }
    }
}

/// Install the global subscriber: `RUST_LOG` when set (and valid), else `default_directives`.
/// `None` when one is installed already (a test that runs the command twice).
pub fn init(format: LogFormat, target: Target, default_directives: &str) -> Option<FilterHandle> {
    let (filter, from_environment) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        Err(_) => (EnvFilter::new(default_directives), false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let layer = tracing_subscriber::fmt::layer().with_ansi(colour(target));
    let layer = match (format, target) {
        (LogFormat::Text, Target::Stdout) => layer.with_writer(std::io::stdout).boxed(),
        (LogFormat::Text, Target::Stderr) => layer.with_writer(std::io::stderr).boxed(),
        (LogFormat::Json, Target::Stdout) => layer.json().with_writer(std::io::stdout).boxed(),
        (LogFormat::Json, Target::Stderr) => layer.json().with_writer(std::io::stderr).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .ok()?;
    Some(FilterHandle {
        handle,
        from_environment,
    })
}
