//! The agent's HTTP server (axum): Prometheus metrics at `/metrics`, the service map page at
//! `/`, and what the page reads — the map as JSON (`/api/service-map`), an edge's recent flows
//! (`/api/edge-flows`) and live updates as server-sent events (`/api/events`).
//!
//! The listener is bound by the caller, so an agent that runs inside a node's network
//! namespace can serve from the namespace it was started in (bound before it entered its own).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::observe::flow::FlowResponse;
use crate::observe::metrics::{Exposition, Metrics};
use crate::observe::ring::FlowRing;
use crate::observe::service_map::{EdgeKey, MapBuilder};

/// The service map page.
const PAGE: &str = include_str!("../../web/service-map.html");

/// How often live updates look for new flows.
const UPDATE_INTERVAL: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listener.
    #[error("HTTP server on {address}: {operation}: {source}")]
    Listener {
        /// Where.
        address: String,
        /// What was being done.
        operation: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers read.
#[derive(Clone, Debug)]
struct Shared {
    ring: Arc<FlowRing>,
    metrics: Arc<Metrics>,
}

/// The running server; stopped on drop.
#[derive(Debug)]
pub struct HttpServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves on `listener` from a thread of its own.
    pub fn start(
        listener: std::net::TcpListener,
        ring: Arc<FlowRing>,
        metrics: Arc<Metrics>,
    ) -> Result<HttpServer, HttpError> {
        let address = listener.local_addr().map_err(|source| HttpError::Listener {
            address: "?".into(),
            operation: "read its address",
            source,
        })?;
        let failed = |operation| move |source| HttpError::Listener { address: address.to_string(), operation, source };
        listener.set_nonblocking(true).map_err(failed("make it non-blocking"))?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed("start its runtime"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(Shared { ring, metrics });
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .map_err(failed("spawn its thread"))?;
        Ok(HttpServer { address, stop: Some(stop), thread: Some(thread) })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Open event streams end with the server's runtime; the thread follows.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/service-map", get(service_map))
        .route("/api/edge-flows", get(edge_flows))
        .route("/api/events", get(events))
        .with_state(shared)
}

async fn metrics(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let format = Exposition::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    ([(header::CONTENT_TYPE, format.content_type())], shared.metrics.encode(format)).into_response()
}

/// `?namespace=` (empty or absent: every namespace).
#[derive(Debug, Deserialize)]
struct NamespaceQuery {
    #[serde(default)]
    namespace: Option<String>,
}

impl NamespaceQuery {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|n| !n.is_empty())
    }
}

fn builder(ring: &FlowRing) -> MapBuilder {
    ring.last(ring.capacity()).iter().collect()
}

async fn service_map(State(shared): State<Shared>, Query(query): Query<NamespaceQuery>) -> Response {
    Json(builder(&shared.ring).build(query.namespace())).into_response()
}

async fn edge_flows(State(shared): State<Shared>, Query(key): Query<EdgeKey>) -> Response {
    let flows: Vec<FlowResponse> = builder(&shared.ring)
        .edge_flows(&key)
        .iter()
        .rev()
        .map(|f| FlowResponse { flow: (**f).clone(), node_name: f.node_name.clone(), time: f.time.clone() })
        .collect();
    if flows.is_empty() {
        return (StatusCode::NOT_FOUND, format!("no flows on {} → {} {}/{}", key.from, key.to, key.protocol, key.port))
            .into_response();
    }
    Json(flows).into_response()
}

/// The map, each time new flows arrive (at most every [`UPDATE_INTERVAL`]), as `map` events.
async fn events(State(shared): State<Shared>, Query(query): Query<NamespaceQuery>) -> Response {
    let namespace = query.namespace().map(str::to_owned);
    let stream = futures_util::stream::unfold(None::<u64>, move |sent| {
        let (ring, namespace) = (Arc::clone(&shared.ring), namespace.clone());
        async move {
            loop {
                let written = ring.written();
                if sent != Some(written) {
                    let map = builder(&ring).build(namespace.as_deref());
                    let event = Event::default().event("map").json_data(&map).unwrap_or_default();
                    return Some((Ok::<_, Infallible>(event), Some(written)));
                }
                tokio::time::sleep(UPDATE_INTERVAL).await;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
