//! The endpoint handlers: validate, submit to the engine, and answer as one
//! JSON object or as a stream of server-sent events.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use async_openai::types::chat::{
    ChatChoice, ChatChoiceStream, ChatCompletionResponseMessage, ChatCompletionStreamResponseDelta,
    Choice, CompletionFinishReason, CompletionUsage, CreateChatCompletionRequest,
    CreateChatCompletionResponse, CreateChatCompletionStreamResponse, FinishReason, Role,
};
use async_openai::types::completions::{CreateCompletionRequest, CreateCompletionResponse};
use async_openai::types::models::{ListModelResponse, Model as ModelInfo};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use cocoon_engine::generate::FinishReason as EngineFinish;
use cocoon_engine::scheduler::{Event, Job, SubmitError};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::error::ApiError;
use super::request::{self, Extra, Prepared};
use super::{Served, Shared};
use crate::console;

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

pub async fn health(State(s): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": (console::uptime() * 1000.0).round() / 1000.0,
        "model": s.served.as_ref().map(|m| json!({
            "id": m.model.header.name,
            "pack_hash": crate::model_disk::measured_model()
                .map(|h| cocoon_image::packhash::display(&h))
                .unwrap_or_default(),
            "device": m.model.device_name,
        })),
    }))
}

pub async fn models(State(s): State<Shared>) -> Json<ListModelResponse> {
    s.counters.count("models", 200);
    let data = s
        .served
        .iter()
        .map(|m| ModelInfo {
            id: m.model.header.name.clone(),
            object: "model".into(),
            created: m.ready_at as u32,
            owned_by: "cocoon".into(),
            shutdown_date: None,
        })
        .collect();
    Json(ListModelResponse {
        object: "list".into(),
        data,
    })
}

/// Parses the body twice: once as the OpenAI type, once for our extras.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(T, Extra), ApiError> {
    let Json(v) = body?;
    let extra: Extra = serde_json::from_value(v.clone()).unwrap_or_default();
    let req = serde_json::from_value(v)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid: {e}")))?;
    Ok((req, extra))
}

fn check_model<'a>(s: &'a Shared, requested: &str) -> Result<&'a Served, ApiError> {
    let served = s.served()?;
    if requested != served.model.header.name {
        return Err(ApiError::unknown_model(requested));
    }
    Ok(served)
}

fn submit(served: &Served, p: &Prepared) -> Result<UnboundedReceiver<Event>, ApiError> {
    let (tx, rx) = unbounded_channel();
    let job = Job {
        prompt: p.prompt.clone(),
        params: p.params.clone(),
        events: tx,
    };
    served.scheduler.submit(job).map_err(|e| match e {
        SubmitError::Full(_) => ApiError::busy(e.to_string()),
        SubmitError::Stopped => ApiError::internal(e.to_string()),
    })?;
    Ok(rx)
}

/// Everything a non-streamed answer needs.
struct Collected {
    text: String,
    finish: EngineFinish,
    usage: CompletionUsage,
}

fn usage(prompt: usize, completion: usize) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: prompt as u32,
        completion_tokens: completion as u32,
        total_tokens: (prompt + completion) as u32,
        prompt_tokens_details: None,
        completion_tokens_details: None,
    }
}

async fn collect(mut rx: UnboundedReceiver<Event>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                return Ok(Collected {
                    text,
                    finish,
                    usage: usage(prompt_tokens, completion_tokens),
                });
            }
            Event::Error(e) => return Err(ApiError::internal(e)),
        }
    }
    Err(ApiError::internal("the engine stopped".into()))
}

fn chat_finish(f: EngineFinish) -> FinishReason {
    match f {
        EngineFinish::Stop => FinishReason::Stop,
        EngineFinish::Length => FinishReason::Length,
    }
}

fn completion_finish(f: EngineFinish) -> CompletionFinishReason {
    match f {
        EngineFinish::Stop => CompletionFinishReason::Stop,
        EngineFinish::Length => CompletionFinishReason::Length,
    }
}

