//! The subset of Go's text/template that docker's `--format` flags use:
//! fields (`{{.ID}}`, `{{.State.Status}}`), `{{.}}`, functions (`json`,
//! `upper`, `lower`, `title`, `join`, `split`, `len`, `index`, `println`,
//! `truncate`, `eq`, `ne`, `not`, `and`, `or`), pipes (`{{.Names | upper}}`),
//! parentheses, `if`/`else`/`range`/`with`/`end`, `{{-`/`-}}` trimming, and
//! docker's own additions: a leading `table` (header row + aligned columns)
//! and `\t`/`\n` written literally in the format.
//!
//! Data is a `serde_json::Value`. Field lookup is exact first, then
//! case-insensitive, so Go field names (`.APIVersion`) find JSON keys
//! (`ApiVersion`).

use serde_json::Value;

/// A parse or execution error, with the text docker users expect.
#[derive(Debug)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// A parsed format.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// The format began with `table`: print a header and align columns.
    pub table: bool,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipeline(Vec<Cmd>);

#[derive(Debug, Clone)]
struct Cmd(Vec<Arg>);

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    Field(Vec<String>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
    Func(String),
    Sub(Pipeline),
    /// `(pipeline).Field.Sub`.
    SubField(Pipeline, Vec<String>),
}

impl Template {
    /// Parses a docker `--format` value (`table` prefix, `\t`, `\n`).
    pub fn parse(format: &str) -> Result<Template, TemplateError> {
        let mut f = format;
        let mut table = false;
        if let Some(rest) = f.strip_prefix("table")
            && (rest.is_empty() || rest.starts_with([' ', '\t', '{']))
        {
            table = true;
            f = rest;
        }
        let f = if table { f.trim_matches(' ') } else { f };
        let f = f.replace("\\t", "\t").replace("\\n", "\n");
        let items = lex(&f)?;
        let mut pos = 0;
        let (nodes, end) = parse_list(&items, &mut pos)?;
        if let Some(e) = end {
            return err(format!("unexpected {{{{{e}}}}}"));
        }
        Ok(Template { nodes, table })
    }

    /// Executes against `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        exec_list(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

/// Raw pieces: text and the inside of `{{ }}` (already trimmed).
enum Item {
    Text(String),
    Action(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Pipe,
    Open,
    Close,
    /// `.A.B` right after `)`: fields of the parenthesized value.
    Chain(String),
}

fn lex(s: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = s;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("{{") else {
            let mut t = rest.to_owned();
            if trim_next {
                t = t.trim_start().to_owned();
            }
            items.push(Item::Text(t));
            break;
        };
        let mut text = rest[..start].to_owned();
        if trim_next {
            text = text.trim_start().to_owned();
        }
        let mut inner_start = start + 2;
        if rest[inner_start..].starts_with("- ") || rest[inner_start..].starts_with("-\t") {
            text = text.trim_end().to_owned();
            inner_start += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text));
        }
        let Some(end_rel) = find_close(&rest[inner_start..]) else {
            return err("unclosed action");
        };
        let mut inner = &rest[inner_start..inner_start + end_rel];
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\t-") {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        items.push(Item::Action(tokenize(inner)?));
        rest = &rest[inner_start + end_rel + 2..];
    }
    Ok(items)
}

/// Position of the `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn tokenize(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '|' => {
                chars.next();
                toks.push(Tok::Pipe);
            }
            '(' => {
                chars.next();
                toks.push(Tok::Open);
            }
            ')' => {
                chars.next();
                toks.push(Tok::Close);
                if chars.peek() == Some(&'.') {
                    let mut w = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '|' | '(' | ')' | '"' | '`') {
                            break;
                        }
                        w.push(c);
                        chars.next();
                    }
                    toks.push(Tok::Chain(w));
                }
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return err("unterminated quoted string"),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => v.push('\n'),
                            Some('t') => v.push('\t'),
                            Some(o) => v.push(o),
                            None => return err("unterminated quoted string"),
                        },
                        Some(o) => v.push(o),
                    }
                }
                toks.push(Tok::Str(v));
            }
            '`' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return err("unterminated raw string"),
                        Some('`') => break,
                        Some(o) => v.push(o),
                    }
                }
                toks.push(Tok::Str(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '|' | '(' | ')' | '"' | '`') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                toks.push(Tok::Word(w));
            }
        }
    }
    Ok(toks)
}

