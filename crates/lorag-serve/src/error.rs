//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = param.map(str::to_string);
        e
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message);
        e.code = Some("invalid_api_key");
        e
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
    }
    pub fn not_found(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, "not_found_error", message);
        e.param = param.map(str::to_string);
        e
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }
    pub fn busy() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "the server is busy: every slot is taken and the queue is full; retry after a moment",
        );
        e.code = Some("queue_full");
        e
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<lorag_llm::Error> for ApiError {
    fn from(e: lorag_llm::Error) -> Self {
        use lorag_llm::Error as E;
        match e {
            E::ContextOverflow { .. } => ApiError::bad_request(e.to_string(), Some("messages"))
                .with_code("context_length_exceeded"),
            E::QueueFull => ApiError::busy(),
            E::Param(_) => ApiError::bad_request(e.to_string(), None),
            E::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the server is shutting down",
            ),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<lorag_rag::Error> for ApiError {
    fn from(e: lorag_rag::Error) -> Self {
        match e {
            lorag_rag::Error::Llm(l) => l.into(),
            lorag_rag::Error::QuestionTooLong { .. } => {
                ApiError::bad_request(e.to_string(), Some("messages"))
                    .with_code("context_length_exceeded")
            }
            lorag_rag::Error::Kb(lorag_kb::Error::Store(lorag_store::Error::Filter(..))) => {
                ApiError::bad_request(e.to_string(), Some("filter"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<lorag_kb::Error> for ApiError {
    fn from(e: lorag_kb::Error) -> Self {
        match e {
            lorag_kb::Error::Store(lorag_store::Error::Filter(..)) => {
                ApiError::bad_request(e.to_string(), Some("filter"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}
