//! JSON for extension manifests: a strict parser that keeps key order and reports every
//! duplicate key with its JSON path (`$.images[0]`), and a writer that produces exactly what
//! Python's `json.dumps(obj)` writes (the SDK script's output: `", "`/`": "` separators,
//! `\uXXXX` escapes for non-ASCII, no trailing newline).

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The JSON path of a member of the object at `parent`.
pub fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain { format!("{parent}.{key}") } else { format!("{parent}[{}]", Value::String(key.to_string())) }
}

/// The JSON path of an element of the array at `parent`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A parse failure: message and (1-based) line/column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Parses JSON keeping key order. Returns the value (for a duplicate key the last one wins, as in
/// Python) and the paths of every duplicated key.
pub fn parse_strict(bytes: &[u8]) -> Result<(Value, Vec<String>), ParseError> {
    let dups = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Seed { path: "$".into(), dups: &dups }.deserialize(&mut de).and_then(|v| de.end().map(|()| v)).map_err(
        |e| {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            ParseError { message: msg, line: e.line(), column: e.column() }
        },
    )?;
    Ok((v, dups.into_inner()))
}

struct Seed<'a> {
    path: String,
    dups: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed { path: index(&self.path, out.len()), dups: self.dups })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let path = child(&self.path, &k);
            let v = map.next_value_seed(Seed { path: path.clone(), dups: self.dups })?;
            if out.contains_key(&k) {
                self.dups.borrow_mut().push(path);
                out.shift_remove(&k);
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Serialises `v` exactly as Python's `json.dumps(v)` does with default arguments.
pub fn python_dumps(v: &Value) -> String {
    let mut out = String::new();
    dump(v, &mut out);
    out
}

fn dump(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").expect("string"),
            (_, Some(u), _) => write!(out, "{u}").expect("string"),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => python_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_string(k, out);
                out.push_str(": ");
                dump(x, out);
            }
            out.push('}');
        }
    }
}

fn python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    write!(out, "\\u{unit:04x}").expect("string");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 or from 1e16.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-5", "1e16", "-2.5e0"
    let (mant, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_duplicates_with_paths_and_keeps_order() {
        let (v, d) = parse_strict(br#"{"b":1,"a":{"x":1,"x":2},"l":[{"k":1,"k":2}],"b":3}"#).unwrap();
        assert_eq!(d, vec!["$.a.x", "$.l[0].k", "$.b"]);
        assert_eq!(v["a"]["x"], 2);
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["a", "l", "b"]);
        let e = parse_strict(b"{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.message.contains("trailing comma"), "{}", e.message);
        assert!(parse_strict(b"{} x").is_err());
        assert_eq!(child("$", "odd key"), "$[\"odd key\"]");
    }

    #[test]
    fn dumps_like_python() {
        // python3 -c 'import json; print(json.dumps({"a": "é\n\"\\", "b": [1, 2.5, 1e16, 1e-05, 0.0001, True, None], "c": {}, "d": [], "e": "😀\x7f"}))'
        let v: Value = serde_json::from_str(
            r#"{"a":"é\n\"\\","b":[1,2.5,1e16,1e-5,0.0001,true,null],"c":{},"d":[],"e":"😀\u007f"}"#,
        )
        .unwrap();
        assert_eq!(
            python_dumps(&v),
            r#"{"a": "\u00e9\n\"\\", "b": [1, 2.5, 1e+16, 1e-05, 0.0001, true, null], "c": {}, "d": [], "e": "\ud83d\ude00\u007f"}"#
        );
        assert_eq!(python_float(3.0), "3.0");
        assert_eq!(python_float(-0.5), "-0.5");
        assert_eq!(python_float(123456789012345680.0), "1.2345678901234568e+17");
    }
}
