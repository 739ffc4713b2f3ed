use super::*;
use serde_json::json;

fn schema(value: Value) -> Schema {
    Schema::from_value(&value).unwrap()
}

/// Each value with whether it should match.
fn table(s: Value, cases: &[(Value, bool)]) {
    let schema = schema(s.clone());
    for (value, ok) in cases {
        assert_eq!(
            schema.validate(value).is_ok(),
            *ok,
            "schema {s}, value {value}: {:?}",
            schema.validate(value)
        );
    }
}

fn error(s: Value, value: Value) -> String {
    schema(s).validate(&value).unwrap_err().to_string()
}

#[test]
fn types() {
    let all = [
        json!("s"),
        json!(1),
        json!(1.5),
        json!(true),
        json!(null),
        json!({}),
        json!([]),
    ];
    for (name, matches) in [
        ("string", [true, false, false, false, false, false, false]),
        ("number", [false, true, true, false, false, false, false]),
        ("integer", [false, true, false, false, false, false, false]),
        ("boolean", [false, false, false, true, false, false, false]),
        ("null", [false, false, false, false, true, false, false]),
        ("object", [false, false, false, false, false, true, false]),
        ("array", [false, false, false, false, false, false, true]),
    ] {
        let cases: Vec<(Value, bool)> = all.iter().cloned().zip(matches).collect();
        table(json!({"type": name}), &cases);
    }
    table(
        json!({"type": "integer"}),
        &[
            (json!(1.0), true),
            (json!(-3), true),
            (json!(1e3), true),
            (json!(0.1), false),
        ],
    );
    table(
        json!({"type": ["string", "null"]}),
        &[(json!("a"), true), (json!(null), true), (json!(0), false)],
    );
    table(json!(true), &[(json!(1), true), (json!({"a": [null]}), true)]);
    table(json!({"items": false}), &[(json!([1]), false), (json!([]), true)]);
    table(json!({}), &[(json!(1), true), (json!("x"), true)]);
}

#[test]
fn enum_and_const_compare_as_json() {
    table(
        json!({"const": 1}),
        &[
            (json!(1), true),
            (json!(1.0), true),
            (json!("1"), false),
            (json!(true), false),
        ],
    );
    table(
        json!({"const": {"a": [1, "x"], "b": null}}),
        &[
            (json!({"b": null, "a": [1.0, "x"]}), true),
            (json!({"a": [1, "x"]}), false),
        ],
    );
    table(
        json!({"enum": ["normal", "abnormal", null, 2]}),
        &[
            (json!("normal"), true),
            (json!(null), true),
            (json!(2.0), true),
            (json!("Normal"), false),
            (json!(3), false),
        ],
    );
    assert_eq!(
        error(json!({"enum": ["a", "b"]}), json!("c")),
        "answer does not match the schema at the root: expected one of \"a\", \"b\", got \"c\""
    );
    assert_eq!(
        error(json!({"const": "yes"}), json!(false)),
        "answer does not match the schema at the root: expected \"yes\", got false"
    );
}

