//! Events as `/events` streams them: one bus for the whole engine. A
//! short history is kept so that `since` can replay recent events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many past events `since` can replay.
const HISTORY: usize = 1024;

/// One event (moby's `events.Message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`, `daemon`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, …
    #[serde(rename = "Action")]
    pub action: String,
    /// What the event is about.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// Deprecated top-level fields older clients read.
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Deprecated: the actor's id.
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Deprecated: the image (containers) or the actor.
    #[serde(rename = "from", skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The object of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// Its id.
    #[serde(rename = "ID")]
    pub id: String,
    /// `name`, `image`, `exitCode`, labels, …
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// The engine's event bus.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// An empty bus.
    pub fn new() -> Self {
        Events {
            tx: broadcast::channel(4096).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes an event of `kind` about `id`.
    pub fn publish(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let from = attributes.get("image").cloned();
        let e = Event {
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: Actor {
                id: id.to_owned(),
                attributes,
            },
            scope: "local".to_owned(),
            time: now.timestamp(),
            time_nano: nanos,
            status: (kind == "container" || kind == "image").then(|| action.to_owned()),
            id: (kind == "container" || kind == "image").then(|| id.to_owned()),
            from: if kind == "container" { from } else { None },
        };
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// A receiver of every event from now on, and the kept events before it
    /// (oldest first), taken atomically.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        (h.iter().cloned().collect(), rx)
    }

    /// A receiver of every event from now on.
    pub fn receiver(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