/// Parses nodes up to an `else` or `end` (returned) or the input's end.
fn parse_list(
    items: &[Item],
    pos: &mut usize,
) -> Result<(Vec<Node>, Option<&'static str>), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        match item {
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(toks) => {
                let first = match toks.first() {
                    Some(Tok::Word(w)) => w.as_str(),
                    None => return err("missing value for command"),
                    _ => "",
                };
                match first {
                    "end" => return Ok((nodes, Some("end"))),
                    "else" => return Ok((nodes, Some("else"))),
                    "if" | "range" | "with" => {
                        let pipe = parse_pipeline(&toks[1..])?;
                        let (body, end) = parse_list(items, pos)?;
                        let alt = match end {
                            Some("else") => {
                                let (alt, end2) = parse_list(items, pos)?;
                                if end2 != Some("end") {
                                    return err(format!("missing {{{{end}}}} for {first}"));
                                }
                                alt
                            }
                            Some(_) => Vec::new(),
                            None => return err(format!("missing {{{{end}}}} for {first}")),
                        };
                        nodes.push(match first {
                            "if" => Node::If(pipe, body, alt),
                            "range" => Node::Range(pipe, body, alt),
                            _ => Node::With(pipe, body, alt),
                        });
                    }
                    _ => nodes.push(Node::Action(parse_pipeline(toks)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_pipeline(toks: &[Tok]) -> Result<Pipeline, TemplateError> {
    let mut pos = 0;
    let p = parse_pipe_at(toks, &mut pos)?;
    if pos != toks.len() {
        return err("unexpected \")\" in command");
    }
    Ok(p)
}

fn parse_pipe_at(toks: &[Tok], pos: &mut usize) -> Result<Pipeline, TemplateError> {
    let mut cmds = Vec::new();
    let mut args = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        match t {
            Tok::Close => break,
            Tok::Pipe => {
                *pos += 1;
                if args.is_empty() {
                    return err("missing command before |");
                }
                cmds.push(Cmd(std::mem::take(&mut args)));
            }
            Tok::Open => {
                *pos += 1;
                let sub = parse_pipe_at(toks, pos)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return err("unclosed left paren");
                }
                *pos += 1;
                if let Some(Tok::Chain(w)) = toks.get(*pos) {
                    *pos += 1;
                    let path: Vec<String> = w
                        .trim_start_matches('.')
                        .split('.')
                        .map(str::to_owned)
                        .collect();
                    args.push(Arg::SubField(sub, path));
                } else {
                    args.push(Arg::Sub(sub));
                }
            }
            Tok::Chain(w) => return err(format!("unexpected {w:?}")),
            Tok::Str(s) => {
                *pos += 1;
                args.push(Arg::Str(s.clone()));
            }
            Tok::Word(w) => {
                *pos += 1;
                args.push(word_arg(w)?);
            }
        }
    }
    if args.is_empty() {
        return err("missing value for command");
    }
    cmds.push(Cmd(args));
    Ok(Pipeline(cmds))
}

fn word_arg(w: &str) -> Result<Arg, TemplateError> {
    if w == "." {
        return Ok(Arg::Dot);
    }
    if let Some(path) = w.strip_prefix('.') {
        return Ok(Arg::Field(path.split('.').map(str::to_owned).collect()));
    }
    match w {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        "nil" => return Ok(Arg::Nil),
        _ => {}
    }
    if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(w) {
            return Ok(Arg::Num(n));
        }
        return err(format!("bad number syntax: {w:?}"));
    }
    if w.starts_with('$') {
        return err(format!("variables are not supported: {w}"));
    }
    if FUNCS.contains(&w) {
        Ok(Arg::Func(w.to_owned()))
    } else {
        err(format!("function {w:?} not defined"))
    }
}

const FUNCS: &[&str] = &[
    "json", "upper", "lower", "title", "join", "split", "len", "index", "println", "print",
    "truncate", "eq", "ne", "not", "and", "or", "pad",
];

fn exec_list(nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&to_text(&eval_pipe(p, dot)?)),
            Node::If(p, body, alt) => {
                if truthy(&eval_pipe(p, dot)?) {
                    exec_list(body, dot, out)?;
                } else {
                    exec_list(alt, dot, out)?;
                }
            }
            Node::With(p, body, alt) => {
                let v = eval_pipe(p, dot)?;
                if truthy(&v) {
                    exec_list(body, &v, out)?;
                } else {
                    exec_list(alt, dot, out)?;
                }
            }
            Node::Range(p, body, alt) => {
                let v = unmark(&eval_pipe(p, dot)?);
                let elems: Vec<Value> = match v {
                    Value::Array(a) => a,
                    Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                    Value::Null => Vec::new(),
                    other => return err(format!("range can't iterate over {}", to_text(&other))),
                };
                if elems.is_empty() {
                    exec_list(alt, dot, out)?;
                }
                for e in &elems {
                    exec_list(body, e, out)?;
                }
            }
        }
    }
    Ok(())
}

