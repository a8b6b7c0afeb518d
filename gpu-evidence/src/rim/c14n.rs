//! Canonical XML 1.1 without comments (`http://www.w3.org/2006/12/xml-c14n11`),
//! for the two node sets an enveloped XML signature needs: the whole
//! document less the signature element, and the `SignedInfo` element
//! alone.
//!
//! What the recommendation asks, for the documents [`super::xml`] accepts
//! (no DTD, no processing instructions, no `xml:*` attributes, comments
//! already dropped):
//! - every element as a start and an end tag, even when empty;
//! - namespace declarations first, sorted by prefix (the default one
//!   first), then attributes sorted by namespace URI and local name
//!   (unqualified ones first);
//! - a namespace declaration is written where it changes what the nearest
//!   written ancestor has in scope. At the top of a node set, that is every
//!   binding in scope there, inherited ones included: the `SignedInfo` of
//!   a RIM carries the root's `xmlns`, `xmlns:ns0` and `xmlns:ns2` in its
//!   canonical form, though it declares none of them;
//! - `&`, `<`, `>` and carriage returns escaped in text; `&`, `<`, `"`,
//!   tab, line feed and carriage return in attribute values.
//!
//! `xmllint --c14n11` (libxml2) is the cross-check in the tests.

use super::xml::{Element, Node, Scope, resolve, scope_of};

/// The canonical form of `root`'s document without the element at `skip`
/// (a path of child indices from the root, as [`find`] returns), or of
/// the whole document when `skip` is `None`.
pub fn document_without(root: &Element, skip: Option<&[usize]>) -> Result<String, String> {
    let mut out = String::new();
    write(root, &Scope::new(), &Scope::new(), skip, &mut out)?;
    Ok(out)
}

/// The canonical form of the element at `path` as a node set of its own:
/// its in-scope namespaces (the ancestors' too) written on it.
pub fn subtree(root: &Element, path: &[usize]) -> Result<String, String> {
    let mut scope = Scope::new();
    let mut e = root;
    for &i in path {
        scope = scope_of(&scope, e);
        e = child(e, i)?;
    }
    let mut out = String::new();
    write(e, &scope, &Scope::new(), None, &mut out)?;
    Ok(out)
}

/// The path (child indices) of every element for which `pred` holds,
/// depth first.
pub fn find(root: &Element, pred: &dyn Fn(&Element, &Scope) -> bool) -> Vec<Vec<usize>> {
    fn walk(
        e: &Element,
        scope: &Scope,
        path: &mut Vec<usize>,
        pred: &dyn Fn(&Element, &Scope) -> bool,
        out: &mut Vec<Vec<usize>>,
    ) {
        let scope = scope_of(scope, e);
        if pred(e, &scope) {
            out.push(path.clone());
        }
        for (i, c) in e.children.iter().enumerate() {
            if let Node::Element(c) = c {
                path.push(i);
                walk(c, &scope, path, pred, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &Scope::new(), &mut Vec::new(), pred, &mut out);
    out
}

/// The element at `path` below `root`.
pub fn at<'a>(root: &'a Element, path: &[usize]) -> Result<&'a Element, String> {
    path.iter().try_fold(root, |e, &i| child(e, i))
}

fn child(e: &Element, i: usize) -> Result<&Element, String> {
    match e.children.get(i) {
        Some(Node::Element(c)) => Ok(c),
        _ => Err("a path to no element".into()),
    }
}

/// `e` written canonically: `inherited` is what is in scope at its parent,
/// `rendered` what the nearest written ancestor has in scope (empty at the
/// top of the node set, so everything in scope is written there).
fn write(
    e: &Element,
    inherited: &Scope,
    rendered: &Scope,
    skip: Option<&[usize]>,
    out: &mut String,
) -> Result<(), String> {
    let scope = scope_of(inherited, e);
    out.push('<');
    out.push_str(&e.name);
    // Namespace declarations: BTreeMap order is by prefix, "" first.
    for (prefix, uri) in &scope {
        let before = rendered.get(prefix).map(String::as_str).unwrap_or("");
        if uri == before {
            continue;
        }
        if prefix.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(prefix);
            out.push_str("=\"");
        }
        escape_attribute(uri, out);
        out.push('"');
    }
    let mut attributes = Vec::with_capacity(e.attributes.len());
    for (qname, value) in &e.attributes {
        let uri = resolve(&scope, qname, true)
            .ok_or_else(|| format!("<{}> {qname}: the prefix is not declared", e.name))?;
        attributes.push(((uri, Element::split(qname).1), qname, value));
    }
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    if attributes.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "<{}> has one attribute twice under two prefixes",
            e.name
        ));
    }
    for (_, qname, value) in attributes {
        out.push(' ');
        out.push_str(qname);
        out.push_str("=\"");
        escape_attribute(value, out);
        out.push('"');
    }
    if resolve(&scope, &e.name, false).is_none() {
        return Err(format!("<{}>: the prefix is not declared", e.name));
    }
    out.push('>');
    for (i, c) in e.children.iter().enumerate() {
        let below = match skip {
            Some([first, rest @ ..]) if *first == i => {
                if rest.is_empty() {
                    continue;
                }
                Some(rest)
            }
            _ => None,
        };
        match c {
            Node::Text(t) => escape_text(t, out),
            Node::Element(c) => write(c, &scope, &scope, below, out)?,
        }
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
    Ok(())
}

fn escape_text(t: &str, out: &mut String) {
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attribute(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}
