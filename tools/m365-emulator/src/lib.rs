//! m365-emulator: a faithful local Microsoft Graph v1.0 and Microsoft identity platform, so the
//! project's Graph client can be proven without reaching Microsoft (graph-spec.md is the
//! behaviour reference). One axum server serves both surfaces from one base URL:
//! `/{tenant}/oauth2/v2.0/...` (identity), `/v1.0/...` (Graph) and `/_emulator/...` (control).
//!
//! Tests start it in-process: `serve(TcpListener::bind("127.0.0.1:0"), AppState::new(state))`.

pub mod admin;
pub mod audit;
pub mod error;
pub mod graph;
pub mod identity;
pub mod request;
pub mod roles;
pub mod state;
pub mod throttle;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use serde_json::json;

pub use state::{Seed, SeedError, State};

/// The shared handle every handler gets: the whole emulator [`State`] behind one lock.
///
/// The lock is a `std::sync::Mutex` and is never held across an `.await`.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Mutex<State>>,
}

impl AppState {
    /// Wraps a state.
    #[must_use]
    pub fn new(state: State) -> Self {
        Self {
            inner: Arc::new(Mutex::new(state)),
        }
    }

    /// Locks the state. A panic in another handler does not make the state unusable: the
    /// poisoned lock is recovered (every mutation is completed before the guard drops).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The whole router (Graph, identity, control), with the request middleware applied.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/_emulator/health", get(health))
        .merge(graph::routes(&state))
        .merge(admin::routes())
        .merge(identity::routes())
        .fallback(fallback)
        .layer(from_fn_with_state(state.clone(), request::middleware))
        .with_state(state)
}

async fn fallback(req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.uri().path().starts_with("/v1.0/") {
        graph::unknown_segment(req).await
    } else {
        (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("no such endpoint: {} {}", req.method(), req.uri().path())})),
        )
            .into_response()
    }
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

/// Serves the emulator on `listener` until the process ends (or the task is aborted).
///
/// # Errors
/// An I/O error from accepting connections.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, app(state)).await
}

/// Serves the emulator on `listener` until `shutdown` completes.
///
/// # Errors
/// An I/O error from accepting connections.
pub async fn serve_with_shutdown(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
