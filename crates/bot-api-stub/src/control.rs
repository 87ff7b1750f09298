//! `/control/…`: the same controls as [`crate::Stub`]'s methods, over HTTP, for scripts (the demo).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::{Chat, Person, Shared, Stub};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/control/member", post(member))
        .route("/control/say", post(say))
        .route("/control/press", post(press))
        .route("/control/messages", get(messages))
        .route("/control/transcript", get(transcript))
        .route("/control/wait", get(wait))
        .with_state(shared)
}

fn stub(shared: Arc<Shared>) -> Stub {
    // The address is not needed by the methods used here.
    Stub {
        shared,
        addr: ([127, 0, 0, 1], 0).into(),
    }
}

#[derive(Deserialize)]
struct SayBody {
    chat: Chat,
    from: Person,
    text: String,
}

async fn say(AxState(s): AxState<Arc<Shared>>, Json(b): Json<SayBody>) -> Response {
    let id = stub(s).say(&b.chat, &b.from, &b.text);
    Json(json!({ "message_id": id })).into_response()
}

#[derive(Deserialize)]
struct MemberBody {
    chat: Chat,
    person: Person,
}

async fn member(AxState(s): AxState<Arc<Shared>>, Json(b): Json<MemberBody>) -> Response {
    stub(s).add_member(&b.chat, &b.person);
    Json(json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct PressBody {
    chat: Chat,
    from: Person,
    message_id: i64,
    data: String,
}

async fn press(AxState(s): AxState<Arc<Shared>>, Json(b): Json<PressBody>) -> Response {
    match stub(s).press(&b.chat, &b.from, b.message_id, &b.data) {
        Some(id) => Json(json!({ "callback_query_id": id })).into_response(),
        None => (StatusCode::NOT_FOUND, "no such message").into_response(),
    }
}

#[derive(Deserialize)]
struct ChatQuery {
    chat_id: i64,
}

async fn messages(AxState(s): AxState<Arc<Shared>>, Query(q): Query<ChatQuery>) -> Response {
    Json(stub(s).messages(q.chat_id)).into_response()
}

async fn transcript(AxState(s): AxState<Arc<Shared>>, Query(q): Query<ChatQuery>) -> Response {
    stub(s).transcript(q.chat_id).into_response()
}

#[derive(Deserialize)]
struct WaitQuery {
    chat_id: i64,
    contains: String,
    #[serde(default)]
    skip: usize,
    #[serde(default = "default_wait")]
    timeout_secs: u64,
}

fn default_wait() -> u64 {
    60
}

/// Waits until the bot has sent, after the first `skip` messages, one containing `contains`.
async fn wait(AxState(s): AxState<Arc<Shared>>, Query(q): Query<WaitQuery>) -> Response {
    match stub(s)
        .wait_for_text(
            q.chat_id,
            q.skip,
            &q.contains,
            Duration::from_secs(q.timeout_secs),
        )
        .await
    {
        Ok(m) => Json(m).into_response(),
        Err(e) => (StatusCode::REQUEST_TIMEOUT, e).into_response(),
    }
}
