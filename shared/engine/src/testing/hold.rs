//! Holds: a test stops one port call of a fake at a chosen point and lets it go on later, to force
//! an interleaving of two use cases deterministically (e.g. an unbind landing between a bind's
//! Graph write and its final binding write, R-BIND-12). Single-use; a hold nobody releases lets
//! the call go on when the test drops it.

use std::fmt;

use futures::channel::oneshot;

/// Where a call of [`super::FakeDirectory`] is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the call does anything (it has not reached M365).
    Before,
    /// After the call took effect, before it answers (M365 committed; the caller does not know yet).
    AfterCommit,
}

/// The fake's side of a hold: signals arrival, then waits for the release.
pub(crate) struct Hold {
    arrived: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hold")
    }
}

impl Hold {
    /// A new hold and the test's handle on it.
    pub(crate) fn new() -> (Self, HeldCall) {
        let (arrived_tx, arrived_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        (
            Self {
                arrived: arrived_tx,
                release: release_rx,
            },
            HeldCall {
                arrived: arrived_rx,
                release: Some(release_tx),
            },
        )
    }

    /// Tells the test the call arrived, then waits until it is released (or the handle dropped).
    pub(crate) async fn wait(self) {
        // The test may have dropped its handle: then there is nobody to wait for.
        let _ = self.arrived.send(());
        let _ = self.release.await;
    }
}

/// The test's handle on a held call.
#[derive(Debug)]
pub struct HeldCall {
    arrived: oneshot::Receiver<()>,
    release: Option<oneshot::Sender<()>>,
}

impl HeldCall {
    /// Waits until the held call reaches its hold; `false` if it never will (the fake was dropped).
    pub async fn arrived(&mut self) -> bool {
        (&mut self.arrived).await.is_ok()
    }

    /// Lets the held call go on.
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}
