//! The counter confines itself once its input is open, before the first frame is read.
//!
//! 1. `no_new_privs`, then Landlock with every filesystem right handled and none granted (no
//!    file can be opened, created, executed or listed), TCP bind/connect handled and none
//!    granted, and signal and abstract-socket scoping (where the kernel has them).
//! 2. A seccomp filter on every thread: an allowlist of what counting needs (read, write,
//!    poll, memory, futexes, clocks, exit). Everything else — `socket`, `connect`, `bind`,
//!    `open`/`openat`, `execve`, `ptrace`, `clone` of new processes or threads, `ioctl` on the
//!    terminal — fails with `EPERM`. Landlock alone does not stop `socket()`; seccomp does.
//!
//! Threads are spawned before the seccomp filter (it is applied to all threads at once with
//! TSYNC) and after Landlock (which they inherit).

use std::collections::BTreeMap;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule};

/// How far the confinement went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confinement {
    pub landlock: Level,
    pub no_new_privs: bool,
}

/// Landlock enforcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Full,
    Partial,
    None,
}

/// Why the counter could not confine itself.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("Landlock could not be set up: {0}")]
    Landlock(String),
    #[error("the seccomp filter could not be built or installed: {0}")]
    Seccomp(String),
}

/// Step 1: no_new_privs and Landlock, on the calling thread (inherited by threads spawned later).
pub fn landlock() -> Result<Confinement, SandboxError> {
    let abi = ABI::V7;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.no_new_privs(true).restrict_self())
        .map_err(|e| SandboxError::Landlock(e.to_string()))?;
    let landlock = match status.ruleset {
        RulesetStatus::FullyEnforced => Level::Full,
        RulesetStatus::PartiallyEnforced => Level::Partial,
        _ => Level::None,
    };
    Ok(Confinement {
        landlock,
        no_new_privs: status.no_new_privs,
    })
}

/// The system calls a confined counter may make.
fn allowed() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_lseek,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_tgkill,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    if cfg!(feature = "v4l2") {
        // Streaming from a V4L2 device already opened: buffer queue ioctls and select.
        v.extend([libc::SYS_ioctl, libc::SYS_select, libc::SYS_pselect6]);
    }
    v
}

/// Step 2: the seccomp allowlist, on every thread of the process.
pub fn seccomp() -> Result<(), SandboxError> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed().into_iter().map(|s| (s, Vec::new())).collect();
    let arch = std::env::consts::ARCH.try_into().map_err(|_| {
        SandboxError::Seccomp(format!(
            "the architecture {} is not supported",
            std::env::consts::ARCH
        ))
    })?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let prog: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))?;
    seccompiler::apply_filter_all_threads(&prog).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// What a confined process can still do; run by `tellijn-counter sandbox-check`.
pub fn probe() -> Vec<(&'static str, Result<(), i32>)> {
    fn errno<T: PartialOrd + Default>(r: T) -> Result<(), i32> {
        if r < T::default() {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(())
        }
    }
    // SAFETY: plain system calls with valid, NUL-terminated arguments; results are only checked.
    unsafe {
        let path = c"/etc/hostname";
        let sh = c"/bin/sh";
        let argv = [sh.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        vec![
            (
                "socket(AF_INET, SOCK_STREAM)",
                errno(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)),
            ),
            (
                "socket(AF_UNIX, SOCK_DGRAM)",
                errno(libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)),
            ),
            (
                "open(/etc/hostname)",
                errno(libc::open(path.as_ptr(), libc::O_RDONLY)),
            ),
            (
                "openat(/etc/hostname)",
                errno(libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY)),
            ),
            (
                "creat(/tmp/x)",
                errno(libc::open(
                    c"/tmp/tellijn-counter-probe".as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY,
                    0o600,
                )),
            ),
            (
                "execve(/bin/sh)",
                errno(libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr())),
            ),
            (
                "ptrace(PTRACE_TRACEME)",
                errno(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0)),
            ),
            (
                "fork()",
                errno(libc::syscall(
                    libc::SYS_clone,
                    libc::SIGCHLD as libc::c_ulong,
                    0,
                    0,
                    0,
                    0,
                )),
            ),
            (
                "ioctl(stdin, TIOCSTI)",
                errno(libc::ioctl(0, libc::TIOCSTI, c"x".as_ptr())),
            ),
        ]
    }
}
