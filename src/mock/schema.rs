//! Structured answers: the smallest JSON value that satisfies a request's JSON Schema, so a
//! client that asked for structured output (OpenAI `response_format`, the Responses API's
//! `text.format`, an Anthropic forced tool, Gemini's `responseSchema`) can parse what the mock
//! says. Covers the subset models are asked for: objects with properties, arrays, enums,
//! `anyOf`/`oneOf`, the scalar types. Never fails: an unknown schema gets `{}`.

use simd_json::OwnedValue as Json;
use simd_json::prelude::*;

/// The JSON text of a value that `schema` accepts.
pub(super) fn instance(schema: &Json) -> String {
    let mut out = String::new();
    write(schema, &mut out, 0);
    out
}

fn write(schema: &Json, out: &mut String, depth: usize) {
    if depth > 16 {
        out.push_str("null");
        return;
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(|e| e.as_array())
        .and_then(|e| e.first())
    {
        out.push_str(&first.encode());
        return;
    }
    if let Some(c) = schema.get("const") {
        out.push_str(&c.encode());
        return;
    }
    for alt in ["anyOf", "oneOf", "any_of"] {
        if let Some(first) = schema
            .get(alt)
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
        {
            return write(first, out, depth + 1);
        }
    }
    // `type` may be a list (`["string", "null"]`) and Gemini writes it upper-case.
    let ty = match schema.get("type") {
        Some(t) if t.is_str() => t.as_str().unwrap_or("").to_ascii_lowercase(),
        Some(t) => t
            .as_array()
            .and_then(|l| l.iter().filter_map(|x| x.as_str()).find(|x| *x != "null"))
            .unwrap_or("null")
            .to_ascii_lowercase(),
        None if schema.get("properties").is_some() => "object".into(),
        None => "object".into(),
    };
    match ty.as_str() {
        "object" => {
            out.push('{');
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (i, (name, sub)) in props.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::from(name.as_str()).encode());
                    out.push(':');
                    write(sub, out, depth + 1);
                }
            }
            out.push('}');
        }
        "array" => {
            let min = schema.get("minItems").and_then(|m| m.as_u64()).unwrap_or(0);
            out.push('[');
            if min > 0
                && let Some(items) = schema.get("items")
            {
                for i in 0..min.min(8) {
                    if i > 0 {
                        out.push(',');
                    }
                    write(items, out, depth + 1);
                }
            }
            out.push(']');
        }
        "string" => out.push_str("\"mock\""),
        "integer" | "number" => out.push('1'),
        "boolean" => out.push_str("true"),
        _ => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(schema: &str) -> String {
        let mut b = schema.as_bytes().to_vec();
        instance(&simd_json::to_owned_value(&mut b).unwrap())
    }

    #[test]
    fn every_property_gets_a_value_of_its_type() {
        assert_eq!(
            of(
                r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"ok":{"type":"boolean"},"tags":{"type":"array","items":{"type":"string"}},"kind":{"enum":["a","b"]},"maybe":{"type":["null","number"]}},"required":["name"]}"#
            ),
            r#"{"name":"mock","age":1,"ok":true,"tags":[],"kind":"a","maybe":1}"#
        );
    }

    #[test]
    fn nested_objects_gemini_case_and_alternatives() {
        assert_eq!(
            of(
                r#"{"type":"OBJECT","properties":{"p":{"type":"OBJECT","properties":{"x":{"type":"NUMBER"}}},"u":{"anyOf":[{"type":"string"},{"type":"null"}]},"l":{"type":"array","minItems":2,"items":{"type":"integer"}}}}"#
            ),
            r#"{"p":{"x":1},"u":"mock","l":[1,1]}"#
        );
        assert_eq!(of("true"), "{}");
    }
}
