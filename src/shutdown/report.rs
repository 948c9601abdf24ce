//! [`ShutdownReport`]: what [`Shutdown::wait`](super::Shutdown::wait) found.

use std::fmt;
use std::time::Duration;

/// How a shutdown went: which tracked tasks had to be aborted when the grace
/// period ran out, which panicked, and how long the drain took. Returned by
/// [`Shutdown::wait`](super::Shutdown::wait).
///
/// Names are listed in the order the tasks were spawned.
///
/// ```
/// use std::time::Duration;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Shutdown::new();
/// shutdown.spawn("polite", shutdown.draining()); // ends when draining begins
/// shutdown.spawn("stubborn", std::future::pending::<()>());
/// shutdown.trigger();
///
/// let report = shutdown.wait(Duration::from_secs(5)).await;
/// assert_eq!(report.aborted(), ["stubborn"]);
/// assert!(!report.is_clean());
/// assert_eq!(report.drain_time(), Duration::from_secs(5));
/// assert_eq!(report.to_string(), "shutdown drained in 5s; aborted 1 task: stubborn");
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    aborted: Vec<String>,
    panicked: Vec<String>,
    drain_time: Duration,
}

impl ShutdownReport {
    pub(super) fn new(aborted: Vec<String>, panicked: Vec<String>, drain_time: Duration) -> Self {
        ShutdownReport {
            aborted,
            panicked,
            drain_time,
        }
    }

    /// The names of the tracked tasks still running when the drain ended (the
    /// grace period ran out, or a second signal cut it short): they saw the
    /// context cancelled, and those that did not end at once were aborted.
    /// Also any task spawned after that. Empty for a clean shutdown.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// shutdown.spawn("quick", async {});
    /// assert!(shutdown.wait(Duration::from_secs(1)).await.aborted().is_empty());
    /// # }
    /// ```
    pub fn aborted(&self) -> &[String] {
        &self.aborted
    }

    /// Whether no task had to be aborted: every tracked task ended within the
    /// grace period. A task that panicked ended on its own, so it does not
    /// make the shutdown unclean; see [`panicked`](Self::panicked).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// shutdown.spawn("quick", async {});
    /// assert!(shutdown.wait(Duration::from_secs(1)).await.is_clean());
    /// # }
    /// ```
    pub fn is_clean(&self) -> bool {
        self.aborted.is_empty()
    }

    /// How long the drain took: from the trigger until every tracked task had
    /// ended, the aborted ones included. Zero when [`wait`](super::Shutdown::wait)
    /// returned because every task ended before any trigger. A clean drain
    /// takes at most the grace period.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let draining = shutdown.draining();
    /// shutdown.spawn("flush", async move {
    ///     draining.await;
    ///     tokio::time::sleep(Duration::from_millis(300)).await; // flushing
    /// });
    /// shutdown.trigger();
    /// let report = shutdown.wait(Duration::from_secs(1)).await;
    /// assert_eq!(report.drain_time(), Duration::from_millis(300));
    /// # }
    /// ```
    pub fn drain_time(&self) -> Duration {
        self.drain_time
    }

    /// The names of the tracked tasks that panicked (at any time before the
    /// report). Their panics went to whoever awaited their
    /// [`JoinHandle`](tokio::task::JoinHandle)s; this list is for the record.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let handle = shutdown.spawn("parser", async { panic!("bad input") });
    /// assert!(handle.await.unwrap_err().is_panic());
    /// shutdown.trigger();
    /// assert_eq!(shutdown.wait(Duration::from_secs(1)).await.panicked(), ["parser"]);
    /// # }
    /// ```
    pub fn panicked(&self) -> &[String] {
        &self.panicked
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shutdown drained in {:?}", self.drain_time)?;
        for (what, names) in [("aborted", &self.aborted), ("panicked", &self.panicked)] {
            if !names.is_empty() {
                let plural = if names.len() == 1 { "" } else { "s" };
                write!(
                    f,
                    "; {what} {} task{plural}: {}",
                    names.len(),
                    names.join(", ")
                )?;
            }
        }
        if self.is_clean() && self.panicked.is_empty() {
            f.write_str("; clean")?;
        }
        Ok(())
    }
}
