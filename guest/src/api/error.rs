//! OpenAI-style error objects: `{"error": {"message", "type", "param", "code"}}`
//! with the status code clients expect. Messages never quote the prompt.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    pub message: String,
}

impl ApiError {
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param,
            message: message.into(),
        }
    }
    pub fn unknown_model(model: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("model_not_found"),
            param: Some("model"),
            message: format!("the model `{model}` does not exist on this server"),
        }
    }
    pub fn context(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: Some("context_length_exceeded"),
            param: Some("messages"),
            message,
        }
    }
    pub fn busy(message: String) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            code: Some("rate_limit_exceeded"),
            param: None,
            message,
        }
    }
    pub fn no_model() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: Some("no_model"),
            param: None,
            message: "this image was built without a model (no cocoon.model on its command line)"
                .into(),
        }
    }
    pub fn internal(message: String) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            code: None,
            param: None,
            message,
        }
    }
    pub fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("not_found"),
            param: None,
            message: "no such endpoint".into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        // serde's message names the field and position, not the values.
        let mut e = ApiError::invalid(
            None,
            format!("the request body is not valid: {}", r.body_text()),
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.status = status;
            e.message = "the request body is too large".into();
        } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            e.status = status;
            e.message = "send the request as Content-Type: application/json".into();
        }
        e
    }
}
