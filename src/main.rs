//! The `nephrocare` binary: parses the command line and hands over to the library.
//! Everything it runs lives in the workspace's component crates.

fn main() -> std::process::ExitCode {
    nephrocare::cli::main()
}
