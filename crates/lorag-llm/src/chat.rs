//! Chat messages and their rendering with a model's chat template (llama.cpp's template engine).

use crate::{Engine, Error, Result};
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(c: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: c.into(),
        }
    }
    pub fn user(c: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: c.into(),
        }
    }
    pub fn assistant(c: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: c.into(),
        }
    }
}

pub(crate) fn render(
    engine: &Engine,
    messages: &[Message],
    template: Option<&str>,
    add_assistant: bool,
) -> Result<String> {
    let source = match template {
        Some(t) => t.to_string(),
        None => engine
            .chat_template()
            .ok_or_else(|| Error::NoChatTemplate {
                model: engine.path().display().to_string(),
            })?,
    };
    render_source(&engine.model, &source, messages, add_assistant)
}

/// Render with a template given by name or Jinja source.
pub(crate) fn render_source(
    model: &LlamaModel,
    source: &str,
    messages: &[Message],
    add_assistant: bool,
) -> Result<String> {
    let bad = || Error::BadChatTemplate {
        template: source.chars().take(60).collect(),
    };
    let tmpl = LlamaChatTemplate::new(source).map_err(|_| bad())?;
    let msgs = messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::Param("a chat message contains a NUL byte".into()))?;
    model
        .apply_chat_template(&tmpl, &msgs, add_assistant)
        .map_err(|_| bad())
}
