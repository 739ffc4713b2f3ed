use super::*;
use crate::fuzz::Rng;
use crate::structured::gbnf_check::check_gbnf;
use crate::structured::gbnf_matcher::Matcher;
use crate::structured::ordered::Json;

/// JSON text with keys in order: compact, or indented by two spaces a level.
pub(in crate::structured) fn text(json: &Json, pretty: bool, indent: usize) -> String {
    let (nl, pad, inner, colon) = if pretty {
        ("\n", " ".repeat(indent), " ".repeat(indent + 2), ": ")
    } else {
        ("", String::new(), String::new(), ":")
    };
    match json {
        Json::Array(items) if !items.is_empty() => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| format!("{inner}{}", text(v, pretty, indent + 2)))
                .collect();
            format!("[{nl}{}{nl}{pad}]", parts.join(&format!(",{nl}")))
        }
        Json::Object(entries) if !entries.is_empty() => {
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{inner}{}{colon}{}",
                        serde_json::to_string(k).unwrap(),
                        text(v, pretty, indent + 2)
                    )
                })
                .collect();
            format!("{{{nl}{}{nl}{pad}}}", parts.join(&format!(",{nl}")))
        }
        other => other.to_value().to_string(),
    }
}

fn grammar_of(schema: &serde_json::Value) -> (Schema, String) {
    let schema = Schema::from_value(schema).unwrap();
    let grammar = schema.to_gbnf();
    assert_eq!(check_gbnf(&grammar), Ok(()), "{grammar}");
    (schema, grammar)
}

#[test]
fn json_object_grammar_accepts_objects_only() {
    let grammar = json_object_grammar();
    assert_eq!(check_gbnf(&grammar), Ok(()), "{grammar}");
    let m = Matcher::new(&grammar);
    for ok in [
        "{}",
        "{ }",
        "{\"a\":1}",
        "{\"a\": [1, -2.5e-3, \"x\\n\\u00e9\", true, null, {\"b\": {}}]}",
        "{\n  \"a\": \"é✓\"\n}\n",
        "{\"\":0.0}",
    ] {
        assert!(m.matches(ok), "{ok}");
    }
    let spaces = format!("{{{}}}", " ".repeat(30));
    for bad in [
        "[]",
        "\"x\"",
        "1",
        "{\"a\":}",
        "{\"a\":1,}",
        " {}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":\"\u{1}\"}",
        &spaces,
        "{\"a\":\"\\q\"}",
    ] {
        assert!(!m.matches(bad), "{bad:?}");
    }
}

#[test]
fn literals_escape_for_gbnf() {
    let raw = "a\"b\\c\nd\r\t\u{1}\u{7f}é✓[]-";
    let lit = literal(raw);
    assert_eq!(lit, "\"a\\\"b\\\\c\\nd\\r\\t\\x01\\x7Fé✓[]-\"");
    let grammar = format!("root ::= {lit}\n");
    assert_eq!(check_gbnf(&grammar), Ok(()));
    assert!(Matcher::new(&grammar).matches(raw));
}

