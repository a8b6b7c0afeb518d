//! Turning OpenAI requests (async-openai's types) into what the engine
//! runs: the prompt tokens and the sampling parameters.

use async_openai::types::chat::{
    ChatCompletionRequestMessage, CreateChatCompletionRequest, StopConfiguration,
};
use async_openai::types::completions::CreateCompletionRequest;
use cocoon_engine::generate::SamplingParams;
use cocoon_engine::model::Model;
use cocoon_engine::template::ChatMessage;
use cocoon_engine::tokenizer::{Segment, TokenId};
use serde_json::Value;

use super::error::ApiError;

/// Non-OpenAI sampling fields accepted alongside the standard ones
/// (llama.cpp and vLLM take them too).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Extra {
    pub top_k: Option<usize>,
}

/// A request the engine can run.
#[derive(Debug)]
pub struct Prepared {
    pub prompt: Vec<TokenId>,
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
}

const MAX_STOP: usize = 4;

fn stops(stop: Option<StopConfiguration>) -> Result<Vec<String>, ApiError> {
    let v = match stop {
        None => vec![],
        Some(StopConfiguration::String(s)) => vec![s],
        Some(StopConfiguration::StringArray(v)) => v,
    };
    if v.len() > MAX_STOP || v.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid(
            Some("stop"),
            "stop takes 1 to 4 non-empty strings",
        ));
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn params(
    model: &Model,
    prompt_len: usize,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    seed: Option<i64>,
    stop: Vec<String>,
    n: Option<u8>,
) -> Result<SamplingParams, ApiError> {
    if n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(Some("n"), "only n = 1 is supported"));
    }
    let temperature = temperature.unwrap_or(1.0) as f64;
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            Some("temperature"),
            "temperature must be between 0 and 2",
        ));
    }
    let top_p = top_p.map(f64::from);
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::invalid(Some("top_p"), "top_p must be in (0, 1]"));
    }
    let context = model.context_length();
    if prompt_len >= context {
        return Err(ApiError::context(format!(
            "this model's context is {context} tokens; the prompt has {prompt_len}"
        )));
    }
    let room = context - prompt_len;
    let max_tokens = match max_tokens {
        Some(0) => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                "max_tokens must be at least 1",
            ));
        }
        Some(m) if m as usize > room => {
            return Err(ApiError::context(format!(
                "this model's context is {context} tokens; the prompt has {prompt_len} and max_tokens asks for {m} more"
            )));
        }
        Some(m) => m as usize,
        None => room,
    };
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        // Without a seed, sampled output differs between requests.
        seed: seed.map(|s| s as u64).unwrap_or_else(rand_seed),
        max_tokens,
        stop,
    })
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The text of a message's content: a string, or text parts.
fn content_text(content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t.to_string()),
                _ => Err(ApiError::invalid(
                    Some("messages"),
                    "only text content parts are supported",
                )),
            })
            .collect(),
        _ => Err(ApiError::invalid(
            Some("messages"),
            "a message's content must be a string or text parts",
        )),
    }
}

fn chat_messages(messages: &[ChatCompletionRequestMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must not be empty",
        ));
    }
    messages
        .iter()
        .map(|m| {
            let v = serde_json::to_value(m).map_err(|e| ApiError::internal(e.to_string()))?;
            let role = v["role"].as_str().unwrap_or_default().to_string();
            if !["system", "developer", "user", "assistant"].contains(&role.as_str()) {
                return Err(ApiError::invalid(
                    Some("messages"),
                    format!("messages with role `{role}` are not supported"),
                ));
            }
            // Templates know "system"; "developer" is its newer name.
            let role = if role == "developer" {
                "system".to_string()
            } else {
                role
            };
            Ok(ChatMessage {
                role,
                content: content_text(&v["content"])?,
            })
        })
        .collect()
}

#[allow(deprecated)] // max_tokens and seed are deprecated in OpenAI's spec, not in clients
pub fn chat(
    model: &Model,
    req: CreateChatCompletionRequest,
    extra: Extra,
) -> Result<Prepared, ApiError> {
    let messages = chat_messages(&req.messages)?;
    let specials: Vec<String> = model.tokenizer.special_texts();
    let specials: Vec<&str> = specials.iter().map(String::as_str).collect();
    let rendered = model
        .template
        .render(&messages, &specials)
        .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    let prompt = model.tokenizer.encode(&rendered.segments());
    let params = params(
        model,
        prompt.len(),
        req.max_completion_tokens.or(req.max_tokens),
        req.temperature,
        req.top_p,
        extra.top_k,
        req.seed,
        stops(req.stop)?,
        req.n,
    )?;
    Ok(Prepared {
        prompt,
        params,
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

pub fn completion(
    model: &Model,
    req: CreateCompletionRequest,
    extra: Extra,
) -> Result<Prepared, ApiError> {
    if req.echo == Some(true)
        || req.suffix.is_some()
        || req.logprobs.is_some()
        || req.best_of.is_some_and(|b| b != 1)
    {
        return Err(ApiError::invalid(
            None,
            "echo, suffix, logprobs and best_of are not supported",
        ));
    }
    let v = serde_json::to_value(&req.prompt).map_err(|e| ApiError::internal(e.to_string()))?;
    let vocab = model.tokenizer.vocab_size() as u64;
    let prompt: Vec<TokenId> = match &v {
        Value::String(s) => model.tokenizer.encode(&[Segment::Content(s)]),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => model
            .tokenizer
            .encode(&[Segment::Content(a[0].as_str().unwrap_or_default())]),
        Value::Array(a)
            if !a.is_empty() && a.iter().all(|t| t.as_u64().is_some_and(|t| t < vocab)) =>
        {
            a.iter()
                .filter_map(|t| t.as_u64())
                .map(|t| t as TokenId)
                .collect()
        }
        _ => {
            return Err(ApiError::invalid(
                Some("prompt"),
                "prompt must be one string or one array of token ids",
            ));
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid(Some("prompt"), "the prompt is empty"));
    }
    let params = params(
        model,
        prompt.len(),
        // The legacy endpoint's default is 16 tokens.
        Some(req.max_tokens.unwrap_or(16)),
        req.temperature,
        req.top_p,
        extra.top_k,
        req.seed,
        stops(req.stop)?,
        req.n,
    )?;
    Ok(Prepared {
        prompt,
        params,
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}
