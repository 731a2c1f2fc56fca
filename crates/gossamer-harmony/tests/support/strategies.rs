//! proptest strategies for harmony conversations, biased towards the cases where renderers
//! go wrong: tricky text (special-token strings, CRLF, non-ASCII, digits next to spaces),
//! every header field, chain-of-thought layouts that trigger (or not) the drop rule, and
//! JSON Schemas using every construct the TypeScript renderer has a rule for — and some it
//! does not understand (`anyOf`, `$ref`, non-string enums, malformed shapes).

use std::collections::BTreeMap;

use gossamer_harmony::{
    ChannelConfig, Content, Conversation, DeveloperContent, Message, ReasoningEffort, Role,
    SystemContent, ToolDescription, ToolNamespaceConfig,
};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

const TRICKY: &[&str] = &[
    "<|end|>",
    "<|start|>assistant",
    "<|channel|>",
    "<|constrain|>",
    "<|return|>",
    "<|call|>",
    "<|message|>",
    " to=functions.x",
    "analysis",
    "final",
    "\n\n",
    "\r\n",
    "\n",
    "  ",
    " 12345",
    "3.14",
    "é",
    "中文",
    "😀",
    "💖",
    "\u{2028}",
    "'s",
    "{\"a\": 1}",
    "// ",
    "\"",
    "\\",
    "```",
];

/// Text made of a few pieces of different kinds (so BPE boundaries land anywhere).
pub fn text() -> BoxedStrategy<String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 ]{0,12}",
        2 => "[ -~]{0,12}",
        1 => "[\n\t\r ]{1,3}",
        3 => select(TRICKY).prop_map(str::to_string),
        1 => "\\PC{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect::<String>()),
    ];
    prop::collection::vec(piece, 0..5)
        .prop_map(|pieces| pieces.concat())
        .boxed()
}

/// Short text, for identifiers-ish places.
fn short_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 _.-]{0,10}",
        1 => select(TRICKY).prop_map(str::to_string),
    ]
    .boxed()
}

fn ident() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-z_][a-z0-9_]{0,9}",
        1 => select(&["web-browsing", "with space", "ünï", "a.b", "", "type", "string"][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

/// Numbers that survive a JSON round trip exactly (the oracle sees our values via JSON).
fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[0.5, 2.0, -1.25, 1e-7, 1e21, 123.456, -0.0][..]).prop_map(|f| json!(f)),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => short_text().prop_map(Value::String),
        3 => number(),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => prop::collection::vec(short_text(), 0..3).prop_map(|v| json!(v)),
        1 => (ident(), short_text()).prop_map(|(k, v)| json!({ k: v })),
    ]
    .boxed()
}

/// Optional annotations any schema may carry.
#[derive(Debug, Clone)]
struct Annotations {
    description: Option<Value>,
    default: Option<Value>,
    nullable: Option<Value>,
    title: Option<Value>,
    examples: Option<Value>,
}

fn annotations() -> BoxedStrategy<Annotations> {
    let described = prop_oneof![
        3 => text().prop_map(Value::String),
        1 => json_value(),
    ];
    let nullable = prop_oneof![
        4 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!("yes")),
    ];
    let examples = prop_oneof![
        3 => prop::collection::vec(short_text(), 0..3).prop_map(|v| json!(v)),
        1 => prop::collection::vec(json_value(), 0..3).prop_map(Value::Array),
        1 => short_text().prop_map(Value::String),
    ];
    (
        prop::option::weighted(0.4, described),
        prop::option::weighted(0.3, json_value()),
        prop::option::weighted(0.2, nullable),
        prop::option::weighted(0.1, short_text().prop_map(Value::String)),
        prop::option::weighted(0.1, examples),
    )
        .prop_map(
            |(description, default, nullable, title, examples)| Annotations {
                description,
                default,
                nullable,
                title,
                examples,
            },
        )
        .boxed()
}

fn annotate(mut schema: Value, a: Annotations) -> Value {
    if let Value::Object(map) = &mut schema {
        let fields = [
            ("description", a.description),
            ("default", a.default),
            ("nullable", a.nullable),
            ("title", a.title),
            ("examples", a.examples),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        }
    }
    schema
}

fn obj(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<String, Value>>(),
    )
}

