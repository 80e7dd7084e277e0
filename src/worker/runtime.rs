//! Event-loop driver choice and runtime construction: io_uring with cooperative task running
//! when the kernel allows it, else the legacy epoll driver, with the reason recorded.
//!
//! Why the ring flags: monoio builds its ring with no setup flags, and with the default ring a
//! minimal monoio proxy measured 0.78× nginx's req/s here, 22 % of its CPU spinning on the socket
//! lock taken by task work interrupts. `IORING_SETUP_COOP_TASKRUN` + `TASKRUN_FLAG` run task work
//! only when the loop enters the kernel anyway: 1.07× nginx at 32 connections (DESIGN.md §7).
//!
//! Invariants: the choice is made once at start (by probing a ring) and used by every worker;
//! the timer is always enabled (monoio panics on `sleep` without it).

use std::fmt;

use crate::config::DriverChoice;

/// The driver a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring.
    IoUring,
    /// epoll (monoio's legacy driver).
    Legacy,
}

impl Driver {
    /// Name as reported in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }
}

/// The outcome of driver selection.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Which driver.
    pub driver: Driver,
    /// Whether the ring gets COOP_TASKRUN + TASKRUN_FLAG.
    pub coop_taskrun: bool,
    /// Why (for the log and `/health`).
    pub reason: String,
}

impl fmt::Display for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.driver.as_str(), self.reason)
    }
}

/// Ring size per worker: enough submissions in flight for thousands of connections per loop
/// iteration without overflowing, small enough to keep locked memory modest.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// Chooses the driver for `choice`, honouring `MONOIO_FORCE_LEGACY_DRIVER`.
pub fn choose(choice: DriverChoice) -> Result<Chosen, String> {
    let legacy = |reason: String| Chosen {
        driver: Driver::Legacy,
        coop_taskrun: false,
        reason,
    };
    if choice == DriverChoice::Legacy {
        return Ok(legacy("configured: server.driver = \"legacy\"".into()));
    }
    if let Ok(v) = std::env::var("MONOIO_FORCE_LEGACY_DRIVER")
        && matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")
    {
        if choice == DriverChoice::IoUring {
            return Err(
                "server.driver = \"io_uring\" but MONOIO_FORCE_LEGACY_DRIVER is set".into(),
            );
        }
        return Ok(legacy("MONOIO_FORCE_LEGACY_DRIVER is set".into()));
    }
    let unavailable = match probe_ring(false) {
        Ok(()) if monoio::utils::detect_uring() => None,
        Ok(()) => Some("io_uring lacks opcodes monoio needs (kernel older than 5.6?)".to_string()),
        Err(e) => Some(explain(&e)),
    };
    if let Some(why) = unavailable {
        if choice == DriverChoice::IoUring {
            return Err(format!("server.driver = \"io_uring\" but {why}"));
        }
        return Ok(legacy(format!("io_uring unavailable: {why}")));
    }
    match probe_ring(true) {
        Ok(()) => Ok(Chosen {
            driver: Driver::IoUring,
            coop_taskrun: true,
            reason: "kernel supports io_uring with COOP_TASKRUN".into(),
        }),
        Err(e) => Ok(Chosen {
            driver: Driver::IoUring,
            coop_taskrun: false,
            reason: format!("io_uring without COOP_TASKRUN ({e})"),
        }),
    }
}

fn probe_ring(coop: bool) -> std::io::Result<()> {
    let mut b = io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
    if coop {
        b.setup_coop_taskrun();
        b.setup_taskrun_flag();
    }
    b.build(8).map(drop)
}

fn explain(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(1) => "forbidden (EPERM: seccomp profile or kernel.io_uring_disabled)".into(),
        Some(38) => "the kernel has no io_uring (ENOSYS)".into(),
        Some(12) => {
            "cannot lock ring memory (ENOMEM: raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK=infinity)"
                .into()
        }
        _ => format!("ring setup failed: {e}"),
    }
}

/// Builds a runtime for `chosen` on the current thread and runs `fut` to completion.
pub(crate) fn block_on<F: std::future::Future>(
    chosen: &Chosen,
    fut: F,
) -> std::io::Result<F::Output> {
    block_on_with(chosen, RING_ENTRIES, fut)
}

/// [`block_on`] with a ring of `entries` submissions (the control loop needs far fewer than a
/// worker, and every ring costs locked memory).
pub fn block_on_with<F: std::future::Future>(
    chosen: &Chosen,
    entries: u32,
    fut: F,
) -> std::io::Result<F::Output> {
    match chosen.driver {
        Driver::IoUring => {
            let mut urb =
                io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
            if chosen.coop_taskrun {
                urb.setup_coop_taskrun();
                urb.setup_taskrun_flag();
            }
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .with_entries(entries)
                .enable_timer()
                .build()?;
            Ok(rt.block_on(fut))
        }
        Driver::Legacy => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok(rt.block_on(fut))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_when_configured() {
        let c = choose(DriverChoice::Legacy).unwrap();
        assert_eq!(c.driver, Driver::Legacy);
        assert!(c.reason.contains("configured"));
        // the timer is enabled on both drivers: sleep must not panic
        block_on(&c, async {
            monoio::time::sleep(std::time::Duration::from_millis(1)).await
        })
        .unwrap();
    }

    #[test]
    fn auto_builds_a_runtime_whatever_the_kernel() {
        let c = choose(DriverChoice::Auto).unwrap();
        block_on(&c, async {
            monoio::time::sleep(std::time::Duration::from_millis(1)).await
        })
        .unwrap();
    }
}
