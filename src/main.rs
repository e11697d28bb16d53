fn main() -> std::process::ExitCode {
    keep_freed_memory();
    hfmesh::cli::main()
}

/// Makes glibc keep freed heap memory for reuse. quinn copies every received datagram batch
/// into a fresh buffer; with glibc's defaults the heap shrinks and grows again under that churn,
/// and a 1 GiB agent-to-agent pull spent about a tenth of the puller's CPU in page faults
/// there (under 2% with these settings; see the README's benchmark notes). The cost: the
/// process keeps the memory of its peak (bounded by that peak, about 150 MiB in the benchmark)
/// instead of handing it back. Runs before any other thread exists.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Free memory at the top of a heap glibc keeps rather than returns to the kernel.
        const TRIM_THRESHOLD: i32 = 256 << 20;
        /// Allocations from this size get their own mapping (glibc's default adapts between
        /// 128 KiB and 32 MiB); fixed, so 4 MiB chunk buffers come from the heap.
        const MMAP_THRESHOLD: i32 = 32 << 20;
        // SAFETY: `mallopt` only sets allocator parameters; called before any other thread
        // exists, with valid parameter numbers and values.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}