fn leaf_schema() -> BoxedStrategy<Value> {
    let type_name = select(
        &[
            "string", "number", "integer", "boolean", "null", "object", "array", "weird",
        ][..],
    );
    let bare = prop_oneof![
        6 => type_name.prop_map(|t| json!({ "type": t })),
        3 => prop::collection::vec(short_text(), 0..4)
            .prop_map(|e| json!({"type": "string", "enum": e})),
        1 => prop::collection::vec(json_value(), 0..3)
            .prop_map(|e| json!({"type": "string", "enum": e})),
        1 => prop::collection::vec(json_value(), 1..3).prop_map(|e| json!({"enum": e})),
        1 => prop::collection::vec(json_value(), 1..3)
            .prop_map(|e| json!({"type": "integer", "enum": e})),
        2 => prop::collection::vec(
            prop_oneof![
                4 => select(&["number", "integer", "string", "null", "boolean", "x"][..])
                    .prop_map(|t| json!(t)),
                1 => json_value(),
            ],
            0..3,
        )
        .prop_map(|types| json!({ "type": types })),
        1 => Just(json!({})),
        1 => Just(json!({"$ref": "#/$defs/thing"})),
        1 => Just(json!({"const": "fixed"})),
        1 => Just(json!({"type": "string", "format": "date-time", "pattern": "^x$"})),
        1 => Just(json!(true)),
        1 => Just(json!("string")),
    ];
    (bare, annotations())
        .prop_map(|(schema, a)| annotate(schema, a))
        .boxed()
}

/// An object schema with properties drawn from `inner`.
fn object_schema(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let properties = prop::collection::vec((ident(), inner, any::<bool>()), 0..5);
    let required_extra = prop::option::weighted(0.1, ident());
    let shape = prop_oneof![
        12 => Just("normal"),
        1 => Just("no_properties"),
        1 => Just("properties_not_object"),
        1 => Just("required_not_array"),
    ];
    (properties, required_extra, shape, annotations())
        .prop_map(|(properties, extra, shape, a)| {
            let mut required: Vec<Value> = properties
                .iter()
                .filter(|(_, _, req)| *req)
                .map(|(name, _, _)| json!(name))
                .collect();
            required.extend(extra.map(Value::String));
            let props: Map<String, Value> = properties
                .into_iter()
                .map(|(name, schema, _)| (name, schema))
                .collect();
            let schema = match shape {
                "no_properties" => obj(vec![("type", json!("object"))]),
                "properties_not_object" => {
                    obj(vec![("type", json!("object")), ("properties", json!([1]))])
                }
                "required_not_array" => obj(vec![
                    ("type", json!("object")),
                    ("properties", Value::Object(props)),
                    ("required", json!("all")),
                ]),
                _ => obj(vec![
                    ("type", json!("object")),
                    ("properties", Value::Object(props)),
                    ("required", Value::Array(required)),
                ]),
            };
            annotate(schema, a)
        })
        .boxed()
}

/// Any schema, nested up to a few levels.
pub fn schema() -> BoxedStrategy<Value> {
    leaf_schema()
        .prop_recursive(3, 24, 4, |inner| {
            let union = |key: &'static str, inner: BoxedStrategy<Value>| {
                (prop::collection::vec(inner, 0..4), annotations())
                    .prop_map(move |(variants, a)| annotate(json!({ key: variants }), a))
            };
            prop_oneof![
                4 => object_schema(inner.clone()),
                2 => (prop::option::weighted(0.85, inner.clone()), annotations()).prop_map(
                    |(items, a)| {
                        let mut schema = json!({"type": "array"});
                        if let (Some(items), Value::Object(m)) = (items, &mut schema) {
                            m.insert("items".into(), items);
                        }
                        annotate(schema, a)
                    }
                ),
                3 => union("oneOf", inner.clone()),
                1 => union("anyOf", inner.clone()),
                1 => union("allOf", inner.clone()),
                1 => (inner.clone(), annotations())
                    .prop_map(|(v, a)| annotate(json!({"oneOf": v}), a)),
                1 => (inner.clone(), inner)
                    .prop_map(|(a, b)| json!({"type": "string", "oneOf": [a, b]})),
            ]
            .boxed()
        })
        .boxed()
}

/// Parameters of a function tool: usually an object schema, sometimes anything, or none.
fn parameters() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        6 => object_schema(schema()).prop_map(Some),
        2 => schema().prop_map(Some),
        2 => Just(None),
    ]
    .boxed()
}

