//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, and in builds with
//! the `failpoints` feature (tests only) `/failpoints/{name}`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the endpoints read.
#[derive(Debug)]
pub struct Shared {
    /// The metrics registry.
    pub registry: Registry,
    /// Set once the pod caches have synced.
    pub ready: AtomicBool,
}

async fn metrics(
    State(s): State<Arc<Shared>>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            e.to_string(),
        ),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> StatusCode {
    if s.ready.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(readyz));
    #[cfg(feature = "failpoints")]
    let app = app.route(
        "/failpoints/{name}",
        axum::routing::put(set_failpoint).delete(remove_failpoint),
    );
    let app = app.with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `PUT /failpoints/{name}` with the actions as body (the `fail` crate's syntax, e.g.
/// `return`): tests stop the operator at a chosen point.
#[cfg(feature = "failpoints")]
async fn set_failpoint(
    axum::extract::Path(name): axum::extract::Path<String>,
    actions: String,
) -> (StatusCode, String) {
    match fail::cfg(name, actions.trim()) {
        Ok(()) => (StatusCode::OK, String::new()),
        Err(e) => (StatusCode::BAD_REQUEST, e),
    }
}

/// `DELETE /failpoints/{name}`.
#[cfg(feature = "failpoints")]
async fn remove_failpoint(axum::extract::Path(name): axum::extract::Path<String>) -> StatusCode {
    fail::remove(name);
    StatusCode::OK
}
