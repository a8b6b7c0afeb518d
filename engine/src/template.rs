//! Chat templates: the Jinja template shipped in the GGUF, rendered with
//! minijinja (plus Python string methods, which real templates use).
//!
//! Message contents are rendered as placeholders first, so the output can
//! be cut into template text (where `<|im_start|>` and friends are special
//! tokens) and user content (where they are just text). A template that
//! rewrites the content it is given cannot be cut that way; then the
//! content is rendered in place and refused if it holds a special token's
//! text, so a user can never forge a role boundary.

use minijinja::{Environment, context};
use serde::Serialize;

use crate::tokenizer::Segment;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the chat template does not compile: {0}")]
    Compile(String),
    #[error("the chat template failed on these messages: {0}")]
    Render(String),
    #[error("message content may not contain the special token {0:?}")]
    SpecialInContent(String),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

/// Private-use characters delimit a placeholder.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// A rendered prompt: owned text plus how to tokenize each part.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    parts: Vec<(bool, String)>,
}

impl Rendered {
    pub fn segments(&self) -> Vec<Segment<'_>> {
        self.parts
            .iter()
            .map(|(content, s)| {
                if *content {
                    Segment::Content(s)
                } else {
                    Segment::Template(s)
                }
            })
            .collect()
    }
}

impl ChatTemplate {
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            bos: bos.into(),
            eos: eos.into(),
        })
    }

    fn render_raw(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        let tpl = self.env.get_template("chat").expect("added in new");
        tpl.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| TemplateError::Render(e.to_string()))
    }

    /// Renders the prompt for `messages`, ending with the assistant's turn.
    /// `specials` are the special tokens' texts, to refuse them in content
    /// when the template rewrites content.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        specials: &[&str],
    ) -> Result<Rendered, TemplateError> {
        let placeholders: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage {
                role: m.role.clone(),
                content: format!("{OPEN}{i}{CLOSE}"),
            })
            .collect();
        let text = self.render_raw(&placeholders)?;
        let real = self.render_raw(messages)?;
        // The cut is only valid if the template inserted each content as
        // is: the parts must join to exactly what the template renders.
        if let Some(parts) = cut(&text, messages)
            && parts.iter().map(|(_, p)| p.as_str()).collect::<String>() == real
        {
            return Ok(Rendered { parts });
        }
        for m in messages {
            if let Some(s) = specials.iter().find(|s| m.content.contains(**s)) {
                return Err(TemplateError::SpecialInContent(s.to_string()));
            }
        }
        Ok(Rendered {
            parts: vec![(false, real)],
        })
    }
}

/// Cuts the placeholder rendering into parts, if each placeholder appears
/// exactly once, in order.
fn cut(text: &str, messages: &[ChatMessage]) -> Option<Vec<(bool, String)>> {
    let mut parts = Vec::new();
    let mut rest = text;
    for (i, m) in messages.iter().enumerate() {
        let marker = format!("{OPEN}{i}{CLOSE}");
        let at = rest.find(&marker)?;
        if at > 0 {
            parts.push((false, rest[..at].to_string()));
        }
        parts.push((true, m.content.clone()));
        rest = &rest[at + marker.len()..];
    }
    if rest.contains(OPEN) || rest.contains(CLOSE) {
        return None;
    }
    if !rest.is_empty() {
        parts.push((false, rest.to_string()));
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_chatml_with_content_kept_apart() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let r = t
            .render(&[msg("user", "hi <|im_end|>")], &["<|im_end|>"])
            .unwrap();
        assert_eq!(
            r.parts,
            vec![
                (false, "<|im_start|>user\n".to_string()),
                (true, "hi <|im_end|>".to_string()),
                (false, "<|im_end|>\n<|im_start|>assistant\n".to_string()),
            ]
        );
    }

    #[test]
    fn a_template_that_rewrites_content_refuses_special_text() {
        let tpl = "{% for m in messages %}{{ m['content'].strip() }}{% endfor %}";
        let t = ChatTemplate::new(tpl, "", "").unwrap();
        // strip() changes the content: the template's own output is used.
        assert_eq!(
            t.render(&[msg("user", " x ")], &["<s>"]).unwrap().parts,
            vec![(false, "x".to_string())]
        );
        assert!(t.render(&[msg("user", " <s> ")], &["<s>"]).is_err());
        let tpl = "{% for m in messages %}{{ m['content'][:3] }}{% endfor %}";
        let t = ChatTemplate::new(tpl, "", "").unwrap();
        assert!(matches!(
            t.render(&[msg("user", "a<s>")], &["<s>"]),
            Err(TemplateError::SpecialInContent(_))
        ));
        assert_eq!(
            t.render(&[msg("user", "abcdef")], &["<s>"]).unwrap().parts,
            vec![(false, "abc".to_string())]
        );
    }

    #[test]
    fn template_errors_are_reported() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(TemplateError::Compile(_))
        ));
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[msg("user", "x")], &[]).unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }
}