fn tool() -> BoxedStrategy<ToolDescription> {
    (ident(), text(), parameters())
        .prop_map(|(name, description, parameters)| ToolDescription {
            name,
            description,
            parameters,
        })
        .boxed()
}

fn namespace(name: BoxedStrategy<String>) -> BoxedStrategy<ToolNamespaceConfig> {
    (
        name,
        prop::option::weighted(0.5, text()),
        prop::collection::vec(tool(), 0..4),
    )
        .prop_map(|(name, description, tools)| ToolNamespaceConfig {
            name,
            description,
            tools,
        })
        .boxed()
}

/// Namespaces keyed as the builders key them (by name), occasionally under another key.
fn namespaces(
    items: Vec<ToolNamespaceConfig>,
    mis_keyed: bool,
) -> Option<BTreeMap<String, ToolNamespaceConfig>> {
    let mut map = BTreeMap::new();
    for (i, ns) in items.into_iter().enumerate() {
        let key = if mis_keyed && i == 0 {
            format!("z_{}", ns.name)
        } else {
            ns.name.clone()
        };
        map.insert(key, ns);
    }
    Some(map)
}

fn effort() -> BoxedStrategy<ReasoningEffort> {
    select(
        &[
            ReasoningEffort::Low,
            ReasoningEffort::Medium,
            ReasoningEffort::High,
        ][..],
    )
    .boxed()
}

fn channel_config() -> BoxedStrategy<Option<ChannelConfig>> {
    prop_oneof![
        4 => Just(Some(ChannelConfig::require_channels(["analysis", "commentary", "final"]))),
        2 => Just(Some(ChannelConfig::require_channels(["analysis", "final"]))),
        1 => Just(None),
        1 => (prop::collection::vec(short_text(), 0..3), any::<bool>()).prop_map(
            |(valid_channels, channel_required)| Some(ChannelConfig {
                valid_channels,
                channel_required,
            })
        ),
    ]
    .boxed()
}

pub fn system_content() -> BoxedStrategy<SystemContent> {
    let identity = prop_oneof![
        4 => Just(Some(SystemContent::default().model_identity.unwrap_or_default())),
        1 => Just(None),
        1 => text().prop_map(Some),
    ];
    let date = prop_oneof![
        2 => Just(None),
        2 => select(&["2025-06-28", "2021-01-01"][..]).prop_map(|d| Some(d.to_string())),
        1 => short_text().prop_map(Some),
    ];
    let cutoff = prop_oneof![
        3 => Just(Some("2024-06".to_string())),
        1 => Just(None),
        1 => short_text().prop_map(Some),
    ];
    let builtins = (
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.15, namespace(ident())),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(browser, python, custom, mis_keyed)| {
            let mut items = Vec::new();
            if browser {
                items.push(ToolNamespaceConfig::browser());
            }
            if python {
                items.push(ToolNamespaceConfig::python());
            }
            items.extend(custom);
            if items.is_empty() && mis_keyed {
                return Some(BTreeMap::new());
            }
            if items.is_empty() {
                None
            } else {
                namespaces(items, mis_keyed)
            }
        });
    (
        identity,
        prop::option::weighted(0.85, effort()),
        builtins,
        date,
        cutoff,
        channel_config(),
    )
        .prop_map(
            |(model_identity, reasoning_effort, tools, date, knowledge_cutoff, channel_config)| {
                SystemContent {
                    model_identity,
                    reasoning_effort,
                    tools,
                    conversation_start_date: date,
                    knowledge_cutoff,
                    channel_config,
                }
            },
        )
        .boxed()
}

pub fn developer_content() -> BoxedStrategy<DeveloperContent> {
    let functions = prop::collection::vec(tool(), 0..4).prop_map(ToolNamespaceConfig::functions);
    let tools = (
        prop::option::weighted(0.7, functions),
        prop::option::weighted(0.1, namespace(ident())),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(functions, other, mis_keyed)| {
            let items: Vec<_> = functions.into_iter().chain(other).collect();
            if items.is_empty() {
                None
            } else {
                namespaces(items, mis_keyed)
            }
        });
    (prop::option::weighted(0.6, text()), tools)
        .prop_map(|(instructions, tools)| DeveloperContent {
            instructions,
            tools,
        })
        .boxed()
}

