//! The Bot API side: `/bot<token>/<method>`, answered as Telegram answers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::state::{user_json, Injected, SentDocument, SentMessage};
use crate::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{bot_token}/{method}", any(call))
        .with_state(shared)
}

const NOT_MODIFIED: &str =
    "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

type Params = Map<String, Value>;

enum ApiError {
    BadRequest(String),
    Unauthorized,
    NotFound,
    TooMany(u32),
    ServerError,
    /// The group was upgraded to a supergroup with this id.
    Migrated(i64),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(d) => (
                StatusCode::BAD_REQUEST,
                json!({"ok": false, "error_code": 400, "description": format!("Bad Request: {d}")}),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"ok": false, "error_code": 404, "description": "Not Found"}),
            ),
            ApiError::TooMany(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {s}"), "parameters": {"retry_after": s}}),
            ),
            ApiError::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
            ),
            ApiError::Migrated(to) => (
                StatusCode::BAD_REQUEST,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id": to}}),
            ),
        };
        (status, Json(body)).into_response()
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

async fn call(
    AxState(shared): AxState<Arc<Shared>>,
    Path((bot_token, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    let params = match read_params(request).await {
        Ok(p) => p,
        Err(e) => return ApiError::BadRequest(e).into_response(),
    };
    {
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if bot_token.strip_prefix("bot") != Some(st.token.as_str()) {
            return ApiError::Unauthorized.into_response();
        }
        *st.calls.entry(method.to_ascii_lowercase()).or_default() += 1;
        if let Some(pos) = st
            .injected
            .iter()
            .position(|(m, _)| m.eq_ignore_ascii_case(&method))
        {
            let (_, failure) = st.injected.remove(pos);
            return match failure {
                Injected::TooMany(secs) => ApiError::TooMany(secs),
                Injected::ServerError => ApiError::ServerError,
            }
            .into_response();
        }
    }
    let result = if method.eq_ignore_ascii_case("getUpdates") {
        get_updates(&shared, &params).await
    } else {
        let out = {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            answer(&mut st, &method, &params)
        };
        shared.bump();
        out
    };
    match result {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

/// Telegram takes parameters as JSON, a form, a query string or multipart; teloxide uses JSON and,
/// for files, multipart.
async fn read_params(request: Request) -> Result<Params, String> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut params = Params::new();
    if let Some(q) = request.uri().query() {
        for (k, v) in form_pairs(q) {
            params.insert(k, Value::String(v));
        }
    }
    if content_type.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(request, &())
            .await
            .map_err(|e| e.to_string())?;
        while let Some(field) = mp.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let data = field.bytes().await.map_err(|e| e.to_string())?;
            match file_name {
                Some(f) => {
                    params.insert(name, json!({"__file_name": f, "__size": data.len(), "__text": String::from_utf8(data.to_vec()).ok()}));
                }
                None => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    // Non-file multipart fields carry JSON for structured values.
                    let v = serde_json::from_str(&text)
                        .ok()
                        .filter(|v: &Value| !v.is_string())
                        .unwrap_or(Value::String(text));
                    params.insert(name, v);
                }
            }
        }
        // `"document": "attach://x"` names another part of the same request, the file itself.
        let attached: Vec<(String, String)> = params
            .iter()
            .filter_map(|(k, v)| {
                Some((k.clone(), v.as_str()?.strip_prefix("attach://")?.to_owned()))
            })
            .collect();
        for (key, part) in attached {
            if let Some(file) = params.get(&part).cloned() {
                params.insert(key, file);
            }
        }
        return Ok(params);
    }
    let body: Bytes = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    if body.is_empty() {
        return Ok(params);
    }
    if content_type.starts_with("application/json") {
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| format!("can't parse JSON: {e}"))?;
        if let Value::Object(m) = v {
            params.extend(m);
        }
    } else {
        for (k, v) in form_pairs(&String::from_utf8_lossy(&body)) {
            params.insert(k, Value::String(v));
        }
    }
    Ok(params)
}