fn respond<T>(s: &Shared, endpoint: &'static str, r: Result<T, ApiError>) -> Response
where
    T: IntoResponse,
{
    match r {
        Ok(ok) => {
            s.counters.count(endpoint, 200);
            ok.into_response()
        }
        Err(e) => {
            s.counters.count(endpoint, e.status.as_u16());
            e.into_response()
        }
    }
}

pub async fn chat(State(s): State<Shared>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let r = chat_inner(&s, body).await;
    respond(&s, "chat", r)
}

async fn chat_inner(
    s: &Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (req, extra): (CreateChatCompletionRequest, Extra) = parse(body)?;
    let served = check_model(s, &req.model)?;
    let model_name = served.model.header.name.clone();
    let prepared = request::chat(&served.model, req, extra)?;
    let rx = submit(served, &prepared)?;
    let id = s.counters.id("chatcmpl");
    let created = now();
    if prepared.stream {
        let chunk = move |delta: ChatCompletionStreamResponseDelta,
                          finish: Option<FinishReason>| {
            #[allow(deprecated)]
            CreateChatCompletionStreamResponse {
                id: id.clone(),
                choices: vec![ChatChoiceStream {
                    index: 0,
                    delta,
                    finish_reason: finish,
                    logprobs: None,
                }],
                created,
                model: model_name.clone(),
                service_tier: None,
                system_fingerprint: None,
                object: "chat.completion.chunk".into(),
                usage: None,
                obfuscation: None,
                moderation: None,
            }
        };
        return Ok(sse(rx, prepared.include_usage, move |piece| match piece {
            Piece::Start => Some(to_json(&chunk(
                delta(Some(Role::Assistant), Some(String::new())),
                None,
            ))),
            Piece::Text(t) => Some(to_json(&chunk(delta(None, Some(t)), None))),
            Piece::Finish(f) => Some(to_json(&chunk(delta(None, None), Some(chat_finish(f))))),
            Piece::Usage(u) => {
                let mut c = chunk(delta(None, None), None);
                c.choices.clear();
                c.usage = Some(u);
                Some(to_json(&c))
            }
        }));
    }
    let done = collect(rx).await?;
    #[allow(deprecated)]
    let message = ChatCompletionResponseMessage {
        content: Some(done.text),
        refusal: None,
        tool_calls: None,
        annotations: None,
        role: Role::Assistant,
        function_call: None,
        audio: None,
    };
    #[allow(deprecated)]
    let resp = CreateChatCompletionResponse {
        id: s.counters.id("chatcmpl"),
        choices: vec![ChatChoice {
            index: 0,
            message,
            finish_reason: Some(chat_finish(done.finish)),
            logprobs: None,
        }],
        created,
        model: served.model.header.name.clone(),
        service_tier: None,
        system_fingerprint: None,
        object: "chat.completion".into(),
        usage: Some(done.usage),
        metadata: None,
        moderation: None,
    };
    Ok(Json(resp).into_response())
}

#[allow(deprecated)]
fn delta(role: Option<Role>, content: Option<String>) -> ChatCompletionStreamResponseDelta {
    ChatCompletionStreamResponseDelta {
        content,
        function_call: None,
        tool_calls: None,
        role,
        refusal: None,
        audio: None,
    }
}

pub async fn completions(
    State(s): State<Shared>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let r = completions_inner(&s, body).await;
    respond(&s, "completions", r)
}

async fn completions_inner(
    s: &Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (req, extra): (CreateCompletionRequest, Extra) = parse(body)?;
    let served = check_model(s, &req.model)?;
    let model_name = served.model.header.name.clone();
    let prepared = request::completion(&served.model, req, extra)?;
    let rx = submit(served, &prepared)?;
    let id = s.counters.id("cmpl");
    let created = now();
    #[allow(deprecated)]
    let response = move |text: String,
                         finish: Option<CompletionFinishReason>,
                         usage: Option<CompletionUsage>| {
        CreateCompletionResponse {
            id: id.clone(),
            choices: vec![Choice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: finish,
            }],
            created,
            model: model_name.clone(),
            system_fingerprint: None,
            object: "text_completion".into(),
            usage,
        }
    };
    if prepared.stream {
        return Ok(sse(rx, prepared.include_usage, move |piece| match piece {
            Piece::Start => None,
            Piece::Text(t) => Some(to_json(&response(t, None, None))),
            Piece::Finish(f) => Some(to_json(&response(
                String::new(),
                Some(completion_finish(f)),
                None,
            ))),
            Piece::Usage(u) => {
                let mut r = response(String::new(), None, Some(u));
                r.choices.clear();
                Some(to_json(&r))
            }
        }));
    }
    let done = collect(rx).await?;
    Ok(Json(response(
        done.text,
        Some(completion_finish(done.finish)),
        Some(done.usage),
    ))
    .into_response())
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("response types serialize")
}

/// The parts of a streamed answer, rendered by each endpoint its own way.
enum Piece {
    Start,
    Text(String),
    Finish(EngineFinish),
    Usage(CompletionUsage),
}

/// Streams engine events as SSE `data:` lines ending in `data: [DONE]`.
/// Dropping the stream (the client went away) drops the receiver, which
/// the engine notices at its next step and stops generating.
fn sse(
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    render: impl Fn(Piece) -> Option<String> + Send + 'static,
) -> Response {
    enum St {
        Start,
        Running,
        Usage(CompletionUsage),
        Done,
        End,
    }
    let stream = futures_util::stream::unfold(
        (rx, St::Start, render),
        move |(mut rx, st, render)| async move {
            let mut st = st;
            loop {
                let out: Option<String> = match st {
                    St::End => return None,
                    St::Done => {
                        st = St::End;
                        Some("[DONE]".into())
                    }
                    St::Usage(u) => {
                        st = St::Done;
                        render(Piece::Usage(u))
                    }
                    St::Start => {
                        st = St::Running;
                        render(Piece::Start)
                    }
                    St::Running => match rx.recv().await {
                        Some(Event::Text(t)) => render(Piece::Text(t)),
                        Some(Event::Done {
                            finish,
                            prompt_tokens,
                            completion_tokens,
                        }) => {
                            st = if include_usage {
                                St::Usage(usage(prompt_tokens, completion_tokens))
                            } else {
                                St::Done
                            };
                            render(Piece::Finish(finish))
                        }
                        Some(Event::Error(e)) => {
                            st = St::End;
                            Some(ApiError::internal(e).body().to_string())
                        }
                        None => {
                            st = St::End;
                            Some(
                                ApiError::internal("the engine stopped".into())
                                    .body()
                                    .to_string(),
                            )
                        }
                    },
                };
                if let Some(data) = out {
                    return Some((
                        Ok::<_, Infallible>(SseEvent::default().data(data)),
                        (rx, st, render),
                    ));
                }
            }
        },
    );
    Sse::new(stream).into_response()
}
