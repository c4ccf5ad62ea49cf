//! The events bus and the `/api/v1/events` websocket: session, agent and desktop status changes
//! fan out through a bounded broadcast channel; a client that falls behind by more than the
//! queue size is disconnected (close code 1013) instead of being buffered forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::auth::Principal;

/// `owner` of an event only administrators receive (no user id is `-`).
pub const ADMINS_ONLY: &str = "-";

/// One event as sent to websocket clients (a JSON text frame).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// Dotted kind, e.g. `session.created`, `session.deleted`, `message.appended`, `hello`,
    /// `session.control` (data: `change` taken/refreshed/forced/released/expired, `holder`,
    /// `previous`, `desktop`, `expires_ms`; see [`crate::control_lease`]).
    pub kind: String,
    /// Session it concerns, if any.
    pub session_id: Option<String>,
    /// Event payload.
    pub data: Value,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// Owner user id: only the owner and admins receive it; `None` = everyone.
    #[serde(skip)]
    pub owner: Option<String>,
}

impl Event {
    pub fn new(kind: &str, session_id: Option<&str>, owner: Option<&str>, data: Value) -> Event {
        Event {
            kind: kind.to_owned(),
            session_id: session_id.map(str::to_owned),
            data,
            timestamp: zigral_store::now_ms(),
            owner: owner.map(str::to_owned),
        }
    }
}

/// Publisher side of the bus; clone freely.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    pub clients: Arc<AtomicU64>,
    pub dropped_clients: Arc<AtomicU64>,
    pub published: Arc<AtomicU64>,
}

impl EventBus {
    /// A bus whose subscribers may lag by at most `queue` events.
    pub fn new(queue: usize) -> EventBus {
        let (tx, _) = broadcast::channel(queue.max(1));
        EventBus {
            tx,
            clients: Arc::new(AtomicU64::new(0)),
            dropped_clients: Arc::new(AtomicU64::new(0)),
            published: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends an event to every connected client allowed to see it.
    pub fn publish(&self, ev: Event) {
        self.published.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Arc::new(ev));
    }

    /// A new receiver (for websocket clients and in-process listeners).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

fn visible(p: &Principal, ev: &Event) -> bool {
    p.is_admin || ev.owner.as_deref().is_none_or(|o| o == p.user_id)
}

/// Longest a single frame may take to send before the client counts as stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one websocket client until it leaves, lags or stalls.
pub async fn run_client(mut ws: WebSocket, bus: EventBus, who: Principal) {
    let mut rx = bus.subscribe();
    bus.clients.fetch_add(1, Ordering::Relaxed);
    let hello = Event::new(
        "hello",
        None,
        None,
        serde_json::json!({"user_id": who.user_id, "is_admin": who.is_admin}),
    );
    let mut ok = send(&mut ws, &hello).await;
    while ok {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) => {
                    if visible(&who, &ev) {
                        ok = send(&mut ws, &ev).await;
                        if !ok {
                            bus.dropped_clients.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(user = %who.user_id, missed = n, "events client too slow; dropping it");
                    bus.dropped_clients.fetch_add(1, Ordering::Relaxed);
                    let close = CloseFrame { code: 1013, reason: "client too slow; reconnect".into() };
                    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Close(Some(close)))).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            m = ws.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {} // pings are answered by the library; other input is ignored
            },
        }
    }
    bus.clients.fetch_sub(1, Ordering::Relaxed);
}

async fn send(ws: &mut WebSocket, ev: &Event) -> bool {
    let Ok(text) = serde_json::to_string(ev) else {
        return false;
    };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}
