//! Essential tasks and what happens when one dies. The driver, the QUIC
//! and RESP accept loops, the HTTP server and the store's writer thread
//! are the node: if one panics, or returns while the node is not
//! stopping, the rest would keep sockets open and answer nothing (a
//! request waits forever for a driver that is gone). So each is watched
//! here, and its end is reported on one channel that `wasque-node`'s main
//! loop waits on beside the signals: it logs the cause and exits non-zero,
//! and a supervisor (systemd, a test) sees a dead node instead of a hung one.

use std::future::Future;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where essential tasks report their end: the task's name and why.
#[derive(Clone, Debug)]
pub struct Fatal(mpsc::UnboundedSender<String>);

/// The receiving end, kept by the node; [`Failures::next`] waits for the
/// first report.
#[derive(Debug)]
pub struct Failures(mpsc::UnboundedReceiver<String>);

/// A connected pair.
pub fn channel() -> (Fatal, Failures) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Fatal(tx), Failures(rx))
}

impl Fatal {
    /// Reports that `task` ended for `why` (logged here, once).
    pub fn report(&self, task: &str, why: &str) {
        tracing::error!(
            task,
            "essential task {why}: the node cannot go on and exits"
        );
        let _ = self.0.send(format!("{task} {why}"));
    }

    /// A guard for a thread (the store writer): dropped while the thread
    /// unwinds from a panic, it reports the panic.
    pub fn guard(&self, task: &'static str) -> PanicGuard {
        PanicGuard {
            fatal: self.clone(),
            task,
        }
    }
}

impl Failures {
    /// The first essential task's end; pending forever if none ends.
    pub async fn next(&mut self) -> String {
        match self.0.recv().await {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }
}

/// Reports a panic of the thread that holds it (see [`Fatal::guard`]).
pub struct PanicGuard {
    fatal: Fatal,
    task: &'static str,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.fatal
                .report(self.task, "panicked (its message is logged above)");
        }
    }
}

/// Spawns `fut` as essential task `name`: when it ends before `stop` is
/// set, or panics at any time, `fatal` hears of it. The returned handle
/// ends when the task has ended (and was reported).
pub fn spawn<F>(
    name: &'static str,
    fut: F,
    stop: watch::Receiver<bool>,
    fatal: Fatal,
) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(fut);
    tokio::spawn(async move {
        let outcome = task.await;
        let why = match outcome {
            Ok(()) if *stop.borrow() => return,
            Ok(()) => "ended while the node was not stopping".to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            Err(e) => format!("was cancelled: {e}"),
        };
        fatal.report(name, &why);
    })
}

/// A panic payload as text (`panic!` gives a `&str` or a `String`).
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map_or_else(
            || "(a non-text panic payload)".to_string(),
            |s| s.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_or_an_early_end_is_reported_a_stop_is_not() {
        let (fatal, mut failures) = channel();
        let (stop_tx, stop) = watch::channel(false);
        let h = spawn(
            "boom",
            async { panic!("on purpose") },
            stop.clone(),
            fatal.clone(),
        );
        let _ = h.await;
        assert_eq!(failures.next().await, "boom panicked: on purpose");
        let h = spawn("short", async {}, stop.clone(), fatal.clone());
        let _ = h.await;
        assert!(failures.next().await.starts_with("short ended"));
        let _ = stop_tx.send(true);
        let h = spawn("stopped", async {}, stop, fatal.clone());
        let _ = h.await;
        drop(fatal);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), failures.next())
                .await
                .is_err(),
            "a task that ends after stop is not a failure"
        );
    }
}
