//! What the model reads of an MCP tool's result.
//!
//! Structured content, when the server gives it, is the result, as JSON
//! (the spec asks servers to repeat it as text, so the text adds nothing).
//! Otherwise the text blocks are the result, one after another; blocks the
//! model cannot read here (images, audio, binary resources) are named in
//! brackets. A result marked `isError` is the tool's error.

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

/// The longest result kept, in bytes, as for HTTP tools: the model does
/// not need more, and a runaway server must not fill the context.
const MAX_RESULT: usize = 16 * 1024;

/// The result's text, or its error's text if the server marked it one.
pub(crate) fn result_text(result: &CallToolResult) -> Result<String, String> {
    let mut text = match &result.structured_content {
        Some(structured) => structured.to_string(),
        None => result
            .content
            .iter()
            .map(block_text)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if text.len() > MAX_RESULT {
        let mut end = MAX_RESULT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
    if result.is_error == Some(true) {
        if text.is_empty() {
            text = "the tool failed without saying why".to_owned();
        }
        Err(text)
    } else {
        Ok(text)
    }
}

fn block_text(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => format!("[an image, {}]", image.mime_type),
        ContentBlock::Audio(audio) => format!("[audio, {}]", audio.mime_type),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { text, .. } => text.clone(),
            ResourceContents::BlobResourceContents { uri, .. } => {
                format!("[a binary resource, {uri}]")
            }
            _ => "[a resource of a kind voxpipe does not read]".to_owned(),
        },
        ContentBlock::ResourceLink(link) => format!("[a resource, {}]", link.uri),
        _ => "[content of a kind voxpipe does not read]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(value: serde_json::Value) -> CallToolResult {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn text_blocks_are_joined_and_other_blocks_named() {
        let r = result(json!({"content": [
            {"type": "text", "text": "one"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///a", "text": "two"}},
            {"type": "text", "text": "three"}
        ]}));
        assert_eq!(
            result_text(&r),
            Ok("one\n[an image, image/png]\ntwo\nthree".to_owned())
        );
    }

    #[test]
    fn structured_content_is_the_result_as_json() {
        let r = result(json!({
            "content": [{"type": "text", "text": "{\"sum\": 5}"}],
            "structuredContent": {"sum": 5}
        }));
        assert_eq!(result_text(&r), Ok("{\"sum\":5}".to_owned()));
    }

    #[test]
    fn is_error_makes_the_text_an_error() {
        let r =
            result(json!({"content": [{"type": "text", "text": "no such city"}], "isError": true}));
        assert_eq!(result_text(&r), Err("no such city".to_owned()));
        let r = result(json!({"content": [], "isError": true}));
        assert_eq!(
            result_text(&r),
            Err("the tool failed without saying why".to_owned())
        );
    }

    #[test]
    fn a_huge_result_is_cut_on_a_character_boundary() {
        let r = result(json!({"content": [{"type": "text", "text": "é".repeat(MAX_RESULT)}]}));
        let text = result_text(&r).unwrap_or_default();
        assert!(text.len() <= MAX_RESULT + " [cut]".len());
        assert!(text.ends_with("é [cut]"));
    }
}
