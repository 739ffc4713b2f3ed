use super::*;
use serde_json::json;

#[test]
fn json_object_format() {
    let format = OutputFormat::JsonObject;
    assert_eq!(format.describe(), "JSON object");
    assert_eq!(format.grammar(), json_object_grammar());
    assert_eq!(format.check_answer(" {\"a\": [1]}\n").unwrap(), Some(json!({"a": [1]})));
    assert_eq!(
        format.check_answer("[1]").unwrap_err().to_string(),
        "the answer is an array, not a JSON object"
    );
    assert_eq!(
        format.check_answer("{\"a\": }").unwrap_err().to_string(),
        "the answer is not JSON: expected value at line 1 column 7"
    );
    let secret = "{\"name\": \"Jane Doe\", ";
    assert!(!format.check_answer(secret).unwrap_err().to_string().contains("Jane"));
}

#[test]
fn schema_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.schema.json");
    std::fs::write(
        &path,
        r#"{"type": "object", "properties": {"findings": {"type": "array", "items": {"type": "object",
        "properties": {"size": {"type": "number"}}, "required": ["size"]}}}, "required": ["findings"]}"#,
    )
    .unwrap();
    let format = OutputFormat::Schema(load_schema(&path).unwrap());
    assert_eq!(format.describe(), format!("JSON Schema {}", path.display()));
    assert_eq!(check_gbnf(&format.grammar()), Ok(()));
    assert_eq!(
        format.check_answer(r#"{"findings": [{"size": 1.5}]}"#).unwrap(),
        Some(json!({"findings": [{"size": 1.5}]}))
    );
    assert_eq!(
        format
            .check_answer(r#"{"findings": [{"size": "big"}]}"#)
            .unwrap_err()
            .to_string(),
        "answer does not match the schema at /findings/0/size: expected a number, got \"big\""
    );
    assert!(format
        .check_answer("not json")
        .unwrap_err()
        .to_string()
        .starts_with("the answer is not JSON: expected ident"));
    assert_eq!(
        OutputFormat::Schema(Schema::from_value(&json!(true)).unwrap()).describe(),
        "JSON Schema"
    );
}

#[test]
fn grammar_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.gbnf");
    std::fs::write(&path, "root ::= answer\nanswer ::= \"yes\" | \"no\"\n").unwrap();
    let format = load_grammar(&path).unwrap();
    assert_eq!(format.describe(), format!("grammar {}", path.display()));
    assert_eq!(format.grammar(), "root ::= answer\nanswer ::= \"yes\" | \"no\"\n");
    assert_eq!(format.check_answer("anything"), Ok(None));
    std::fs::write(&path, "root ::= answer\n\nanswer ::= \"yes\" | valu\n").unwrap();
    assert_eq!(
        load_grammar(&path).unwrap_err().to_string(),
        format!("{}:3:20: undefined rule \"valu\"", path.display())
    );
    let missing = dir.path().join("none.gbnf");
    assert!(load_grammar(&missing)
        .unwrap_err()
        .to_string()
        .starts_with(&format!("{}: cannot read the grammar: ", missing.display())));
}

#[test]
fn every_generated_grammar_passes_the_checker() {
    let schemas = [
        json!(true),
        json!({"type": "object", "properties": {"diagnosis": {"enum": ["normal", "pneumonia", "effusion"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}, "notes": {"type": ["string", "null"], "maxLength": 500},
            "date": {"format": "date-time"}, "id": {"format": "uuid"}}, "required": ["diagnosis", "confidence"],
            "additionalProperties": false}),
        json!({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}, "minItems": 1}),
        json!({"oneOf": [{"const": null}, {"type": "object", "additionalProperties": true}]}),
        json!({"$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}}, "b": {"type": "array", "items": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}),
        json!({"type": ["object", "array", "string", "number", "integer", "boolean", "null"]}),
        json!({"properties": {"": {}, "#": {}, "-": {}, "  ": {}}, "required": ["", "#"]}),
    ];
    for schema in schemas {
        let grammar = Schema::from_value(&schema).unwrap().to_gbnf();
        assert_eq!(check_gbnf(&grammar), Ok(()), "{schema}\n{grammar}");
        assert!(grammar.starts_with("root ::= "), "{grammar}");
    }
}
