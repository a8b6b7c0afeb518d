//! A strict XML reader for RIMs: a tree that keeps what canonical XML
//! needs (qualified names as written, namespace declarations, attribute
//! values after XML's normalization, text after line-end normalization)
//! and refuses what a RIM never holds and canonicalization would have to
//! interpret: a DOCTYPE (entities, default attributes), processing
//! instructions, `xml:*` attributes, XML 1.1, other encodings than UTF-8.
//! Comments are dropped (the canonical form without comments).

use std::collections::BTreeMap;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// The namespace the `xml` prefix is bound to, everywhere.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// Deeper than any RIM (four levels): a bound on recursion.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The qualified name as written (`ns0:Payload`).
    pub name: String,
    /// This element's own namespace declarations: prefix ("" for the
    /// default namespace) to URI ("" undeclares the default).
    pub declares: BTreeMap<String, String>,
    /// Attributes other than namespace declarations, in document order:
    /// qualified name as written, value after normalization.
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    /// The prefix of a qualified name ("" if none) and its local part.
    pub fn split(qname: &str) -> (&str, &str) {
        qname.split_once(':').unwrap_or(("", qname))
    }

    pub fn local_name(&self) -> &str {
        Element::split(&self.name).1
    }

    pub fn attribute(&self, qname: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == qname)
            .map(|(_, v)| v.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
}

/// The in-scope namespace bindings at some element: prefix to URI, from
/// the root's declarations down ("" for the default namespace; an empty
/// URI means none).
pub type Scope = BTreeMap<String, String>;

/// `scope` with `e`'s own declarations applied.
pub fn scope_of(scope: &Scope, e: &Element) -> Scope {
    let mut s = scope.clone();
    for (p, uri) in &e.declares {
        s.insert(p.clone(), uri.clone());
    }
    s
}

/// The namespace URI of a qualified name in `scope`: elements take the
/// default namespace, unprefixed attributes none. `None` for an unbound
/// prefix.
pub fn resolve(scope: &Scope, qname: &str, attribute: bool) -> Option<String> {
    match Element::split(qname) {
        ("xml", _) => Some(XML_NS.into()),
        ("", _) if attribute => Some(String::new()),
        (p, _) => scope
            .get(p)
            .cloned()
            .or_else(|| p.is_empty().then(String::new)),
    }
}

/// Parse a document into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut seen_decl = false;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {at}: {e}"))?;
        let first = at == 0 && !seen_decl;
        match event {
            Event::Decl(d) => {
                if !first {
                    return Err("an XML declaration after the start".into());
                }
                seen_decl = true;
                let version = d.version().map_err(|e| e.to_string())?;
                if &*version != "1.0" {
                    return Err("only XML 1.0 is accepted".into());
                }
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| e.to_string())?;
                    if !enc.eq_ignore_ascii_case("utf-8") {
                        return Err("only UTF-8 is accepted".into());
                    }
                }
            }
            Event::DocType(_) => return Err("a DOCTYPE is not accepted".into()),
            Event::PI(_) => return Err("processing instructions are not accepted".into()),
            Event::Comment(_) => {}
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                stack.push(element(&s)?);
            }
            Event::Empty(s) => {
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                let e = element(&s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(e)),
                    None => root = Some(e),
                }
            }
            Event::End(_) => {
                let e = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(e)),
                    None => root = Some(e),
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml_content(XmlVersion::Implicit1_0))?,
            Event::CData(c) => push_text(&mut stack, &c.xml_content(XmlVersion::Implicit1_0))?,
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| e.to_string())?
                        .ok_or("a character reference to no character")?
                } else {
                    match r.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(format!("the entity &{other}; is not declared"));
                        }
                    }
                };
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]))?
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    let Some(parent) = stack.last_mut() else {
        if text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
            return Ok(());
        }
        return Err("text outside the root element".into());
    };
    // Adjacent pieces (text, a reference, text) are one text node.
    if let Some(Node::Text(t)) = parent.children.last_mut() {
        t.push_str(text);
    } else {
        parent.children.push(Node::Text(text.into()));
    }
    Ok(())
}

fn element(s: &BytesStart) -> Result<Element, String> {
    let name = s.name().as_ref().to_string();
    let mut e = Element {
        name,
        declares: BTreeMap::new(),
        attributes: Vec::new(),
        children: Vec::new(),
    };
    for a in s.attributes() {
        let a = a.map_err(|err| format!("<{}>: {err}", e.name))?;
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| format!("<{}> {key}: {err}", e.name))?
            .into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            let prefix = key.strip_prefix("xmlns").unwrap_or_default();
            let prefix = prefix.strip_prefix(':').unwrap_or(prefix).to_string();
            if prefix == "xml" || prefix == "xmlns" {
                return Err(format!("<{}> redeclares the {prefix} prefix", e.name));
            }
            e.declares.insert(prefix, value);
        } else if key.starts_with("xml:") {
            // Canonical XML 1.1 treats xml:base, xml:lang, xml:space and
            // xml:id specially; a RIM carries none, so none are accepted.
            return Err(format!("<{}>: {key} is not accepted", e.name));
        } else {
            e.attributes.push((key, value));
        }
    }
    Ok(e)
}