/// A missing field: Go prints `<no value>` for a missing map key.
const NO_VALUE: &str = "\u{0}<no value>";

fn eval_pipe(p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in &p.0 {
        prev = Some(eval_cmd(cmd, dot, prev)?);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn eval_arg(a: &Arg, dot: &Value) -> Result<Value, TemplateError> {
    Ok(match a {
        Arg::Dot => dot.clone(),
        Arg::Field(path) => lookup(dot, path),
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Num(n) => Value::Number(n.clone()),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Nil => Value::Null,
        Arg::Sub(p) => eval_pipe(p, dot)?,
        Arg::SubField(p, path) => lookup(&eval_pipe(p, dot)?, path),
        Arg::Func(f) => return err(format!("{f} is a function, not a value")),
    })
}

fn eval_cmd(cmd: &Cmd, dot: &Value, piped: Option<Value>) -> Result<Value, TemplateError> {
    let (head, rest) = cmd
        .0
        .split_first()
        .ok_or_else(|| TemplateError("empty command".into()))?;
    let Arg::Func(name) = head else {
        if !rest.is_empty() || piped.is_some() {
            return err("can't give argument to non-function");
        }
        return eval_arg(head, dot);
    };
    let mut args = rest
        .iter()
        .map(|a| eval_arg(a, dot))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(p) = piped {
        args.push(p);
    }
    call(name, &args)
}

fn want(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn call(name: &str, a: &[Value]) -> Result<Value, TemplateError> {
    let s = |v: &Value| to_text(v);
    Ok(match name {
        "json" => {
            want(name, a, 1)?;
            Value::String(
                serde_json::to_string(&unmark(&a[0])).map_err(|e| TemplateError(e.to_string()))?,
            )
        }
        "upper" => {
            want(name, a, 1)?;
            Value::String(s(&a[0]).to_uppercase())
        }
        "lower" => {
            want(name, a, 1)?;
            Value::String(s(&a[0]).to_lowercase())
        }
        "title" => {
            want(name, a, 1)?;
            let mut out = String::new();
            let mut start = true;
            for c in s(&a[0]).chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            Value::String(out)
        }
        "join" => {
            want(name, a, 2)?;
            let parts: Vec<String> = match &a[0] {
                Value::Array(v) => v.iter().map(to_text).collect(),
                Value::Null => Vec::new(),
                other => vec![to_text(other)],
            };
            Value::String(parts.join(&s(&a[1])))
        }
        "split" => {
            want(name, a, 2)?;
            Value::Array(
                s(&a[0])
                    .split(s(&a[1]).as_str())
                    .map(|p| Value::String(p.into()))
                    .collect(),
            )
        }
        "len" => {
            want(name, a, 1)?;
            let n = match &a[0] {
                Value::Array(v) => v.len(),
                Value::Object(m) => m.len(),
                Value::String(t) => t.len(),
                Value::Null => 0,
                other => return err(format!("len of {}", to_text(other))),
            };
            Value::from(n)
        }
        "index" => {
            let (first, keys) = a
                .split_first()
                .ok_or_else(|| TemplateError("index of nothing".into()))?;
            let mut v = first.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Object(m), key) => m.get(&to_text(key)).cloned().unwrap_or(Value::Null),
                    (Value::Array(arr), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| arr.get(i as usize).cloned())
                        .ok_or_else(|| TemplateError(format!("index out of range: {n}")))?,
                    _ => return err(format!("can't index item of type {}", type_name(&v))),
                };
            }
            v
        }
        "print" | "println" => {
            let mut t = a.iter().map(to_text).collect::<Vec<_>>().join(" ");
            if name == "println" {
                t.push('\n');
            }
            Value::String(t)
        }
        "truncate" => {
            want(name, a, 2)?;
            let n = a[1].as_u64().unwrap_or(0) as usize;
            Value::String(s(&a[0]).chars().take(n).collect())
        }
        "pad" => {
            want(name, a, 3)?;
            let l = a[1].as_u64().unwrap_or(0) as usize;
            let r = a[2].as_u64().unwrap_or(0) as usize;
            Value::String(format!("{}{}{}", " ".repeat(l), s(&a[0]), " ".repeat(r)))
        }
        "eq" => {
            if a.len() < 2 {
                return err("missing argument for comparison");
            }
            Value::Bool(a[1..].iter().any(|b| unmark(b) == unmark(&a[0])))
        }
        "ne" => {
            want(name, a, 2)?;
            Value::Bool(unmark(&a[0]) != unmark(&a[1]))
        }
        "not" => {
            want(name, a, 1)?;
            Value::Bool(!truthy(&a[0]))
        }
        "and" => a
            .iter()
            .find(|v| !truthy(v))
            .or(a.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => a
            .iter()
            .find(|v| truthy(v))
            .or(a.last())
            .cloned()
            .unwrap_or(Value::Null),
        _ => return err(format!("function {name:?} not defined")),
    })
}

fn unmark(v: &Value) -> Value {
    match v {
        Value::String(s) if s == NO_VALUE => Value::Null,
        o => o.clone(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn lookup(dot: &Value, path: &[String]) -> Value {
    let mut v = dot;
    for seg in path {
        let Value::Object(m) = v else {
            return Value::String(NO_VALUE.into());
        };
        let found = m.get(seg).or_else(|| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                .map(|(_, v)| v)
        });
        match found {
            Some(x) => v = x,
            None => return Value::String(NO_VALUE.into()),
        }
    }
    v.clone()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != NO_VALUE,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// How Go's fmt prints a value decoded from JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s == NO_VALUE => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(to_text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", to_text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(f: &str, v: Value) -> String {
        Template::parse(f).unwrap().render(&v).unwrap()
    }

    #[test]
    fn fields_nested_and_literal_text() {
        let v = json!({"ID": "abc", "State": {"Status": "running", "Pid": 42}});
        assert_eq!(r("{{.ID}}", v.clone()), "abc");
        assert_eq!(
            r("id={{.ID}} st={{.State.Status}}", v.clone()),
            "id=abc st=running"
        );
        assert_eq!(r("{{.State.Pid}}", v.clone()), "42");
        assert_eq!(r("{{.Nope}}", v.clone()), "<no value>");
        assert_eq!(r("{{.State.Nope.Deeper}}", v.clone()), "<no value>");
        assert_eq!(r("{{.}}", json!("x")), "x");
    }

    #[test]
    fn go_field_names_find_json_keys() {
        let v = json!({"Server": {"ApiVersion": "1.51"}, "Id": "sha256:1"});
        assert_eq!(r("{{.Server.APIVersion}}", v.clone()), "1.51");
        assert_eq!(r("{{.ID}}", v), "sha256:1");
    }

    #[test]
    fn json_function_and_pipes() {
        let v = json!({"Labels": {"a": "1"}, "Names": "web", "Null": null});
        assert_eq!(r("{{json .Labels}}", v.clone()), r#"{"a":"1"}"#);
        assert_eq!(
            r("{{json .}}", json!({"b": 1, "a": [1, 2]})),
            r#"{"a":[1,2],"b":1}"#
        );
        assert_eq!(r("{{.Names | upper}}", v.clone()), "WEB");
        assert_eq!(r("{{json .Null}}", v.clone()), "null");
        assert_eq!(r("{{index .Labels \"a\"}}", v.clone()), "1");
        assert_eq!(r("{{json (index .Labels \"a\")}}", v), r#""1""#);
    }

    #[test]
    fn go_printing_of_maps_slices_nil() {
        let v = json!({"M": {"b": 2, "a": "x"}, "S": [1, "two"], "N": null});
        assert_eq!(r("{{.M}}", v.clone()), "map[a:x b:2]");
        assert_eq!(r("{{.S}}", v.clone()), "[1 two]");
        assert_eq!(r("{{.N}}", v), "<nil>");
    }

    #[test]
    fn table_prefix_and_escaped_tabs() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.table);
        assert_eq!(t.render(&json!({"ID": "a", "Names": "b"})).unwrap(), "a\tb");
        let t = Template::parse("tablespoon {{.ID}}").unwrap();
        assert!(!t.table);
        let t = Template::parse("{{.A}}\\n{{.B}}").unwrap();
        assert_eq!(t.render(&json!({"A": 1, "B": 2})).unwrap(), "1\n2");
    }

    #[test]
    fn control_flow_and_trimming() {
        let v = json!({"Mounts": [{"Source": "/a"}, {"Source": "/b"}], "Running": false, "S": "x"});
        assert_eq!(
            r("{{range .Mounts}}{{.Source}} {{end}}", v.clone()),
            "/a /b "
        );
        assert_eq!(r("{{if .Running}}up{{else}}down{{end}}", v.clone()), "down");
        assert_eq!(r("{{with .S}}<{{.}}>{{end}}", v.clone()), "<x>");
        assert_eq!(r("a  {{- .S -}}  b", v.clone()), "axb");
        assert_eq!(r("{{if eq .S \"x\"}}yes{{end}}", v.clone()), "yes");
        assert_eq!(r("{{if not .Running}}stopped{{end}}", v.clone()), "stopped");
        assert_eq!(r("{{range .Nope}}x{{else}}none{{end}}", v.clone()), "none");
        assert_eq!(r("{{(index .Mounts 1).Source}}", v), "/b");
    }

    #[test]
    fn other_functions() {
        let v = json!({"N": ["a", "b"], "S": "a,b,c", "L": "Hello world"});
        assert_eq!(r("{{join .N \",\"}}", v.clone()), "a,b");
        assert_eq!(r("{{len .N}}", v.clone()), "2");
        assert_eq!(r("{{split .S \",\"}}", v.clone()), "[a b c]");
        assert_eq!(
            r("{{lower .L}} {{title \"foo bar\"}}", v.clone()),
            "hello world Foo Bar"
        );
        assert_eq!(r("{{truncate .L 5}}", v.clone()), "Hello");
        assert_eq!(r("{{println .S}}", v), "a,b,c\n");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{nosuchfunc .ID}}").is_err());
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{}}").is_err());
        let t = Template::parse("{{json .A .B}}").unwrap();
        assert!(t.render(&json!({})).is_err());
    }
}
