//! A gate that holds one call of a fake until the test opens it, so a test can force an
//! interleaving of two use cases on one task (R-CONN-8: refresh, reconnect and deauthorize
//! racing): start the first, wait until it [`Gate::reached`] the gate, run the second to the end,
//! [`Gate::open`] the gate, let the first finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::lock;

#[derive(Debug, Default)]
struct GateState {
    reached: bool,
    open: bool,
    wakers: Vec<Waker>,
}

/// A one-shot gate shared by a fake (which waits at it) and a test (which opens it).
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<GateState>>);

impl Gate {
    /// A closed gate nobody has reached.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves once a held call has arrived at the gate.
    pub fn reached(&self) -> impl Future<Output = ()> + '_ {
        Wait {
            gate: self,
            until: |s: &GateState| s.reached,
        }
    }

    /// Lets the held call (and any later one) through.
    pub fn open(&self) {
        let wakers = {
            let mut state = lock(&self.0);
            state.open = true;
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The held call: marks the gate reached and waits until it is opened.
    pub(crate) async fn pass(&self) {
        let wakers = {
            let mut state = lock(&self.0);
            state.reached = true;
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
        Wait {
            gate: self,
            until: |s: &GateState| s.open,
        }
        .await;
    }
}

struct Wait<'a> {
    gate: &'a Gate,
    until: fn(&GateState) -> bool,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.gate.0);
        if (self.until)(&state) {
            Poll::Ready(())
        } else {
            state.wakers.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A slot a fake takes its next gate from (at most one armed at a time).
#[derive(Debug, Default)]
pub(crate) struct GateSlot(Mutex<Option<Gate>>);

impl GateSlot {
    /// Arms the slot: the next call waits at the returned gate.
    pub(crate) fn arm(&self) -> Gate {
        let gate = Gate::new();
        *lock(&self.0) = Some(gate.clone());
        gate
    }

    /// Takes the armed gate, if any.
    pub(crate) fn take(&self) -> Option<Gate> {
        lock(&self.0).take()
    }
}
