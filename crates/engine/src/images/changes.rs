//! `docker import --change`: Dockerfile instructions applied to an image
//! config's `config` object.

use serde_json::{Map, Value, json};

use crate::error::EngineError;

/// Applies each change (`CMD ["sh"]`, `ENV A=1`, `WORKDIR /app`,
/// `ENTRYPOINT`, `USER`, `EXPOSE`, `LABEL`, `VOLUME`, `STOPSIGNAL`,
/// `ONBUILD`) to `config` (a JSON object, created when null).
pub fn apply_changes(config: &mut Value, changes: &[String]) -> Result<(), EngineError> {
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (instr, rest) = change
            .split_once(char::is_whitespace)
            .map(|(i, r)| (i, r.trim()))
            .unwrap_or((change, ""));
        let instr = instr.to_ascii_uppercase();
        let Some(obj) = config.as_object_mut() else {
            continue;
        };
        let bad = |why: &str| EngineError::InvalidArgument(format!("{instr} {rest}: {why}"));
        match instr.as_str() {
            "CMD" | "ENTRYPOINT" => {
                let key = if instr == "CMD" { "Cmd" } else { "Entrypoint" };
                obj.insert(key.into(), command(rest).map_err(|w| bad(&w))?);
            }
            "ENV" => {
                let env = obj.entry("Env").or_insert_with(|| json!([]));
                if !env.is_array() {
                    *env = json!([]);
                }
                for (k, v) in pairs(rest, true).map_err(|w| bad(&w))? {
                    if let Some(list) = env.as_array_mut() {
                        let prefix = format!("{k}=");
                        list.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
                        list.push(Value::String(format!("{k}={v}")));
                    }
                }
            }
            "LABEL" => {
                let labels = obj.entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in pairs(rest, false).map_err(|w| bad(&w))? {
                    if let Some(m) = labels.as_object_mut() {
                        m.insert(k, Value::String(v));
                    }
                }
            }
            "EXPOSE" => {
                let ports = obj.entry("ExposedPorts").or_insert_with(|| json!({}));
                if !ports.is_object() {
                    *ports = json!({});
                }
                for p in words(rest).map_err(|w| bad(&w))? {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    if let Some(m) = ports.as_object_mut() {
                        m.insert(p, json!({}));
                    }
                }
            }
            "VOLUME" => {
                let vols = obj.entry("Volumes").or_insert_with(|| json!({}));
                if !vols.is_object() {
                    *vols = json!({});
                }
                let list = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) => v,
                    Err(_) => words(rest).map_err(|w| bad(&w))?,
                };
                for v in list {
                    if let Some(m) = vols.as_object_mut() {
                        m.insert(v, json!({}));
                    }
                }
            }
            "WORKDIR" => {
                if rest.is_empty() {
                    return Err(bad("WORKDIR requires exactly one argument"));
                }
                let old = obj
                    .get("WorkingDir")
                    .and_then(|w| w.as_str())
                    .unwrap_or("/");
                let dir = if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    format!("{}/{rest}", old.trim_end_matches('/'))
                };
                obj.insert("WorkingDir".into(), Value::String(dir));
            }
            "USER" | "STOPSIGNAL" => {
                if rest.is_empty() {
                    return Err(bad("requires exactly one argument"));
                }
                let key = if instr == "USER" {
                    "User"
                } else {
                    "StopSignal"
                };
                obj.insert(key.into(), Value::String(rest.to_owned()));
            }
            "ONBUILD" => {
                let list = obj.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Some(l) = list.as_array_mut() {
                    l.push(Value::String(rest.to_owned()));
                }
            }
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "{instr} is not a valid change command"
                )));
            }
        }
    }
    Ok(())
}

/// JSON (exec) form, or shell form run by `/bin/sh -c`.
fn command(rest: &str) -> Result<Value, String> {
    if rest.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(rest)
    {
        return Ok(json!(v));
    }
    if rest.is_empty() {
        return Err("a command is required".into());
    }
    Ok(json!(["/bin/sh", "-c", rest]))
}

/// `k=v k2="v 2"`; with `legacy`, `k value with spaces` too (ENV's old form).
fn pairs(rest: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let ws = words(rest)?;
    if ws.is_empty() {
        return Err("requires at least one argument".into());
    }
    if !ws[0].contains('=') {
        if legacy {
            let (k, v) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| "requires a value".to_owned())?;
            return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
        }
        return Err(format!("{} has no '='", ws[0]));
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("{w} is not key=value")),
        })
        .collect()
}

/// Splits on whitespace, honouring "double", 'single' quotes and `\`.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Value {
        let mut v = Value::Null;
        let c: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut v, &c).unwrap();
        v
    }

    #[test]
    fn every_instruction() {
        let v = apply(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENTRYPOINT echo hello",
            "ENV A=1 B=\"two words\"",
            "ENV C three four",
            "ENV A=2",
            "WORKDIR /app",
            "WORKDIR sub",
            "USER 1000:1000",
            "EXPOSE 80 53/UDP",
            "LABEL a=b \"c d\"=e",
            "VOLUME /data",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(v["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "echo hello"]));
        assert_eq!(v["Env"], json!(["B=two words", "C=three four", "A=2"]));
        assert_eq!(v["WorkingDir"], json!("/app/sub"));
        assert_eq!(v["User"], json!("1000:1000"));
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Labels"], json!({"a": "b", "c d": "e"}));
        assert_eq!(v["Volumes"], json!({"/data": {}}));
        assert_eq!(v["StopSignal"], json!("SIGINT"));
    }

    #[test]
    fn unknown_instruction_is_refused() {
        let mut v = Value::Null;
        let e = apply_changes(&mut v, &["RUN echo".into()]).unwrap_err();
        assert_eq!(e.to_string(), "RUN is not a valid change command");
        assert!(apply_changes(&mut v, &["ENV A=\"x".into()]).is_err());
    }
}
