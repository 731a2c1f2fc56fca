//! Tool definitions as the model reads them: JSON Schema rendered as TypeScript.
//!
//! gpt-oss was trained on tool namespaces written as TypeScript type declarations
//! (`namespace functions { type f = (_: {...}) => any; }`), produced from JSON Schema by
//! the rules of OpenAI's `openai-harmony` renderer. We reproduce those rules exactly,
//! quirks included, because any deviation changes the prompt tokens and moves the model
//! off its training distribution. The quirks worth knowing:
//!
//! - Property order is the schema's key order; it is never sorted. (This needs serde_json's
//!   `preserve_order` feature; without it `serde_json::Value` objects iterate sorted.)
//! - A description on an object schema renders as a `// ...` line *before* its `{`, so a
//!   described nested object shows its description twice (above the key and after it).
//! - Nested properties are indented by four spaces per level, but the opening `{` never is.
//! - `enum` is honoured only for `type: "string"`; `anyOf`, `allOf`, `$ref`, `const` and
//!   friends are not understood and render as `any` (or are ignored).
//! - `oneOf` renders as a multi-line union (` | T` per line) with per-variant comments.
//! - Defaults become `// default: ...` comments; how a string default is quoted depends on
//!   where it appears (see [`DefaultStyle`]). Strings are written raw, never escaped.
//! - Description strings are written as-is: a multi-line property description is not
//!   re-commented after its first line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use serde_json::Value;

use crate::conversation::ToolNamespaceConfig;

/// Renders the `# Tools` block: one `## <namespace>` section per namespace, in the map's
/// (alphabetical) order, sections separated by a blank line.
pub fn render_tools_section(tools: &BTreeMap<String, ToolNamespaceConfig>) -> String {
    warn_if_key_order_lost();
    let mut sections = Vec::with_capacity(tools.len() + 1);
    sections.push("# Tools".to_string());
    sections.extend(tools.values().map(render_namespace));
    sections.join("\n\n")
}

/// One namespace. With functions: description lines as `//` comments, then a TypeScript
/// `namespace` holding one `type` per function. Without functions (e.g. `python`): the
/// description as plain prose.
pub fn render_namespace(ns: &ToolNamespaceConfig) -> String {
    let has_functions = !ns.tools.is_empty();
    let mut lines = vec![format!("## {}\n", ns.name)];
    if let Some(description) = &ns.description {
        for line in description.lines() {
            lines.push(if has_functions {
                format!("// {line}")
            } else {
                line.to_string()
            });
        }
    }
    if has_functions {
        lines.push(format!("namespace {} {{\n", ns.name));
        for tool in &ns.tools {
            lines.extend(tool.description.lines().map(|line| format!("// {line}")));
            // `Some(Value::Null)` is treated like `None`: in JSON both are `null`, and the
            // reference (which only ever sees the JSON form) renders `() => any` for it.
            lines.push(match &tool.parameters {
                Some(schema) if !schema.is_null() => format!(
                    "type {} = (_: {}) => any;\n",
                    tool.name,
                    schema_to_typescript(schema)
                ),
                _ => format!("type {} = () => any;\n", tool.name),
            });
        }
        lines.push(format!("}} // namespace {}", ns.name));
    }
    lines.join("\n")
}

/// Whether `serde_json` objects keep their keys in insertion order in this build (the
/// `preserve_order` feature). Without it, schema properties render sorted by name instead
/// of in the order the tool author wrote them — different tokens from the reference, and
/// a different prompt than the client intended. Binaries should check this at start-up.
pub fn json_key_order_preserved() -> bool {
    static PRESERVED: OnceLock<bool> = OnceLock::new();
    *PRESERVED.get_or_init(|| {
        serde_json::from_str::<Value>(r#"{"b":0,"a":0}"#)
            .ok()
            .and_then(|v| v.as_object().and_then(|m| m.keys().next().cloned()))
            .as_deref()
            == Some("b")
    })
}

fn warn_if_key_order_lost() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !json_key_order_preserved() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "serde_json is built without `preserve_order`: tool schemas render with sorted \
             keys, which differs from openai-harmony"
        );
    }
}

/// The TypeScript type of a JSON Schema, as it appears after `(_: ` in a function type.
pub fn schema_to_typescript(schema: &Value) -> String {
    type_of(schema, "")
}

