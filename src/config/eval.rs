//! HCL evaluation with line tracking, and where an error is located.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use hcl::edit::Span as _;
use hcl::eval::{Context, Evaluate};

use super::ConfigError;

/// Formats the " (file line N, column M)" suffix of an error.
pub(super) struct Where<'a>(
    pub(super) Option<&'a Path>,
    pub(super) Option<usize>,
    pub(super) Option<usize>,
);

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if let Some(p) = self.0 {
            out.push_str(&p.display().to_string());
        }
        if let Some(l) = self.1 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("line {l}"));
        }
        if let Some(c) = self.2 {
            out.push_str(&format!(", column {c}"));
        }
        if out.is_empty() {
            Ok(())
        } else {
            write!(f, " ({out})")
        }
    }
}

/// Keeps error messages on one line even if a library message spans several.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Byte offset to one-based line number.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Evaluated HCL body plus the line each dotted key was written on.
pub(super) struct Evaluated {
    /// The evaluated body as plain values.
    pub(super) value: hcl::Value,
    /// One-based line of each dotted key written in the text.
    pub(super) lines: HashMap<String, usize>,
}

impl Evaluated {
    /// Line of `key`, or of its closest written ancestor (a missing key is reported at its block).
    pub(super) fn line_for(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(&l) = self.lines.get(k) {
                return Some(l);
            }
            k = &k[..k.rfind('.')?];
        }
    }
}

/// Turns HCL text into a plain value tree, evaluating every expression.
///
/// Each attribute is evaluated on its own so an evaluation error can name its key and line,
/// which evaluating the whole body at once cannot.
pub(super) fn evaluate(text: &str) -> Result<Evaluated, ConfigError> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| ConfigError::Syntax {
        file: None,
        line: e.location().line(),
        column: e.location().column(),
        message: one_line(e.message()),
    })?;
    let ctx = Context::new();
    let mut lines = HashMap::new();
    let map = eval_body(text, &body, "", &ctx, &mut lines)?;
    Ok(Evaluated {
        value: hcl::Value::Object(map),
        lines,
    })
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn eval_body(
    text: &str,
    body: &hcl::edit::structure::Body,
    prefix: &str,
    ctx: &Context,
    lines: &mut HashMap<String, usize>,
) -> Result<hcl::Map<String, hcl::Value>, ConfigError> {
    use hcl::edit::structure::Structure;
    let mut map = hcl::Map::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => {
                let name = attr.key.as_str();
                let key = join(prefix, name);
                let line = attr
                    .key
                    .span()
                    .or(attr.span())
                    .map(|s| line_of(text, s.start));
                let err = |message: String| ConfigError::Invalid {
                    key: key.clone(),
                    line,
                    file: None,
                    message,
                };
                if map.contains_key(name) {
                    return Err(err("is set more than once".into()));
                }
                let expr = hcl::Expression::from(attr.value.clone());
                // hcl-rs panics on some arithmetic (integer overflow): a config file must get
                // an error naming its key, never crash the server.
                let evaluated =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expr.evaluate(ctx)))
                        .map_err(|_| {
                        err("expression cannot be evaluated (arithmetic overflow?)".into())
                    })?;
                let value = evaluated.map_err(|e| err(one_line(&e.to_string())))?;
                if let Some(l) = line {
                    lines.insert(key.clone(), l);
                }
                map.insert(name.to_string(), value);
            }
            Structure::Block(block) => {
                let name = block.ident.as_str();
                let mut key = join(prefix, name);
                let line = block.span().map(|s| line_of(text, s.start));
                // Labels nest like HCL's JSON mapping: `a "b" { }` becomes a.b.
                let mut path: Vec<String> = vec![name.to_string()];
                for label in &block.labels {
                    key = join(&key, label.as_str());
                    path.push(label.as_str().to_string());
                }
                if let Some(l) = line {
                    lines.insert(key.clone(), l);
                }
                let inner = eval_body(text, &block.body, &key, ctx, lines)?;
                let mut slot = &mut map;
                let last = path.pop().expect("block has an ident");
                for seg in &path {
                    let entry = slot
                        .entry(seg.clone())
                        .or_insert_with(|| hcl::Value::Object(hcl::Map::new()));
                    slot = match entry {
                        hcl::Value::Object(m) => m,
                        _ => {
                            return Err(ConfigError::Invalid {
                                key: key.clone(),
                                line,
                                file: None,
                                message: "is set more than once".into(),
                            })
                        }
                    };
                }
                if slot.contains_key(&last) {
                    return Err(ConfigError::Invalid {
                        key,
                        line,
                        file: None,
                        message: "block appears more than once".into(),
                    });
                }
                slot.insert(last, hcl::Value::Object(inner));
            }
        }
    }
    Ok(map)
}
