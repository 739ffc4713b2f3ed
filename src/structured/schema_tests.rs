use super::*;
use serde_json::json;

fn parse(text: &str) -> Result<Schema, SchemaError> {
    Schema::parse(text, Some(Path::new("SCHEMA.json")))
}

fn err(value: Value) -> String {
    Schema::from_value(&value).unwrap_err().to_string()
}

fn rules(node: &Node) -> &Rules {
    match node {
        Node::Rules(r) => r,
        Node::Bool(b) => panic!("a boolean schema {b}"),
    }
}

#[test]
fn parses_the_supported_keywords() {
    let schema = parse(
        r##"{
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Report", "description": "d",
        "type": "object",
        "properties": {
            "zeta": {"type": ["string", "null"], "minLength": 1, "maxLength": 80, "format": "date"},
            "alpha": {"type": "array", "items": {"$ref": "#/$defs/finding"}, "minItems": 0, "maxItems": 5},
            "pair": {"prefixItems": [{"const": 1}, {"enum": ["a", 2, null]}], "items": false},
            "score": {"type": "number", "minimum": 0, "maximum": 1.5, "exclusiveMinimum": -1, "exclusiveMaximum": 2},
            "any": true, "none": false,
            "choice": {"anyOf": [{"type": "integer"}, {"$ref": "#/definitions/old"}], "oneOf": [true], "allOf": [{}]}
        },
        "required": ["zeta"],
        "additionalProperties": false,
        "$defs": {"finding": {"type": "object", "additionalProperties": {"type": "string"}, "examples": [1],
                              "default": {}, "deprecated": false, "readOnly": true, "writeOnly": false,
                              "$comment": "c", "$id": "x"}},
        "definitions": {"old": {"type": "boolean"}}
    }"##,
    )
    .unwrap();
    let root = rules(&schema.root);
    let names: Vec<&str> = root.properties.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["zeta", "alpha", "pair", "score", "any", "none", "choice"],
        "the written order"
    );
    assert_eq!(root.required, ["zeta"]);
    assert_eq!(root.additional, Some(Node::Bool(false)));
    assert_eq!(
        schema.defs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["finding", "old"]
    );
    assert_eq!(schema.file.as_deref(), Some(Path::new("SCHEMA.json")));
    let zeta = rules(&root.properties[0].1);
    assert_eq!(zeta.types, Some(vec![JsonType::String, JsonType::Null]));
    assert_eq!(
        (zeta.min_length, zeta.max_length, zeta.format),
        (Some(1), Some(80), Some(Format::Date))
    );
    let alpha = rules(&root.properties[1].1);
    assert_eq!(rules(alpha.items.as_ref().unwrap()).reference, Some(Target::Def(0)));
    let pair = rules(&root.properties[2].1);
    assert_eq!(pair.prefix_items.len(), 2);
    assert_eq!(pair.items, Some(Node::Bool(false)));
    let score = rules(&root.properties[3].1);
    assert_eq!(
        (
            score.minimum,
            score.maximum,
            score.exclusive_minimum,
            score.exclusive_maximum
        ),
        (Some(0.0), Some(1.5), Some(-1.0), Some(2.0))
    );
    let choice = rules(&root.properties[6].1);
    assert_eq!(
        (choice.any_of.len(), choice.one_of.len(), choice.all_of.len()),
        (2, 1, 1)
    );
    assert_eq!(rules(&choice.any_of[1]).reference, Some(Target::Def(1)));
}