#[test]
fn strings() {
    table(
        json!({"minLength": 2, "maxLength": 3}),
        &[
            (json!("a"), false),
            (json!("ab"), true),
            (json!("éèê"), true),
            (json!("abcd"), false),
            (json!(5), true),
        ],
    );
    table(
        json!({"format": "date"}),
        &[
            (json!("2024-02-29"), true),
            (json!("2023-02-29"), false),
            (json!("2024-04-31"), false),
            (json!("2024-13-01"), false),
            (json!("2024-1-01"), false),
            (json!("2024-01-00"), false),
            (json!("1900-02-29"), false),
            (json!("2000-02-29"), true),
            (json!(3), true),
        ],
    );
    table(
        json!({"format": "time"}),
        &[
            (json!("23:59:59Z"), true),
            (json!("00:00:00.123+05:30"), true),
            (json!("12:00:00-08:00"), true),
            (json!("12:00:00z"), true),
            (json!("24:00:00Z"), false),
            (json!("12:60:00Z"), false),
            (json!("12:00:00"), false),
            (json!("12:00Z"), false),
            (json!("12:00:00.Z"), false),
            (json!("12:00:00+5:30"), false),
        ],
    );
    table(
        json!({"format": "date-time"}),
        &[
            (json!("2024-05-06T07:08:09Z"), true),
            (json!("2024-05-06t07:08:09.5+01:00"), true),
            (json!("2024-05-06 07:08:09Z"), false),
            (json!("2024-05-06T07:08:09"), false),
            (json!("2024-05-06"), false),
            (json!("2024-05-06é07:08:09Z"), false),
        ],
    );
    table(
        json!({"format": "uuid"}),
        &[
            (json!("123e4567-e89b-12d3-a456-426614174000"), true),
            (json!("123E4567-E89B-12D3-A456-426614174000"), true),
            (json!("123e4567e89b12d3a456426614174000"), false),
            (json!("123e4567-e89b-12d3-a456-42661417400g"), false),
        ],
    );
    assert_eq!(
        error(json!({"maxLength": 2}), json!("abc")),
        "answer does not match the schema at the root: expected a string of at most 2 characters, got 3"
    );
    assert!(error(json!({"format": "date"}), json!("yesterday"))
        .ends_with("expected a date (YYYY-MM-DD), got \"yesterday\""));
}

#[test]
fn numbers() {
    table(
        json!({"minimum": 0, "maximum": 10}),
        &[
            (json!(0), true),
            (json!(10), true),
            (json!(-0.5), false),
            (json!(10.01), false),
            (json!("11"), true),
        ],
    );
    table(
        json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1}),
        &[(json!(0), false), (json!(0.5), true), (json!(1), false)],
    );
    assert_eq!(
        error(json!({"type": "number", "maximum": 5}), json!(7)),
        "answer does not match the schema at the root: expected a number <= 5, got 7"
    );
}

#[test]
fn arrays() {
    table(
        json!({"items": {"type": "integer"}, "minItems": 1, "maxItems": 2}),
        &[
            (json!([]), false),
            (json!([1]), true),
            (json!([1, 2]), true),
            (json!([1, 2, 3]), false),
            (json!([1, "2"]), false),
        ],
    );
    table(
        json!({"prefixItems": [{"type": "string"}, {"type": "number"}]}),
        &[
            (json!(["a", 1]), true),
            (json!(["a"]), true),
            (json!([1]), false),
            (json!(["a", 1, null]), true),
        ],
    );
    table(
        json!({"prefixItems": [{"type": "string"}], "items": false}),
        &[(json!(["a"]), true), (json!(["a", "b"]), false), (json!([]), true)],
    );
    table(
        json!({"prefixItems": [{"type": "string"}], "items": {"type": "null"}}),
        &[(json!(["a", null, null]), true), (json!(["a", 1]), false)],
    );
    assert_eq!(
        error(
            json!({"items": {"properties": {"size": {"type": "number"}}}}),
            json!([{"size": 1}, {"size": "big"}])
        ),
        "answer does not match the schema at /1/size: expected a number, got \"big\""
    );
    assert_eq!(
        error(json!({"prefixItems": [true], "items": false}), json!([1, 2])),
        "answer does not match the schema at the root: expected at most 1 items, got 2"
    );
}

