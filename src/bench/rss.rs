//! Peak resident memory, for benchmarks that report what a run cost in RAM.

/// Peak RSS of this process in bytes (`VmHWM`), when the OS reports it.
pub fn peak_self_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Largest peak RSS of any waited-for child (FFmpeg), in bytes.
pub fn peak_children_bytes() -> Option<u64> {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (rc == 0).then(|| usage.ru_maxrss.max(0) as u64 * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_peak() {
        let _grow = vec![1u8; 8 << 20];
        let peak = super::peak_self_bytes().expect("linux reports VmHWM");
        assert!(peak > 8 << 20, "{peak}");
        assert!(super::peak_children_bytes().is_some());
    }
}