/// How a `default` is turned into comment text. The reference formats defaults in three
/// places with slightly different rules; only string defaults differ between them.
#[derive(Clone, Copy)]
enum DefaultStyle {
    /// Properties and variants of a property-level `oneOf`: a string default is quoted
    /// unless the schema is an enum, in which case it is written bare (`default: celsius`).
    BareForEnums,
    /// Variants of a schema-level `oneOf`: a string default of an enum is written as JSON
    /// (quoted and escaped), any other string default quoted raw.
    JsonForEnums,
}

fn default_text(default: &Value, schema: &Value, style: DefaultStyle) -> String {
    match (default.as_str(), style) {
        (Some(s), _) if !is_enum(schema) => format!("\"{s}\""),
        (Some(s), DefaultStyle::BareForEnums) => s.to_string(),
        _ => default.to_string(),
    }
}

/// A schema counts as an enum when it has a non-empty `enum` array (of any values).
fn is_enum(schema: &Value) -> bool {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| !values.is_empty())
}

/// Appends ` | null` for `nullable: true`, unless the type already mentions null.
fn with_nullable(schema: &Value, mut ty: String) -> String {
    let nullable = schema
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if nullable && !ty.contains("null") {
        ty.push_str(" | null");
    }
    ty
}

fn type_of(schema: &Value, indent: &str) -> String {
    // `oneOf` wins over everything else, including `type`.
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        return schema_level_union(variants, indent);
    }
    // `type: [..]`: the string entries joined as a union (integer reads as number; other
    // names, even unknown ones, pass through verbatim).
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let names: Vec<&str> = types
            .iter()
            .filter_map(Value::as_str)
            .map(|t| if t == "integer" { "number" } else { t })
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => object_type(schema, indent),
        Some("string") => string_type(schema),
        Some("number" | "integer") => "number".to_string(),
        Some("boolean") => "boolean".to_string(),
        // Array items keep the array's indentation.
        Some("array") => match schema.get("items") {
            Some(items) => format!("{}[]", type_of(items, indent)),
            None => "Array<any>".to_string(),
        },
        _ => "any".to_string(),
    }
}

/// `"a" | "b"` for a string enum (non-string members are skipped); plain `string` otherwise.
fn string_type(schema: &Value) -> String {
    let literals: Vec<String> = schema
        .get("enum")
        .and_then(Value::as_array)
        .map(|values| {
            values
                .iter()
                .filter_map(Value::as_str)
                .map(|s| format!("\"{s}\""))
                .collect()
        })
        .unwrap_or_default();
    if literals.is_empty() {
        "string".to_string()
    } else {
        literals.join(" | ")
    }
}

/// A schema-level `oneOf`: every variant on its own line, each with a trailing comment
/// made of its description and default. Variant bodies are indented by three more spaces.
fn schema_level_union(variants: &[Value], indent: &str) -> String {
    let inner = format!("{indent}   ");
    let mut out = String::new();
    for variant in variants {
        out.push_str(&format!("\n{indent} | "));
        out.push_str(&with_nullable(variant, type_of(variant, &inner)));
        let mut notes = Vec::new();
        if let Some(description) = variant.get("description").and_then(Value::as_str) {
            notes.push(description.to_string());
        }
        if let Some(default) = variant.get("default") {
            notes.push(format!(
                "default: {}",
                default_text(default, variant, DefaultStyle::JsonForEnums)
            ));
        }
        if !notes.is_empty() {
            out.push_str(&format!(" // {}", notes.join(" ")));
        }
    }
    out
}

fn object_type(schema: &Value, indent: &str) -> String {
    let mut out = String::new();
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        out.push_str(&format!("{indent}// {description}\n"));
    }
    out.push_str("{\n");
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, property) in properties {
            let optional = if required.contains(&name.as_str()) {
                ""
            } else {
                "?"
            };
            property_entry(&mut out, name, optional, property, indent);
        }
    }
    out.push_str(&format!("{indent}}}"));
    out
}

