//! The `nephrocare` binary: parses the command line and hands over to the library.
//! Everything it runs lives in the workspace's component crates.

/// mimalloc: the telemetry path allocates and frees many small buffers per reading across
/// threads, where glibc's malloc spent about a quarter of the service's CPU (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nephrocare::cli::main()
}
