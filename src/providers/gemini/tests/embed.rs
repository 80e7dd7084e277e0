//! Gemini embeddings ingress (`:embedContent`, `:batchEmbedContents`) and `:countTokens`.

use super::*;

fn embed(body: &str, batch: bool) -> Json {
    j(&embed_request(body.as_bytes(), "text-embedding-3-small", batch).unwrap())
}

#[test]
fn embed_requests_become_openai_embeddings() {
    let one = embed(
        r#"{"model":"models/x","content":{"parts":[{"text":"hello"},{"text":"world"}]},"taskType":"RETRIEVAL_QUERY","outputDimensionality":8}"#,
        false,
    );
    assert_eq!(
        one,
        json!({"model":"text-embedding-3-small","input":"hello\nworld","encoding_format":"float","dimensions":8})
    );
    let many = embed(
        r#"{"requests":[{"model":"models/x","content":{"parts":[{"text":"a"}]}},{"content":{"parts":[{"text":"b"}]}}]}"#,
        true,
    );
    assert_eq!(
        many,
        json!({"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"float"})
    );
}

#[test]
fn embed_requests_refuse_what_cannot_be_embedded() {
    let err = |body: &str, batch| embed_request(body.as_bytes(), "m", batch).unwrap_err().code;
    assert_eq!(err("", false), "empty_body");
    assert_eq!(err("[1]", false), "invalid_body");
    assert_eq!(err(r#"{"content":{}}"#, false), "invalid_content");
    assert_eq!(err(r#"{"content":{"parts":[]}}"#, false), "invalid_content");
    assert_eq!(
        err(
            r#"{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"AA=="}}]}}"#,
            false
        ),
        "unsupported_content"
    );
    assert_eq!(err(r#"{"requests":[]}"#, true), "invalid_requests");
    assert_eq!(
        err(
            r#"{"requests":[{"content":{"parts":[{"text":"a"}]},"outputDimensionality":8},{"content":{"parts":[{"text":"b"}]}}]}"#,
            true
        ),
        "invalid_output_dimensionality"
    );
    assert_eq!(
        err(
            r#"{"content":{"parts":[{"text":"a"}]},"outputDimensionality":-1}"#,
            false
        ),
        "invalid_output_dimensionality"
    );
}

#[test]
fn embeddings_answers_in_gemini_shape_and_request_order() {
    let openai = br#"{"object":"list","data":[{"object":"embedding","index":1,"embedding":[0.5,-0.25]},{"object":"embedding","index":0,"embedding":[1.0,2.0]}],"model":"m","usage":{"prompt_tokens":3,"total_tokens":3}}"#;
    let mut out = Vec::new();
    egress_embeddings(openai, true, &mut out).unwrap();
    assert_eq!(
        j(&out),
        json!({"embeddings":[{"values":[1.0,2.0]},{"values":[0.5,-0.25]}]})
    );
    out.clear();
    egress_embeddings(openai, false, &mut out).unwrap();
    assert_eq!(j(&out), json!({"embedding":{"values":[1.0,2.0]}}));
    let base64 = br#"{"data":[{"index":0,"embedding":"AAAA"}]}"#;
    let e = egress_embeddings(base64, false, &mut out).unwrap_err();
    assert_eq!(e.fault(), Fault::Shape);
    let e = egress_embeddings(br#"{"data":[]}"#, false, &mut out).unwrap_err();
    assert_eq!(e.fault(), Fault::Shape);
}

#[test]
fn count_tokens_reads_contents_or_the_wrapped_request() {
    let plain = count_tokens_request(
        br#"{"contents":[{"role":"user","parts":[{"text":"hello there"}]}]}"#,
        "m",
    )
    .unwrap();
    let wrapped = count_tokens_request(
        br#"{"generateContentRequest":{"model":"models/m","contents":[{"role":"user","parts":[{"text":"hello there"}]}]}}"#,
        "m",
    )
    .unwrap();
    assert_eq!(j(&plain), j(&wrapped));
    assert_eq!(
        count_tokens_request(b"{}", "m").unwrap_err().code,
        "invalid_contents"
    );
}
