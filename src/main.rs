//! The `nephrocare` binary: parses the command line and hands over to the library.
//! Everything it runs lives in the workspace's component crates.

/// mimalloc: the telemetry path allocates and frees many small buffers per reading across
/// threads, where glibc's malloc spent about a quarter of the service's CPU (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (the bindings name no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // mimalloc v3 keeps freed memory for a second before returning it to the system; at
    // saturation that held the service ~50 MiB above its heap (bench/README.md, issue 20).
    // 10 ms (mimalloc v2's default) returns it, for ~3 % more CPU per reading (measured).
    // Unless the operator chose a delay (MIMALLOC_PURGE_DELAY).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option's value (an atomic store in mimalloc), before any thread
        // of ours starts.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10)
        };
    }
    nephrocare::cli::main()
}