#[test]
fn object_properties_in_order_required_and_optional() {
    let (_, g) = grammar_of(&serde_json::json!({"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}}, "required": ["b"]}));
    let m = Matcher::new(&g);
    for ok in [
        r#"{"b":1}"#,
        r#"{"a":"x","b":1}"#,
        r#"{"b":1,"c":true}"#,
        r#"{"a":"x","b":-1,"c":false}"#,
        "{\n  \"b\": 0\n}",
    ] {
        assert!(m.matches(ok), "{ok}\n{g}");
    }
    for bad in [
        r#"{}"#,
        r#"{"a":"x"}"#,
        r#"{"b":1,"a":"x"}"#,
        r#"{"b":1.5}"#,
        r#"{"b":1,"d":1}"#,
        r#"{"b":1,}"#,
        r#"{,"b":1}"#,
    ] {
        assert!(!m.matches(bad), "{bad}\n{g}");
    }
    let (_, g) =
        grammar_of(&serde_json::json!({"properties": {"a": {}, "b": {}}, "additionalProperties": {"type": "null"}}));
    let m = Matcher::new(&g);
    for ok in ["{}", r#"{"a":1}"#, r#"{"b":2,"x":null}"#, r#"{"x":null,"y":null}"#] {
        assert!(m.matches(ok), "{ok}\n{g}");
    }
    assert!(!m.matches(r#"{"x":1}"#));
    let (_, g) = grammar_of(&serde_json::json!({"type": "object"}));
    assert!(
        Matcher::new(&g).matches("{}") && !Matcher::new(&g).matches(r#"{"a":1}"#),
        "extra properties only when allowed explicitly"
    );
}

#[test]
fn arrays_strings_and_formats() {
    let cases: Vec<(serde_json::Value, Vec<&str>, Vec<&str>)> = vec![
        (
            serde_json::json!({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}),
            vec!["[1]", "[1, 2, 3]"],
            vec!["[]", "[1,2,3,4]", "[1.5]"],
        ),
        (
            serde_json::json!({"type": "array"}),
            vec!["[]", "[1,\"a\",{}]"],
            vec!["[,]"],
        ),
        (
            serde_json::json!({"type": "array", "maxItems": 0}),
            vec!["[]"],
            vec!["[1]"],
        ),
        (
            serde_json::json!({"prefixItems": [{"type": "string"}, {"type": "null"}], "items": false, "minItems": 1}),
            vec!["[\"a\"]", "[\"a\",null]"],
            vec!["[]", "[null]", "[\"a\",null,null]"],
        ),
        (
            serde_json::json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}, "maxItems": 3}),
            vec!["[]", "[\"a\"]", "[\"a\",1,2]"],
            vec!["[\"a\",1,2,3]", "[1]"],
        ),
        (
            serde_json::json!({"type": "string", "minLength": 2, "maxLength": 3}),
            vec!["\"ab\"", "\"é\\n✓\""],
            vec!["\"a\"", "\"abcd\""],
        ),
        (
            serde_json::json!({"type": "string", "maxLength": 5000}),
            vec!["\"\""],
            vec![],
        ),
        (
            serde_json::json!({"format": "date"}),
            vec!["\"2024-02-29\""],
            vec!["\"2024-2-29\"", "\"2024-13-01\""],
        ),
        (
            serde_json::json!({"format": "time"}),
            vec!["\"23:59:59Z\"", "\"00:00:00.5+05:30\""],
            vec!["\"24:00:00Z\"", "\"12:00:00\""],
        ),
        (
            serde_json::json!({"format": "date-time"}),
            vec!["\"2024-05-06T07:08:09Z\""],
            vec!["\"2024-05-06 07:08:09Z\""],
        ),
        (
            serde_json::json!({"format": "uuid"}),
            vec!["\"123e4567-e89b-12d3-a456-426614174000\""],
            vec!["\"123e4567\""],
        ),
        (
            serde_json::json!({"type": ["integer", "null"]}),
            vec!["0", "-12", "null"],
            vec!["1.5", "01", "-"],
        ),
        (
            serde_json::json!({"type": "number"}),
            vec!["0", "-0.5", "1e10", "2.5E-3"],
            vec!["1.", ".5", "+1", "1e1234"],
        ),
        (
            serde_json::json!({"enum": ["a\"b", 1, null, {"k": [true]}]}),
            vec!["\"a\\\"b\"", "1", "null", "{\"k\":[true]}"],
            vec!["2", "\"a\""],
        ),
        (
            serde_json::json!({"type": "string", "enum": ["x", 1]}),
            vec!["\"x\""],
            vec!["1"],
        ),
        (serde_json::json!({"const": "yes"}), vec!["\"yes\""], vec!["\"no\""]),
        (
            serde_json::json!({"anyOf": [{"type": "boolean"}, {"type": "string", "maxLength": 1}]}),
            vec!["true", "\"a\""],
            vec!["\"ab\"", "null"],
        ),
        (
            serde_json::json!({"oneOf": [{"type": "null"}, false]}),
            vec!["null"],
            vec!["1"],
        ),
        (serde_json::json!({"items": false}), vec!["[]"], vec!["[1]"]),
        (serde_json::json!(true), vec!["null", "{\"a\":[]}"], vec![]),
        (
            serde_json::json!({"allOf": [{"type": "integer"}], "description": "x"}),
            vec!["3"],
            vec!["\"3\""],
        ),
    ];
    for (schema, oks, bads) in cases {
        let (parsed, g) = grammar_of(&schema);
        let m = Matcher::new(&g);
        for ok in oks {
            assert!(m.matches(ok), "{schema}: {ok}\n{g}");
            assert_eq!(
                parsed.validate(&serde_json::from_str(ok).unwrap()),
                Ok(()),
                "{schema}: {ok}"
            );
        }
        for bad in bads {
            assert!(!m.matches(bad), "{schema}: {bad}\n{g}");
        }
    }
}

#[test]
fn recursive_refs_and_names_are_valid_gbnf() {
    let schema = serde_json::json!({"$ref": "#/$defs/tree node", "$defs": {
        "tree node": {"type": "object", "properties": {"välue": {"type": "integer"}, "kids/all": {"type": "array", "items": {"$ref": "#/$defs/tree node"}}}, "required": ["välue"]},
        "tree-node": {"type": "null"}}});
    let (_, g) = grammar_of(&schema);
    let m = Matcher::new(&g);
    // Properties in the written order (serde_json keeps it: the preserve_order feature).
    assert!(
        m.matches(r#"{"välue":1,"kids/all":[{"välue":2},{"välue":3,"kids/all":[]}]}"#),
        "{g}"
    );
    assert!(!m.matches(r#"{"kids/all":[],"välue":1}"#), "another order");
    assert!(!m.matches(r#"{"välue":1,"kids/all":[{}]}"#));
    let (_, g) = grammar_of(&serde_json::json!({"type": ["object", "null"], "properties": {"next": {"$ref": "#"}}}));
    assert!(Matcher::new(&g).matches(r#"{"next":{"next":null}}"#), "{g}");
    let many: serde_json::Map<String, serde_json::Value> = (0..60)
        .map(|i| (format!("p{i}"), serde_json::json!({"type": "array", "maxItems": 1999})))
        .collect();
    grammar_of(&serde_json::json!({"properties": many, "required": ["p30"]}));
    grammar_of(&serde_json::json!({"prefixItems": [true, true], "minItems": 2500, "maxItems": 3000}));
    grammar_of(&serde_json::json!({"type": "string", "minLength": 2500}));
}

/// A random schema (as ordered JSON) of at most `depth` levels of nesting.
pub(in crate::structured) fn random_schema(rng: &mut Rng, depth: usize) -> Json {
    let s = |v: &str| Json::String(v.to_string());
    let n = |v: i64| Json::Number(v.into());
    let obj = |entries: Vec<(&str, Json)>| Json::Object(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    let kind = rng.below(if depth == 0 { 7 } else { 11 });
    match kind {
        0 => {
            let mut e = vec![("type", s("string"))];
            if rng.one_in(2) {
                e.push(("minLength", n(rng.range(0, 3) as i64)));
            }
            if rng.one_in(2) {
                e.push(("maxLength", n(rng.range(3, 8) as i64)));
            }
            if rng.one_in(4) {
                e = vec![("format", s(rng.pick(&["date", "time", "date-time", "uuid"])))];
            }
            obj(e)
        }
        1 => obj(vec![
            ("type", s("integer")),
            ("minimum", n(-5)),
            ("maximum", n(rng.range(0, 100) as i64)),
        ]),
        2 => obj(vec![("type", s("number"))]),
        3 => obj(vec![("type", Json::Array(vec![s("boolean"), s("null")]))]),
        4 => obj(vec![(
            "enum",
            Json::Array(vec![s("a\"b"), n(3), Json::Null, s("é\n✓")]),
        )]),
        5 => obj(vec![("const", s("k\\\"\u{1}"))]),
        6 => Json::Bool(true),
        7 | 8 => {
            let names = ["name", "a b", "é", "x/y", "q\"uote", "size", "_under"];
            let count = rng.range(0, 4);
            let props: Vec<(String, Json)> = names[..count]
                .iter()
                .map(|p| (p.to_string(), random_schema(rng, depth - 1)))
                .collect();
            let required: Vec<Json> = names[..count].iter().filter(|_| rng.one_in(2)).map(|p| s(p)).collect();
            let mut e = vec![
                ("type", s("object")),
                ("properties", Json::Object(props)),
                ("required", Json::Array(required)),
            ];
            match rng.below(4) {
                0 => e.push(("additionalProperties", Json::Bool(false))),
                1 => e.push(("additionalProperties", Json::Bool(true))),
                2 => e.push(("additionalProperties", random_schema(rng, depth - 1))),
                _ => {}
            }
            obj(e)
        }
        9 => {
            let mut e = vec![("type", s("array")), ("items", random_schema(rng, depth - 1))];
            if rng.one_in(2) {
                e.push(("minItems", n(rng.range(0, 2) as i64)));
                e.push(("maxItems", n(rng.range(2, 4) as i64)));
            }
            obj(e)
        }
        _ => obj(vec![(
            "anyOf",
            Json::Array(vec![random_schema(rng, depth - 1), obj(vec![("type", s("null"))])]),
        )]),
    }
}

/// A value the parsed schema allows, with properties in the schema's order.
fn sample(node: &Node, rng: &mut Rng) -> Json {
    let Node::Rules(r) = node else {
        return Json::Array(vec![Json::Null, Json::String("é".into())]);
    };
    if let Some(v) = r
        .constant
        .as_ref()
        .or(r.enumeration.as_ref().map(|e| &e[rng.below(e.len())]))
    {
        return Json::from_value(v);
    }
    if let Some(sub) = r.any_of.first() {
        return if rng.one_in(2) { Json::Null } else { sample(sub, rng) };
    }
    let types = r.types.clone().unwrap_or(vec![JsonType::String]);
    match types[rng.below(types.len())] {
        JsonType::String => Json::String(match r.format {
            Some(Format::Date) => "2024-02-29".into(),
            Some(Format::Time) => "23:59:59.123+05:30".into(),
            Some(Format::DateTime) => "2024-05-06T07:08:09Z".into(),
            Some(Format::Uuid) => "123e4567-e89b-12d3-a456-426614174000".into(),
            None => {
                let len = rng.range(r.min_length.unwrap_or(0) as usize, r.max_length.unwrap_or(6) as usize);
                (0..len)
                    .map(|_| rng.pick(&['a', 'é', '"', '\\', '\n', '✓', ' ', '/']))
                    .collect()
            }
        }),
        JsonType::Integer => Json::Number((rng.range(0, r.maximum.unwrap_or(9.0) as usize + 5) as i64 - 5).into()),
        JsonType::Number => Json::Number(serde_json::Number::from_f64(rng.below(100) as f64 / 8.0 - 3.0).unwrap()),
        JsonType::Boolean => Json::Bool(rng.one_in(2)),
        JsonType::Null => Json::Null,
        JsonType::Array => {
            let count = rng.range(r.min_items.unwrap_or(0) as usize, r.max_items.unwrap_or(3) as usize);
            Json::Array((0..count).map(|_| sample(r.items.as_ref().unwrap(), rng)).collect())
        }
        JsonType::Object => {
            let mut entries = Vec::new();
            for (name, node) in &r.properties {
                if r.required.contains(name) || rng.one_in(2) {
                    entries.push((name.clone(), sample(node, rng)));
                }
            }
            if let Some(extra) = r.additional.as_ref().filter(|a| **a != Node::Bool(false)) {
                if rng.one_in(2) {
                    entries.push(("extra key".to_string(), sample(extra, rng)));
                }
            }
            Json::Object(entries)
        }
    }
}

#[test]
fn random_schemas_give_grammars_that_accept_their_values() {
    let mut rng = Rng::new(crate::fuzz::seed() ^ 0x005c_4e3a);
    for i in 0..300 {
        let schema_json = random_schema(&mut rng, 3);
        let schema_text = text(&schema_json, true, 0);
        let schema = Schema::parse(&schema_text, None).unwrap_or_else(|e| panic!("#{i}: {e}\n{schema_text}"));
        let grammar = schema.to_gbnf();
        assert_eq!(check_gbnf(&grammar), Ok(()), "#{i}\n{schema_text}\n{grammar}");
        let m = Matcher::new(&grammar);
        for _ in 0..3 {
            let value = sample(&schema.root, &mut rng);
            assert_eq!(
                schema.validate(&value.to_value()),
                Ok(()),
                "#{i}\n{schema_text}\n{}",
                text(&value, false, 0)
            );
            for pretty in [false, true] {
                let answer = text(&value, pretty, 0);
                assert!(m.matches(&answer), "#{i}\n{schema_text}\n{answer}\n{grammar}");
            }
        }
    }
}