/// One property of an object: leading comments, then `name?: T,` with an optional trailing
/// default comment, or the multi-line form for a property-level `oneOf`.
fn property_entry(out: &mut String, name: &str, optional: &str, property: &Value, indent: &str) {
    let one_of = property.get("oneOf");
    if let Some(title) = property.get("title").and_then(Value::as_str) {
        out.push_str(&format!("{indent}// {title}\n{indent}//\n"));
    }
    let description = property.get("description").and_then(Value::as_str);
    // With a `oneOf` (of any JSON type) the description is handled by the union form below
    // — or, when `oneOf` is not an array, not rendered at all.
    if one_of.is_none() {
        if let Some(description) = description {
            out.push_str(&format!("{indent}// {description}\n"));
        }
    }
    if let Some(examples) = property.get("examples").and_then(Value::as_array) {
        if !examples.is_empty() {
            out.push_str(&format!("{indent}// Examples:\n"));
            for example in examples.iter().filter_map(Value::as_str) {
                out.push_str(&format!("{indent}// - \"{example}\"\n"));
            }
        }
    }
    if let Some(variants) = one_of.and_then(Value::as_array) {
        property_union(out, name, optional, property, description, variants, indent);
        return;
    }
    let ty = with_nullable(property, type_of(property, &format!("{indent}    ")));
    out.push_str(&format!("{indent}{name}{optional}: {ty},"));
    // A non-array `oneOf` also suppresses the default comment.
    if one_of.is_none() {
        if let Some(default) = property.get("default") {
            out.push_str(&format!(
                " // default: {}",
                default_text(default, property, DefaultStyle::BareForEnums)
            ));
        }
    }
    out.push('\n');
}

/// A property whose schema is a `oneOf` array:
///
/// ```text
/// // <property description, unless the first variant repeats it>
/// // default: <property default>
/// name?:
///  | T1 // <variant comments>
///  | T2
/// ,
/// ```
fn property_union(
    out: &mut String,
    name: &str,
    optional: &str,
    property: &Value,
    description: Option<&str>,
    variants: &[Value],
    indent: &str,
) {
    let first_variant_repeats = description.is_some()
        && variants
            .first()
            .and_then(|v| v.get("description"))
            .and_then(Value::as_str)
            == description;
    let description_above = match description {
        Some(d) if !first_variant_repeats => {
            out.push_str(&format!("{indent}// {d}\n"));
            true
        }
        _ => false,
    };
    if let Some(default) = property.get("default") {
        out.push_str(&format!(
            "{indent}// default: {}\n",
            default_text(default, property, DefaultStyle::BareForEnums)
        ));
    }
    out.push_str(&format!("{indent}{name}{optional}:\n"));
    let inner = format!("{indent}   ");
    for (i, variant) in variants.iter().enumerate() {
        out.push_str(&format!("{indent} | "));
        out.push_str(&with_nullable(variant, type_of(variant, &inner)));
        let mut notes = Vec::new();
        // The first variant's description is dropped when the property's own description
        // was written above; any variant's description equal to the property's is dropped.
        if !(i == 0 && description_above) {
            if let Some(d) = variant.get("description").and_then(Value::as_str) {
                if Some(d) != description {
                    notes.push(d.to_string());
                }
            }
        }
        if let Some(default) = variant.get("default") {
            notes.push(format!(
                "default: {}",
                default_text(default, variant, DefaultStyle::BareForEnums)
            ));
        }
        if !notes.is_empty() {
            out.push_str(&format!(" // {}", notes.join(" ")));
        }
        out.push('\n');
    }
    out.push_str(&format!("{indent},\n"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enum_default_is_bare_and_optional_marked() {
        let schema = json!({
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city"},
                "format": {"type": "string", "enum": ["c", "f"], "default": "c"}
            },
            "required": ["location"]
        });
        assert_eq!(
            schema_to_typescript(&schema),
            "{\n// The city\nlocation: string,\nformat?: \"c\" | \"f\", // default: c\n}"
        );
    }

    #[test]
    fn unknown_constructs_are_any() {
        assert_eq!(
            schema_to_typescript(&json!({"anyOf": [{"type": "string"}]})),
            "any"
        );
        assert_eq!(schema_to_typescript(&json!({"enum": ["a"]})), "any");
        assert_eq!(schema_to_typescript(&json!("not a schema")), "any");
        assert_eq!(
            schema_to_typescript(&json!({"type": "array"})),
            "Array<any>"
        );
        assert_eq!(
            schema_to_typescript(&json!({"type": ["integer", "null"]})),
            "number | null"
        );
    }
}