#[test]
fn boolean_and_recursive_schemas() {
    assert_eq!(Schema::from_value(&json!(true)).unwrap().root, Node::Bool(true));
    assert!(
        err(json!(false)).ends_with("invalid JSON Schema at the root: the schema is false, so no answer can match it")
    );
    let tree = json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}});
    assert!(Schema::from_value(&tree).is_ok());
    let list = json!({"$ref": "#/$defs/node", "$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}}}});
    assert!(Schema::from_value(&list).is_ok());
    let escaped = json!({"$ref": "#/$defs/a~1b~0c", "$defs": {"a/b~c": {"type": "null"}}});
    assert!(Schema::from_value(&escaped).is_ok());
}

#[test]
fn unsupported_keywords_name_the_pointer() {
    let text = r#"{"properties": {"findings": {"type": "object", "patternProperties": {}}}}"#;
    assert_eq!(
        parse(text).unwrap_err().to_string(),
        "SCHEMA.json: unsupported JSON Schema keyword \"patternProperties\" at /properties/findings; remove it or \
         express it with the supported keywords (listed in medgemma run --help)"
    );
    for keyword in [
        "pattern",
        "not",
        "if",
        "uniqueItems",
        "contains",
        "minProperties",
        "multipleOf",
        "propertyNames",
        "foo",
    ] {
        let e = err(json!({"items": {keyword: true}}));
        assert!(e.contains(&format!("keyword \"{keyword}\" at /items;")), "{e}");
    }
    assert!(err(json!({"x-vendor": 1}))
        .starts_with("JSON Schema: unsupported JSON Schema keyword \"x-vendor\" at the root;"));
    let e = err(json!({"properties": {"a/b": {"anyOf": [{"maxContains": 1}]}}}));
    assert!(e.contains("at /properties/a~1b/anyOf/0;"), "{e}");
}

#[test]
fn invalid_schemas_name_the_pointer() {
    let cases = [
        (
            json!(3),
            "at the root: a schema must be an object or true/false, not a number",
        ),
        (json!({"type": "text"}), "at /type: unknown type \"text\""),
        (json!({"type": []}), "at /type: type must not be an empty array"),
        (
            json!({"type": ["string", "string"]}),
            "at /type: type lists a type twice",
        ),
        (json!({"type": 1}), "at /type: type must be a type name"),
        (json!({"enum": []}), "at /enum: enum must be a non-empty array"),
        (
            json!({"anyOf": []}),
            "at /anyOf: anyOf must be a non-empty array of schemas",
        ),
        (json!({"oneOf": {}}), "at /oneOf: oneOf must be a non-empty array"),
        (
            json!({"allOf": [{}, {}]}),
            "at /allOf: allOf with more than one schema is not supported",
        ),
        (
            json!({"$ref": "#/$defs/missing"}),
            "at /$ref: $ref \"#/$defs/missing\" names no schema",
        ),
        (json!({"$ref": "other.json"}), "names no schema"),
        (json!({"$ref": 1}), "at /$ref: $ref must be a string"),
        (
            json!({"items": {"$defs": {}}}),
            "at /items/$defs: $defs is only supported at the root",
        ),
        (json!({"$defs": []}), "at /$defs: $defs must be an object of schemas"),
        (
            json!({"properties": {"a": {}}, "required": ["b"]}),
            "at /required: required property \"b\" is not in properties",
        ),
        (
            json!({"additionalProperties": false, "required": ["b"]}),
            "required property \"b\" is not in properties",
        ),
        (
            json!({"required": ["a", "a"]}),
            "at /required: required lists \"a\" twice",
        ),
        (json!({"required": "a"}), "at /required: required must be an array"),
        (
            json!({"properties": []}),
            "at /properties: properties must be an object",
        ),
        (
            json!({"properties": {"a": 1}}),
            "at /properties/a: a schema must be an object or true/false",
        ),
        (json!({"minItems": -1}), "at /minItems: must be a non-negative integer"),
        (
            json!({"maxLength": 1.5}),
            "at /maxLength: must be a non-negative integer",
        ),
        (
            json!({"minLength": 3, "maxLength": 2}),
            "at the root: minLength (3) is greater than its maximum (2)",
        ),
        (
            json!({"minItems": 3, "maxItems": 2}),
            "minItems (3) is greater than its maximum (2)",
        ),
        (json!({"minimum": "0"}), "at /minimum: must be a number"),
        (
            json!({"minimum": 5, "maximum": 1}),
            "at the root: no number meets both bounds: minimum 5 is not below maximum 1",
        ),
        (
            json!({"exclusiveMinimum": 2, "maximum": 2}),
            "no number meets both bounds: minimum 2 is not below maximum 2",
        ),
        (
            json!({"minimum": 0, "exclusiveMinimum": 3, "exclusiveMaximum": 3}),
            "no number meets both bounds: minimum 3 is not below maximum 3",
        ),
        (json!({"format": "email"}), "at /format: unsupported format"),
        (
            json!({"prefixItems": []}),
            "at /prefixItems: prefixItems must be a non-empty array",
        ),
        (
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}}),
            "at /$defs/a: its $ref chain leads back to itself",
        ),
        (
            json!({"anyOf": [{"$ref": "#"}]}),
            "at the root: its $ref chain leads back to itself",
        ),
    ];
    for (schema, want) in cases {
        let got = err(schema.clone());
        assert!(got.contains(want), "{schema}\n  got:  {got}\n  want: {want}");
        assert!(
            got.starts_with("JSON Schema: invalid JSON Schema at ") || got.starts_with("JSON Schema: unsupported"),
            "{got}"
        );
    }
}

#[test]
fn text_errors_name_the_file() {
    assert!(parse("{\"type\": \"object\", \"type\": \"array\"}")
        .unwrap_err()
        .to_string()
        .contains("keyword \"type\" appears twice"));
    let e = parse("{\"properties\": {\"a\": {}, \"a\": {}}}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at /properties: property \"a\" is listed twice"), "{e}");
    let e = parse("{\"type\": ").unwrap_err().to_string();
    assert!(e.starts_with("SCHEMA.json: not JSON: EOF while parsing"), "{e}");
    let e = load_schema(Path::new("/no/such/schema.json")).unwrap_err().to_string();
    assert!(
        e.starts_with("/no/such/schema.json: cannot read the JSON Schema: "),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.schema.json");
    std::fs::write(
        &path,
        r#"{"type": "object", "properties": {"b": {}, "a": {}}, "pattern": "x"}"#,
    )
    .unwrap();
    let e = load_schema(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: unsupported JSON Schema keyword \"pattern\" at the root",
            path.display()
        )),
        "{e}"
    );
    std::fs::write(&path, r#"{"type": "object", "properties": {"b": {}, "a": {}}}"#).unwrap();
    let schema = load_schema(&path).unwrap();
    assert_eq!(rules(&schema.root).properties[0].0, "b");
}

#[test]
fn pointers_escape_and_show_the_root() {
    assert_eq!(Pointer::default().to_string(), "the root");
    assert_eq!(
        Pointer::default().join("a/b").join("c~d").join("0").to_string(),
        "/a~1b/c~0d/0"
    );
}