fn form_pairs(s: &str) -> Vec<(String, String)> {
    let uri = format!("/?{s}").parse().unwrap_or_default();
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn int(params: &Params, key: &str) -> Result<i64, ApiError> {
    match params.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ApiError::BadRequest(format!("{key} is not an integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("{key} is not an integer"))),
        _ => Err(ApiError::BadRequest(format!("{key} is empty"))),
    }
}

fn opt_int(params: &Params, key: &str) -> Option<i64> {
    int(params, key).ok()
}

fn string(params: &Params, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    }
}

fn flag(params: &Params, key: &str) -> bool {
    matches!(params.get(key), Some(Value::Bool(true)))
        || string(params, key).as_deref() == Some("true")
}

/// `reply_parameters.message_id`, the message this one replies to.
fn reply_to(params: &Params) -> Option<i64> {
    let v = match params.get("reply_parameters")? {
        Value::String(s) => serde_json::from_str(s).ok()?,
        v => v.clone(),
    };
    v.get("message_id")?.as_i64()
}

fn markup(params: &Params) -> Option<Value> {
    match params.get("reply_markup")? {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        v => Some(v.clone()),
    }
}

async fn get_updates(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let offset = opt_int(params, "offset").unwrap_or(0);
    let timeout = Duration::from_secs(opt_int(params, "timeout").unwrap_or(0).clamp(0, 50) as u64);
    let limit = opt_int(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let mut rx = shared.changed.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        rx.borrow_and_update();
        {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            // An offset confirms every update before it, as in Telegram.
            st.pending
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !st.pending.is_empty() {
                return Ok(Value::Array(
                    st.pending.iter().take(limit).cloned().collect(),
                ));
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return Ok(json!([])),
        }
    }
}

fn answer(st: &mut crate::state::State, method: &str, p: &Params) -> Result<Value, ApiError> {
    let method = method.to_ascii_lowercase();
    let to_chat = [
        "sendmessage",
        "senddocument",
        "editmessagetext",
        "editmessagereplymarkup",
    ];
    if to_chat.contains(&method.as_str()) {
        if let Some(to) = opt_int(p, "chat_id").and_then(|c| st.migrated.get(&c)) {
            return Err(ApiError::Migrated(*to));
        }
    }
    match method.as_str() {
        "getme" => {
            let mut me = user_json(&st.bot, true);
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            me["can_connect_to_business"] = json!(false);
            me["has_main_web_app"] = json!(false);
            Ok(me)
        }
        "getwebhookinfo" => Ok(
            json!({"url": "", "has_custom_certificate": false, "pending_update_count": st.pending.len()}),
        ),
        "deletewebhook" | "close" | "logout" => Ok(json!(true)),
        "setmycommands" => {
            let commands = match p.get("commands") {
                Some(Value::String(s)) => {
                    serde_json::from_str(s).map_err(|e| ApiError::BadRequest(e.to_string()))?
                }
                Some(v) => v.clone(),
                None => return Err(ApiError::BadRequest("commands is empty".into())),
            };
            st.commands = Some(commands);
            Ok(json!(true))
        }
        "sendmessage" => {
            let chat_id = int(p, "chat_id")?;
            let text = string(p, "text")
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ApiError::BadRequest("message text is empty".into()))?;
            if text.encode_utf16().count() > 4096 {
                return Err(ApiError::BadRequest("message is too long".into()));
            }
            let parse_mode = string(p, "parse_mode");
            check_html(&text, parse_mode.as_deref())?;
            Ok(st.bot_sends(SentMessage {
                chat_id,
                message_id: 0,
                text,
                parse_mode,
                disable_notification: flag(p, "disable_notification"),
                reply_markup: markup(p),
                edits: Vec::new(),
                document: None,
                reply_to: reply_to(p),
            }))
        }
        "senddocument" => {
            let chat_id = int(p, "chat_id")?;
            let doc = p.get("document").ok_or_else(|| {
                ApiError::BadRequest("there is no document in the request".into())
            })?;
            let caption = string(p, "caption");
            let parse_mode = string(p, "parse_mode");
            if let Some(c) = &caption {
                check_html(c, parse_mode.as_deref())?;
            }
            let document = SentDocument {
                file_name: doc["__file_name"].as_str().unwrap_or("document").to_owned(),
                size: doc["__size"].as_u64().unwrap_or(0) as usize,
                caption: caption.clone(),
                text: doc["__text"].as_str().map(str::to_owned),
            };
            Ok(st.bot_sends(SentMessage {
                chat_id,
                message_id: 0,
                text: caption.unwrap_or_default(),
                parse_mode,
                disable_notification: flag(p, "disable_notification"),
                reply_markup: markup(p),
                edits: Vec::new(),
                document: Some(document),
                reply_to: reply_to(p),
            }))
        }
        "editmessagetext" => {
            let chat_id = int(p, "chat_id")?;
            let message_id = int(p, "message_id")?;
            let text = string(p, "text")
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ApiError::BadRequest("message text is empty".into()))?;
            let parse_mode = string(p, "parse_mode");
            check_html(&text, parse_mode.as_deref())?;
            let new_markup = markup(p);
            let m = st
                .sent
                .get_mut(&(chat_id, message_id))
                .ok_or_else(|| ApiError::BadRequest("message to edit not found".into()))?;
            if m.text == text && m.reply_markup == new_markup {
                return Err(ApiError::BadRequest(NOT_MODIFIED.into()));
            }
            let old = std::mem::replace(&mut m.text, text);
            m.edits.push(old);
            m.parse_mode = parse_mode;
            m.reply_markup = new_markup;
            Ok(st.message_json(chat_id, message_id).unwrap_or(Value::Null))
        }
        "editmessagereplymarkup" => {
            let chat_id = int(p, "chat_id")?;
            let message_id = int(p, "message_id")?;
            let new_markup = markup(p).filter(|m| {
                m.get("inline_keyboard")
                    .and_then(Value::as_array)
                    .is_some_and(|rows| !rows.is_empty())
            });
            let m = st
                .sent
                .get_mut(&(chat_id, message_id))
                .ok_or_else(|| ApiError::BadRequest("message to edit not found".into()))?;
            if m.reply_markup == new_markup {
                return Err(ApiError::BadRequest(NOT_MODIFIED.into()));
            }
            m.reply_markup = new_markup;
            Ok(st.message_json(chat_id, message_id).unwrap_or(Value::Null))
        }
        "answercallbackquery" => {
            let id = string(p, "callback_query_id")
                .ok_or_else(|| ApiError::BadRequest("query id is empty".into()))?;
            if st.open_callbacks.remove(&id).is_none() {
                return Err(ApiError::BadRequest(
                    "query is too old and response timeout expired or query ID is invalid".into(),
                ));
            }
            st.callback_answers.push(crate::CallbackAnswer {
                callback_query_id: id,
                text: string(p, "text"),
                show_alert: flag(p, "show_alert"),
            });
            Ok(json!(true))
        }
        "getchat" => {
            let chat_id = int(p, "chat_id")?;
            match st.chats.get(&chat_id) {
                Some(chat) => Ok(crate::state::full_chat_json(chat)),
                None => Err(ApiError::BadRequest("chat not found".into())),
            }
        }
        "getchatmember" => {
            let chat_id = int(p, "chat_id")?;
            let user_id = int(p, "user_id")?;
            match st.member(chat_id, user_id) {
                Some(person) => Ok(json!({"status": "member", "user": user_json(person, false)})),
                None => Err(ApiError::BadRequest("user not found".into())),
            }
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Telegram refuses HTML with unbalanced or unknown tags; so does the stub, so a broken message
/// fails in tests as it would in production.
fn check_html(text: &str, parse_mode: Option<&str>) -> Result<(), ApiError> {
    if !parse_mode.is_some_and(|m| m.eq_ignore_ascii_case("html")) {
        return Ok(());
    }
    const ALLOWED: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "tg-spoiler",
        "blockquote",
        "span",
    ];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>').ok_or_else(|| {
            ApiError::BadRequest("can't parse entities: unclosed start tag".into())
        })?;
        let tag = &after[..end];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            if stack.pop().as_deref() != Some(name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "can't parse entities: unmatched end tag {name}"
                )));
            }
        } else {
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if !ALLOWED.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "can't parse entities: unsupported start tag \"{name}\""
                )));
            }
            stack.push(name);
        }
        rest = &after[end + 1..];
    }
    if let Some(open) = stack.pop() {
        return Err(ApiError::BadRequest(format!(
            "can't parse entities: can't find end tag corresponding to start tag {open}"
        )));
    }
    // A bare '&' that is not an entity is also refused.
    for (i, _) in text.match_indices('&') {
        let tail = &text[i..];
        if !["&lt;", "&gt;", "&amp;", "&quot;", "&#"]
            .iter()
            .any(|e| tail.starts_with(e))
        {
            return Err(ApiError::BadRequest(
                "can't parse entities: unsupported entity".into(),
            ));
        }
    }
    Ok(())
}
