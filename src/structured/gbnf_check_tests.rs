use super::*;

fn err(text: &str) -> String {
    check_gbnf(text).unwrap_err().to_string()
}

/// Grammars llama.cpp accepts.
const ACCEPTED: &[&str] = &[
    "root ::= \"yes\" | \"no\"",
    "root ::= [a-z]+ \"\\n\"\n",
    "# comment first\n\nroot ::= item{2,5} # trailing\nitem ::= [^\\x00-\\x1F\\]\\-] | \"\\u00e9\" | \"\\U0001F600\" | .\n",
    "root ::= (\n  \"a\"\n  | \"b\"   # inside a group lines may break\n)* \"c\"?\n",
    "root ::= \"x\" |\n  \"y\" |\n  \"z\"\r\n",
    "root ::=\n  value\nvalue ::= \"v\"{3} \"w\"{0,} \"u\"{1,}\n",
    "root ::= <[123]> !<[7]> <think> !<|end|> \"x\"",
    "root ::= space\nspace ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n",
    "root ::= [-a] [a-] [\\[\\]] \"\\\\\\\"\" \"\\t\\r\"",
    "root ::= \"é ünïcode ✓\" [α-ω]",
    "root ::= x\nx ::= \"\"",
    "root ::= \"a\"{2000}",
    "root ::= \"a\"{0,5000}",
    "root ::= (\"a\" | \"b\")? root-2\nroot-2 ::= \"c\" root-2 | \"d\"",
];

#[test]
fn accepts_llama_cpp_syntax() {
    for g in ACCEPTED {
        assert_eq!(check_gbnf(g), Ok(()), "{g:?}");
    }
}

#[test]
fn errors_give_line_and_column() {
    assert_eq!(
        err("root ::= value\n\nvalue ::= \"a\" valu\n"),
        "3:15: undefined rule \"valu\""
    );
    let e = check_gbnf("root ::= x").unwrap_err().in_file(Path::new("grammar.gbnf"));
    assert_eq!(e.to_string(), "grammar.gbnf:1:10: undefined rule \"x\"");
    assert_eq!((e.line, e.column), (1, 10));
    assert_eq!(
        err("root ::= \"é\" é"),
        "1:14: unexpected 'é'; expecting the end of the line"
    );
}

/// Grammars refused, with the start of the error.
const REFUSED: &[(&str, &str)] = &[
    ("", "1:1: the grammar has no rules"),
    ("# only a comment\n", "1:1: the grammar has no rules"),
    ("start ::= \"a\"", "1:1: no rule named root"),
    ("root ::= \"a", "1:10: string literal without its closing \""),
    ("root ::= [a-z", "1:10: character class without its closing ]"),
    (
        "root ::= (\"a\" | \"b\"",
        "1:20: expecting ')' to close the group opened at 1:10",
    ),
    ("root ::= \"a\" )", "1:14: unexpected ')'"),
    ("root := \"a\"", "1:6: expecting ::= after the rule name \"root\""),
    (
        "my_rule ::= \"a\"",
        "1:3: expecting ::= after the rule name \"my\" (names hold only letters, digits and '-')",
    ),
    (
        "_x ::= \"a\"",
        "1:1: expecting a rule name (names hold only letters, digits and '-')",
    ),
    ("root ::= \"\\q\"", "1:11: unknown escape"),
    ("root ::= \"\\x4\"", "1:13: expecting 2 hex digits"),
    ("root ::= \"\\u12G4\"", "1:13: expecting 4 hex digits"),
    ("root ::= * \"a\"", "1:10: expecting an item before */+/?/{"),
    ("root ::= \"\"+", "1:12: expecting an item before"),
    ("root ::= \"a\"{", "1:14: expecting a number"),
    ("root ::= \"a\"{x}", "1:14: expecting a number"),
    ("root ::= \"a\"{2", "1:15: expecting ',' or '}'"),
    ("root ::= \"a\"{2,3", "1:17: expecting '}'"),
    ("root ::= \"a\"{2001}", "1:13: more than llama.cpp's 2000 repetitions"),
    ("root ::= \"a\"{99999999999999999999999}", "1:14: number too large"),
    (
        "root ::= (\"a\"{0,100}){0,100}",
        "1:22: nested repetitions make more than llama.cpp's 2000 rules",
    ),
    ("root ::= \"a\"{0,50}{0,50}", "1:19: nested repetitions"),
    ("root ::= <abc", "1:14: expecting '>' to end the token"),
    ("root ::= <[12a]>", "1:14: expecting ]> to end the token id"),
    ("root ::= <[99999999999]>", "1:12: token id too large"),
    ("root ::= !\"a\"", "1:11: expecting '<'"),
    ("root ::= root \"a\" | \"b\"", "1:1: rule \"root\" is left-recursive"),
    (
        "root ::= x\nx ::= y \"a\"\ny ::= \"b\"? x",
        "2:1: rule \"x\" is left-recursive",
    ),
    ("root ::= (\"a\"? | \"\")* root", "1:1: rule \"root\" is left-recursive"),
    (
        "root ::= \"a\"\nroot ::= \"b\"",
        "2:1: rule \"root\" is defined twice (first at 1:1)",
    ),
    ("root ::= []", "1:10: empty character class []"),
    ("root ::= [z-a]", "1:11: range ends below its start"),
    (
        "root ::= \"a\"{3,2}",
        "1:13: the repetition's maximum is below its minimum",
    ),
    ("root ::= \"a\"\0", "1:13: a NUL character"),
    ("root ::= \"a\"\n| \"b\"", "2:1: expecting a rule name"),
    ("root ::= \"a\" |\nb ::= \"c\"", "2:3: unexpected ':'"),
];

#[test]
fn refuses_what_llama_cpp_refuses() {
    for (grammar, want) in REFUSED {
        let got = err(grammar);
        assert!(got.starts_with(want), "{grammar:?}\n  got:  {got}\n  want: {want}");
    }
}

#[test]
fn left_recursion_through_empty_rules_only() {
    // `x` may be empty, so `root ::= x root` can begin with root: llama.cpp refuses it.
    assert!(err("root ::= x root \"a\" | \"b\"\nx ::= \"c\" |").contains("left-recursive"));
    // `x` cannot be empty: fine.
    assert_eq!(check_gbnf("root ::= x root | \"b\"\nx ::= \"c\""), Ok(()));
    // llama.cpp only sees an alternative with no elements as empty, not a rule that reaches one.
    assert_eq!(check_gbnf("root ::= y root | \"b\"\ny ::= x\nx ::= \"c\" |"), Ok(()));
}
