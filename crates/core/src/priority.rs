//! OS scheduling priority of the threads that do a bulk ingest's work.
//!
//! A bulk ingest keeps some threads busy for minutes: the embedding service's document model
//! threads (`model.document_nice`), text-search's Tantivy writer, indexing and merge threads
//! (`index.writer_nice`). At the same priority as everything else they take an equal share of
//! the cores from search queries. Raising the nice value of just those threads makes the
//! kernel's scheduler give the cores to query work first whenever both want them, and to the
//! ingest whenever queries leave them idle: the ingest still uses all spare CPU. Linux only
//! (`setpriority(PRIO_PROCESS, tid)` changes one thread; threads a lowered thread spawns
//! inherit its value); a thread may always lower its own priority, never raise it back without
//! `CAP_SYS_NICE`, so the threads that do it only ever run ingest work.

/// Raises the calling thread's nice value by `by` (capped at 19, the lowest priority) and
/// returns the new value. Relative, so a service started under `nice` keeps its query
/// threads where they were and its document threads `by` below them.
#[cfg(target_os = "linux")]
pub fn lower_current_thread(by: u8) -> std::io::Result<i32> {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = Some(rustix::thread::gettid());
    let now = getpriority_process(tid)?;
    let nice = (now + i32::from(by)).min(19);
    setpriority_process(tid, nice)?;
    Ok(nice)
}

#[cfg(not(target_os = "linux"))]
pub fn lower_current_thread(_by: u8) -> std::io::Result<i32> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "per-thread priority is implemented on Linux only",
    ))
}

/// Lowers the calling thread's priority by `by` (0 = leave it), logging instead of failing:
/// a thread at normal priority still does its work correctly, only less politely. `setting`
/// names the configuration key of `by` in the warning.
pub fn lower_or_warn(by: u8, thread: &str, setting: &str) {
    if by == 0 {
        return;
    }
    match lower_current_thread(by) {
        Ok(nice) => tracing::debug!(thread, nice, setting, "thread priority lowered"),
        Err(e) => {
            tracing::warn!(thread, setting, error = %e, "cannot lower the priority of a thread")
        }
    }
}

/// The calling thread's kernel thread id (for tests that read its priority back).
#[cfg(target_os = "linux")]
pub fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_pid()
}

/// Nice value of thread `tid` of this process, read from `/proc` (field 19 of `stat`).
#[cfg(target_os = "linux")]
pub fn nice_of(tid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields after comm start at field 3 (state); nice is field 19.
    fields.get(19 - 3)?.parse().ok()
}

/// Name of thread `tid` of this process (the kernel keeps its first 15 bytes).
#[cfg(target_os = "linux")]
pub fn name_of(tid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

/// Every thread id of this process.
#[cfg(target_os = "linux")]
pub fn all_tids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_only_its_own_priority() {
        let parent = nice_of(current_tid()).expect("own nice value");
        let (tid, nice, seen) = std::thread::spawn(|| {
            let nice = lower_current_thread(3).expect("lowering is always allowed");
            (current_tid(), nice, nice_of(current_tid()))
        })
        .join()
        .expect("thread");
        assert_eq!(nice, (parent + 3).min(19));
        assert_eq!(seen, Some(nice), "the kernel's view of the thread");
        // The thread has exited: its entry is gone; this one is unchanged.
        assert_eq!(nice_of(tid), None);
        assert_eq!(nice_of(current_tid()), Some(parent));
    }
}
