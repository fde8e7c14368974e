//! Writing to stdout when the reader may be gone. `netfence crd | head -1` closes the pipe after
//! one line; Rust ignores SIGPIPE, so the next write fails with `BrokenPipe`, and `print!`
//! panics on it (exit 101). A closed pipe is not an error: the reader has what it wanted.
//!
//! ```text
//! text --write_stdout--> stdout --ok, or closed by the reader--> Ok(())
//!                                '--any other error----------> Err (the command says so)
//! ```

use std::{
    io::{ErrorKind, Write},
    process::ExitCode,
};

/// Write `text` to stdout. A pipe closed by its reader counts as written; any other error is
/// returned.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Run a command that writes its report to stdout (buffered) and its notes and errors to
/// stderr: `execute` returns the exit code. A pipe closed by its reader ends it quietly (the
/// reader has what it wanted: exit 0 while writing, the verdict once all is written); any other
/// failure to write is said on stderr and exits 2 (nothing usable was printed).
pub fn buffered(
    execute: impl FnOnce(&mut dyn Write, &mut dyn Write) -> std::io::Result<u8>,
) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr().lock();
    let result = execute(&mut out, &mut err).and_then(|code| match out.flush() {
        // The reader has what it wanted: the command's verdict stands.
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(code),
        other => other.map(|()| code),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(err, "error: cannot write the output: {error}");
            ExitCode::from(super::EXIT_BAD_INPUT)
        }
    }
}

/// Bad input: every error on stderr as `error: ...`; exit 2, nothing on stdout.
pub fn bad_input(err: &mut dyn Write, errors: &[String]) -> std::io::Result<u8> {
    for error in errors {
        writeln!(err, "error: {error}")?;
    }
    Ok(super::EXIT_BAD_INPUT)
}

/// A line on stdout for a person watching (progress, a summary), which never panics: when stdout
/// is gone, the line is lost and the command goes on.
pub fn line(text: &str) {
    let _ = write_stdout(&format!("{text}\n"));
}

/// `println!` for [`line`]: `say!("applied {name}")`, `say!()` for an empty line. Used by
/// `netfence sandbox`, which a build without the `sandbox` feature does not have.
#[cfg_attr(not(feature = "sandbox"), allow(unused_macros))]
macro_rules! say {
    () => {
        $crate::cli::output::line("")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(&format!($($arg)*))
    };
}
#[cfg_attr(not(feature = "sandbox"), allow(unused_imports))]
pub(crate) use say;