fn role() -> BoxedStrategy<Role> {
    prop_oneof![
        1 => Just(Role::System),
        1 => Just(Role::Developer),
        3 => Just(Role::User),
        6 => Just(Role::Assistant),
        2 => Just(Role::Tool),
    ]
    .boxed()
}

fn text_parts() -> BoxedStrategy<Vec<Content>> {
    prop_oneof![
        8 => text().prop_map(|t| vec![Content::from(t)]),
        2 => prop::collection::vec(text().prop_map(Content::from), 0..4),
    ]
    .boxed()
}

/// Content for a message of `role`; rarely structured content in the wrong role (an error
/// both renderers must report).
fn content_for(role: Role) -> BoxedStrategy<Vec<Content>> {
    let misplaced = prop_oneof![
        system_content().prop_map(|s| vec![Content::from(s)]),
        developer_content().prop_map(|d| vec![Content::from("x"), Content::from(d)]),
    ];
    let proper = match role {
        Role::System => prop_oneof![
            8 => system_content().prop_map(|s| vec![Content::from(s)]),
            1 => (system_content(), text())
                .prop_map(|(s, t)| vec![Content::from(s), Content::from(t)]),
            1 => text_parts(),
        ]
        .boxed(),
        Role::Developer => prop_oneof![
            8 => developer_content().prop_map(|d| vec![Content::from(d)]),
            1 => text_parts(),
        ]
        .boxed(),
        _ => text_parts(),
    };
    prop_oneof![40 => proper, 1 => misplaced].boxed()
}

fn author_name(role: Role) -> BoxedStrategy<Option<String>> {
    if role == Role::Tool {
        prop_oneof![
            6 => select(&["functions.get_weather", "browser.search", "python", "functions.x"][..])
                .prop_map(|n| Some(n.to_string())),
            2 => ident().prop_map(Some),
            1 => short_text().prop_map(Some),
            // A nameless tool message cannot be rendered.
            1 => Just(None),
        ]
        .boxed()
    } else {
        prop::option::weighted(0.08, short_text()).boxed()
    }
}

fn recipient() -> BoxedStrategy<Option<String>> {
    let named = prop_oneof![
        6 => select(&[
            "functions.get_weather", "functions.x", "python", "browser.search",
            "browser.open", "assistant", "all", "user", "functions.lookup weather",
        ][..])
        .prop_map(str::to_string),
        1 => short_text(),
    ];
    prop::option::weighted(0.35, named).boxed()
}

fn channel_name() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        3 => Just(None),
        4 => Just(Some("analysis".to_string())),
        3 => Just(Some("commentary".to_string())),
        4 => Just(Some("final".to_string())),
        1 => short_text().prop_map(Some),
    ]
    .boxed()
}

fn content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        12 => Just(None),
        3 => Just(Some("<|constrain|>json".to_string())),
        1 => Just(Some("json".to_string())),
        1 => Just(Some("code".to_string())),
        1 => Just(Some("<|constrain|>".to_string())),
        1 => Just(Some("<|constrain|>yaml <|end|>".to_string())),
        1 => short_text().prop_map(Some),
    ]
    .boxed()
}

pub fn message() -> BoxedStrategy<Message> {
    role()
        .prop_flat_map(|role| {
            (
                Just(role),
                author_name(role),
                recipient(),
                content_for(role),
                channel_name(),
                content_type(),
            )
        })
        .prop_map(|(role, name, recipient, content, channel, content_type)| {
            let mut message = Message::from_role_and_contents(role, content);
            message.author.name = name;
            message.recipient = recipient;
            message.channel = channel;
            message.content_type = content_type;
            message
        })
        .boxed()
}

/// A conversation: usually a system and/or developer message first, then a mix of turns.
pub fn conversation() -> BoxedStrategy<Conversation> {
    (
        prop::option::weighted(0.7, system_content()),
        prop::option::weighted(0.5, developer_content()),
        prop::collection::vec(message(), 0..8),
    )
        .prop_map(|(system, developer, rest)| {
            let mut messages = Vec::new();
            messages.extend(system.map(Message::system));
            messages.extend(developer.map(Message::developer));
            messages.extend(rest);
            Conversation::from_messages(messages)
        })
        .boxed()
}

pub fn any_role() -> BoxedStrategy<Role> {
    select(
        &[
            Role::System,
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
        ][..],
    )
    .boxed()
}
