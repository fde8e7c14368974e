//! The `netfence` binary: see [`netfence::cli`].

fn main() -> std::process::ExitCode {
    netfence::cli::main()
}
