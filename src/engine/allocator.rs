//! What the C allocator keeps after face work, and how much of it goes back to the system.
//!
//! dlib allocates its scratch (the upsampled image, the network's activations: buffers of a few
//! hundred KB to a few MB) with malloc on whichever pool thread does the work. glibc serves each
//! thread from an arena of its own and, once a large block has been freed, raises its mmap
//! threshold past such sizes (up to 32 MB), so from then on every thread's arena keeps the
//! largest scratch it ever held. Measured with `serve` at 640x480 (4 clients, 2 pool threads):
//! 120 MB resident after the load with glibc's defaults, 99 MB with the threshold fixed at
//! 256 KiB, the peak unchanged (it is what is live at once).

/// Blocks of at least this many bytes are mapped for themselves and unmapped when freed.
pub const MMAP_THRESHOLD: usize = 256 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] (which also stops it from rising), so
/// scratch buffers go back to the system when a request ends instead of staying in the arena
/// of the thread that used them. A threshold the user set (`MALLOC_MMAP_THRESHOLD_` or
/// `GLIBC_TUNABLES`) wins. Process-wide, idempotent.
pub fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
        if user_set {
            return;
        }
        const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
        extern "C" {
            fn mallopt(
                param: std::os::raw::c_int,
                value: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        // SAFETY: mallopt takes two ints and only changes glibc's allocation policy for later
        // calls; M_MMAP_THRESHOLD (-3 in glibc's malloc.h) accepts any value up to 32 MB.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD as std::os::raw::c_int);
        }
    }
}

/// Hands memory the allocator keeps free back to the system. A large detection frees tens of MB
/// in buffers of a few MB each; returning them at once keeps the full-size decode that follows
/// from stacking on top of them (measured before the fixed threshold: 50-60 MB of a 25 MP
/// photo's peak). Blocks below the threshold freed in the middle of a heap go back too.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and locks each arena it trims; it
        // only returns free pages to the kernel and is safe to call from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}