#[test]
fn objects() {
    let s = json!({"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]});
    table(
        s.clone(),
        &[
            (json!({"a": "x"}), true),
            (json!({"a": "x", "b": 2}), true),
            (json!({"b": 2}), false),
            (json!({"a": 1}), false),
            (json!({"a": "x", "c": [1]}), true),
            (json!([]), true),
        ],
    );
    let closed = json!({"properties": {"a": {}}, "additionalProperties": false});
    table(
        closed.clone(),
        &[(json!({"a": 1}), true), (json!({}), true), (json!({"c": 1}), false)],
    );
    table(
        json!({"properties": {"a": {}}, "additionalProperties": {"type": "number"}}),
        &[(json!({"a": "s", "c": 1}), true), (json!({"c": "s"}), false)],
    );
    table(
        json!({"properties": {"a": false}}),
        &[(json!({}), true), (json!({"a": 1}), false)],
    );
    assert_eq!(
        error(s, json!({"b": 1})),
        "answer does not match the schema at the root: expected the required property \"a\", which is missing"
    );
    assert_eq!(
        error(closed, json!({"a": 1, "extra": 2})),
        "answer does not match the schema at the root: expected no property \"extra\" (additionalProperties is false)"
    );
    let findings = json!({"properties": {"findings": {"items": {"properties": {"size": {"type": "number"}}}}}});
    assert_eq!(
        error(findings, json!({"findings": [{"size": "big"}]})),
        "answer does not match the schema at /findings/0/size: expected a number, got \"big\""
    );
}

#[test]
fn combinators() {
    table(
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        &[(json!("a"), true), (json!(3), true), (json!(3.5), false)],
    );
    table(
        json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}),
        &[(json!(3.5), true), (json!(3), false), (json!("a"), false)],
    );
    table(
        json!({"allOf": [{"minimum": 2}], "maximum": 4}),
        &[(json!(3), true), (json!(1), false), (json!(5), false)],
    );
    assert_eq!(error(json!({"anyOf": [{"type": "string"}, {"type": "null"}]}), json!(1)),
        "answer does not match the schema at the root: expected a value matching one of the 2 anyOf schemas; none matches");
    let deep = json!({"anyOf": [{"type": "string"}, {"properties": {"a": {"type": "null"}}}]});
    assert_eq!(
        error(deep, json!({"a": 1})),
        "answer does not match the schema at /a: expected null, got 1"
    );
    assert_eq!(error(json!({"oneOf": [{"type": "number"}, {"minimum": 0}]}), json!(1)),
        "answer does not match the schema at the root: expected exactly one of the oneOf schemas to match, but 2 do (#0 and #1)");
}

#[test]
fn refs_and_recursion() {
    let tree = json!({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "required": ["v"], "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}});
    table(
        tree.clone(),
        &[
            (json!({"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}), true),
            (json!({"v": 1, "kids": [{"kids": []}]}), false),
        ],
    );
    assert_eq!(
        error(tree, json!({"v": 1, "kids": [{"v": 2, "kids": [{"v": "x"}]}]})),
        "answer does not match the schema at /kids/0/kids/0/v: expected an integer, got \"x\""
    );
    let root_ref = json!({"type": ["object", "null"], "properties": {"next": {"$ref": "#"}}});
    table(
        root_ref,
        &[
            (json!({"next": {"next": null}}), true),
            (json!({"next": {"next": 1}}), false),
        ],
    );
    // A deeply nested answer only recurses as deep as the answer.
    let mut value = json!(null);
    for _ in 0..100 {
        value = json!({"next": value});
    }
    assert!(
        schema(json!({"type": ["object", "null"], "properties": {"next": {"$ref": "#"}}}))
            .validate(&value)
            .is_ok()
    );
}

#[test]
fn errors_do_not_echo_long_values() {
    let long = "patient name and history ".repeat(10);
    let e = error(json!({"type": "integer"}), json!(long));
    assert_eq!(
        e,
        "answer does not match the schema at the root: expected an integer, got a string of 250 characters"
    );
    let e = error(json!({"enum": [long.clone()]}), json!(1));
    assert!(
        e.contains("expected one of \"patient name and history patient name a..., got 1"),
        "{e}"
    );
    assert!(error(json!({"type": "string"}), json!([1, 2])).ends_with("got an array of 2 items"));
    assert!(error(json!({"type": "string"}), json!({"a": 1})).ends_with("got an object"));
    let enum12: Vec<Value> = (0..12).map(Value::from).collect();
    assert!(error(json!({"enum": enum12}), json!(20)).contains("8, 9, ..., got 20"));
}
