//! CPU clocks for the books: a stage's `cpu_seconds` is thread CPU time summed over
//! the workers that ran it, and a run's `cpu_seconds` is the process's user + system
//! time, so the numbers mean the same on a loaded and on an idle machine (wall time
//! does not). `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` is a system call (~0.1 µs), so
//! the executor reads it per stage per chunk of records, not per record.

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the
    // kernel knows (Linux and macOS both have it).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User + system CPU time of the whole process so far, in seconds.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_advance_with_work() {
        let (t0, p0) = (thread_cpu_nanos(), process_cpu_seconds());
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_nanos() > t0);
        assert!(process_cpu_seconds() > p0);
    }
}
