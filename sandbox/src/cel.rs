//! CEL rules (`x-kubernetes-validations`) of a CRD schema: compiled when the CRD is
//! registered, evaluated on every create and update of its objects.
//!
//! ```text
//! schema --compile--> [ rules per schema node ] --evaluate(object, old)--> [ FieldCause ] (422)
//! ```
//!
//! Evaluation uses the `cel` interpreter and the Kubernetes CEL function library of kube's
//! `cel` feature (`kube::core::cel`, the kube-cel crate). The schema walk is done here rather
//! than by kube-cel's `Validator` because that one cannot evaluate `type(x) == string`, which
//! rules on `x-kubernetes-int-or-string` fields need; this walk adds `type()` and the type
//! identifiers (`int`, `string`, `bool`, ...). Field names are escaped as the real server
//! escapes them (`namespace` is `self.__namespace__`, `a-b` is `self.a__dash__b`). At
//! registration a rule that does not parse, or that selects a field of `self` the schema
//! does not declare under that name, is refused, as the real server's type check refuses it.
//! Transition rules (`oldSelf`) run on updates, where the old value correlates (object fields,
//! map entries, items of `x-kubernetes-list-type: map` lists by key).
//! Not done: the real server's cost budget, and type checking beyond fields of `self`.

use std::{collections::HashMap, sync::Arc};

use kube::core::cel::{
    KubeCelExt,
    cel::{
        Context, ExecutionError, FunctionContext, Program,
        extractors::This,
        objects::{Key, Map as CelMap, Value as CelValue},
    },
};
use serde_json::Value;

use super::{
    cause::FieldCause,
    structure::{ListType, list_type, same_keys},
};

/// The deepest a rule may nest: cel-go's parser refuses more ("max recursion depth exceeded"),
/// and the `cel` crate's parser, evaluator and drop recurse once per level: a flat chain of
/// 20,000 `+` overflowed the sandbox's stack and aborted it.
const MAX_RECURSION: usize = 250;

/// The most code points a rule may have (cel-go's default, which the real server keeps).
const MAX_CODE_POINTS: usize = 100_000;

/// `source` compiled, or the refusal (`what` names a messageExpression): what the real parser
/// refuses for size or depth is refused before anything parses it.
fn parse(source: &str, what: &str) -> Result<Program, String> {
    if let Some(message) = too_big(source) {
        return Err(message);
    }
    Program::compile(source).map_err(|error| format!("{what}compilation failed: {error}"))
}

/// Why the real server's CEL parser refuses `source` before parsing it, if it does, in its words
/// (checked on kube-apiserver v1.37.2: a 20,000-term chain is too long, a 300-term one too deep).
fn too_big(source: &str) -> Option<String> {
    let size = source.chars().count();
    if size > MAX_CODE_POINTS {
        return Some(format!(
            "compilation failed: ERROR: <input>:-1:0: expression code point size exceeds limit: size: {size}, limit {MAX_CODE_POINTS}"
        ));
    }
    (nesting(source) > MAX_RECURSION)
        .then(|| "compilation failed: ERROR: <input>:-1:0: max recursion depth exceeded".to_owned())
}

/// An upper bound on how deep a rule's syntax tree nests, from its text alone (nothing is parsed
/// before it is known to be safe to): every operator and member access outside string literals,
/// which a chain of them nests one level each, plus the deepest bracket nesting. It counts
/// operators that do not nest as well, so a rule with more than 250 of them in all is refused
/// where the real server might accept it; no CRD netfence or its tests install comes near.
fn nesting(rule: &str) -> usize {
    let mut operators = 0_usize;
    let (mut depth, mut deepest) = (0_usize, 0_usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous = ' ';
    for character in rule.chars() {
        let second_of_two = matches!(
            (previous, character),
            ('&', '&') | ('|', '|') | ('=' | '!' | '<' | '>', '=')
        );
        previous = character;
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == open {
                quote = None;
            }
            continue;
        }
        match character {
            '\'' | '"' => quote = Some(character),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '&' | '|' | '=' | '<' | '>' | '!' | '?' | '.'
                if !second_of_two =>
            {
                operators += 1;
            }
            _ => {}
        }
    }
    operators.saturating_add(deepest)
}

/// CEL's reserved words: a field with one of these names is `__name__` in rules.
const RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A field name as rules see it, or `None` when rules cannot see it at all.
#[must_use]
pub fn escape(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut characters = name.chars();
    let first_ok = characters
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '.' | '-' | '/'));
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
    {
        return None;
    }
    let mut escaped = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '_' => escaped.push_str("__"),
            '.' => escaped.push_str("__dot__"),
            '-' => escaped.push_str("__dash__"),
            '/' => escaped.push_str("__slash__"),
            other => escaped.push(other),
        }
    }
    Some(escaped)
}

#[derive(Debug)]
struct Rule {
    text: String,
    program: Program,
    message: Option<String>,
    message_expression: Option<Program>,
    field_path: Option<String>,
    reason: Option<String>,
    transition: bool,
    optional_old_self: bool,
}

/// The compiled rules of one schema node and its children.
#[derive(Debug, Default)]
pub struct Rules {
    here: Vec<Rule>,
    properties: HashMap<String, Rules>,
    items: Option<Box<Rules>>,
    additional: Option<Box<Rules>>,
}

/// A rule that does not compile: where (`...x-kubernetes-validations[0].rule`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// The schema path of the rule.
    pub path: String,
    /// The rule text.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

/// Blank out string literals, so the scan for `self.field` does not look inside them.
fn without_strings(rule: &str) -> String {
    let mut result = String::with_capacity(rule.len());
    let mut quote = None;
    let mut escaped = false;
    for c in rule.chars() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            result.push(if quote.is_none() { c } else { ' ' });
        } else {
            if c == '"' || c == '\'' {
                quote = Some(c);
            }
            result.push(c);
        }
    }
    result
}

/// The fields a rule selects directly on `self`: `self.a`, `has(self.b)`.
fn selected_fields(rule: &str) -> Vec<String> {
    let text = without_strings(rule);
    let bytes = text.as_bytes();
    let mut fields = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("self") {
        let at = from + found;
        from = at + 4;
        let before_ok = at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b'.');
        let mut cursor = at + 4;
        while cursor < bytes.len() && bytes[cursor] == b' ' {
            cursor += 1;
        }
        if !before_ok || cursor >= bytes.len() || bytes[cursor] != b'.' {
            continue;
        }
        cursor += 1;
        while cursor < bytes.len() && bytes[cursor] == b' ' {
            cursor += 1;
        }
        let start = cursor;
        while cursor < bytes.len()
            && (bytes[cursor].is_ascii_alphanumeric() || bytes[cursor] == b'_')
        {
            cursor += 1;
        }
        if cursor > start {
            fields.push(text[start..cursor].to_owned());
        }
    }
    fields
}

fn declared_fields(schema: &Value) -> Option<Vec<String>> {
    let open = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema
            .get("additionalProperties")
            .is_some_and(|additional| additional != &Value::Bool(false));
    if open {
        return None;
    }
    let properties = schema.get("properties")?.as_object()?;
    Some(properties.keys().filter_map(|name| escape(name)).collect())
}

/// Compile the rules of a schema; every rule that does not compile is an error.
pub fn compile(schema: &Value, path: &str) -> Result<Rules, Vec<CompileError>> {
    let mut errors = Vec::new();
    let rules = compile_node(schema, path, &mut errors, 0);
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn compile_node(schema: &Value, path: &str, errors: &mut Vec<CompileError>, depth: usize) -> Rules {
    let mut node = Rules::default();
    if depth > 64 {
        return node;
    }
    let text = |rule: &Value, key: &str| rule.get(key).and_then(Value::as_str).map(str::to_owned);
    for (index, rule) in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let rule_path = format!("{path}.x-kubernetes-validations[{index}].rule");
        let Some(source) = text(rule, "rule") else {
            errors.push(CompileError {
                path: rule_path,
                rule: String::new(),
                message: "Required value".to_owned(),
            });
            continue;
        };
        let program = match parse(&source, "") {
            Ok(program) => program,
            Err(message) => {
                errors.push(CompileError {
                    path: rule_path,
                    rule: source.clone(),
                    message,
                });
                continue;
            }
        };
        if let Some(declared) = declared_fields(schema)
            && let Some(undefined) = selected_fields(&source)
                .into_iter()
                .find(|field| !declared.contains(field))
        {
            errors.push(CompileError {
                path: rule_path,
                rule: source.clone(),
                message: format!("compilation failed: ERROR: undefined field '{undefined}'"),
            });
            continue;
        }
        let message_expression = match text(rule, "messageExpression") {
            Some(expression) => match parse(&expression, "messageExpression ") {
                Ok(program) => Some(program),
                Err(message) => {
                    errors.push(CompileError {
                        path: format!("{path}.x-kubernetes-validations[{index}].messageExpression"),
                        rule: expression,
                        message,
                    });
                    continue;
                }
            },
            None => None,
        };
        let transition = program.references().has_variable("oldSelf");
        node.here.push(Rule {
            text: source,
            program,
            message: text(rule, "message"),
            message_expression,
            field_path: text(rule, "fieldPath"),
            reason: text(rule, "reason"),
            transition,
            optional_old_self: rule.get("optionalOldSelf") == Some(&Value::Bool(true)),
        });
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let child_path = format!("{path}.properties[{name}]");
            node.properties.insert(
                name.clone(),
                compile_node(child, &child_path, errors, depth + 1),
            );
        }
    }
    if let Some(items) = schema.get("items") {
        node.items = Some(Box::new(compile_node(
            items,
            &format!("{path}.items"),
            errors,
            depth + 1,
        )));
    }
    if let Some(additional) = schema
        .get("additionalProperties")
        .filter(|additional| additional.is_object())
    {
        node.additional = Some(Box::new(compile_node(
            additional,
            &format!("{path}.additionalProperties"),
            errors,
            depth + 1,
        )));
    }
    node
}

/// A JSON value as rules see it: declared field names escaped, map keys as they are.
fn to_cel(value: &Value, schema: Option<&Value>) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                CelValue::Int(int)
            } else if let Some(uint) = number.as_u64() {
                CelValue::UInt(uint)
            } else {
                CelValue::Float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => CelValue::String(Arc::new(text.clone())),
        Value::Array(items) => {
            let item_schema = schema.and_then(|schema| schema.get("items"));
            CelValue::List(Arc::new(
                items.iter().map(|item| to_cel(item, item_schema)).collect(),
            ))
        }
        Value::Object(map) => {
            let properties = schema.and_then(|schema| schema.get("properties"));
            let additional = schema.and_then(|schema| schema.get("additionalProperties"));
            let is_map = additional.is_some_and(|additional| additional != &Value::Bool(false));
            let mut converted = HashMap::with_capacity(map.len());
            for (key, child) in map {
                let child_schema = properties
                    .and_then(|properties| properties.get(key))
                    .or_else(|| additional.filter(|additional| additional.is_object()));
                let name = if is_map {
                    Some(key.clone())
                } else {
                    escape(key)
                };
                if let Some(name) = name {
                    converted.insert(Key::String(Arc::new(name)), to_cel(child, child_schema));
                }
            }
            CelValue::Map(CelMap {
                map: Arc::new(converted),
            })
        }
    }
}

fn type_name(value: &CelValue) -> CelValue {
    let name = match value {
        CelValue::Int(_) => "int",
        CelValue::UInt(_) => "uint",
        CelValue::Float(_) => "double",
        CelValue::String(_) => "string",
        CelValue::Bytes(_) => "bytes",
        CelValue::Bool(_) => "bool",
        CelValue::List(_) => "list",
        CelValue::Map(_) => "map",
        CelValue::Null => "null_type",
        CelValue::Timestamp(_) => "google.protobuf.Timestamp",
        CelValue::Duration(_) => "google.protobuf.Duration",
        _ => "type",
    };
    CelValue::String(Arc::new(name.to_owned()))
}

/// CEL's `type(x)`, as the name of the type (compared with the type identifiers below).
#[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value)] // the signature the interpreter calls
fn type_of(_: &FunctionContext, This(value): This<CelValue>) -> Result<CelValue, ExecutionError> {
    Ok(type_name(&value))
}

/// The evaluation context: the Kubernetes CEL library, `type()`, and the type identifiers.
#[must_use]
pub fn context() -> Context<'static> {
    let mut context = Context::default();
    context.register_all();
    context.add_function("type", type_of);
    for name in [
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "list",
        "map",
        "null_type",
    ] {
        context.add_variable_from_value(name, CelValue::String(Arc::new(name.to_owned())));
    }
    context
}

impl Rules {
    /// Evaluate every rule against an object (and the old object, on update).
    #[must_use]
    pub fn evaluate(
        &self,
        context: &Context<'_>,
        schema: &Value,
        object: &Value,
        old: Option<&Value>,
    ) -> Vec<FieldCause> {
        let mut causes = Vec::new();
        self.walk(context, schema, object, old, "", &mut causes);
        causes
    }

    fn walk(
        &self,
        context: &Context<'_>,
        schema: &Value,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        causes: &mut Vec<FieldCause>,
    ) {
        if !self.here.is_empty() {
            let mut scope = context.new_inner_scope();
            scope.add_variable_from_value("self", to_cel(value, Some(schema)));
            if let Some(old) = old {
                scope.add_variable_from_value("oldSelf", to_cel(old, Some(schema)));
            }
            for rule in &self.here {
                Self::check(rule, &scope, value, old.is_some(), path, causes);
            }
        }
        let join = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        if let Value::Object(map) = value {
            for (name, rules) in &self.properties {
                if let (Some(child), Some(child_schema)) = (
                    map.get(name),
                    schema.pointer(&format!(
                        "/properties/{}",
                        name.replace('~', "~0").replace('/', "~1")
                    )),
                ) {
                    let old_child = old.and_then(|old| old.get(name));
                    rules.walk(context, child_schema, child, old_child, &join(name), causes);
                }
            }
            if let (Some(rules), Some(additional)) =
                (&self.additional, schema.get("additionalProperties"))
            {
                for (key, child) in map {
                    let old_child = old.and_then(|old| old.get(key));
                    rules.walk(
                        context,
                        additional,
                        child,
                        old_child,
                        &format!("{path}[{key}]"),
                        causes,
                    );
                }
            }
        }
        if let (Value::Array(items), Some(rules), Some(item_schema)) =
            (value, &self.items, schema.get("items"))
        {
            let keys = match list_type(Some(schema)) {
                ListType::Map(keys) => Some(keys),
                _ => None,
            };
            for (index, item) in items.iter().enumerate() {
                let old_item = keys.as_ref().and_then(|keys| {
                    old.and_then(Value::as_array).and_then(|old_items| {
                        old_items
                            .iter()
                            .find(|old_item| same_keys(old_item, item, keys))
                    })
                });
                rules.walk(
                    context,
                    item_schema,
                    item,
                    old_item,
                    &format!("{path}[{index}]"),
                    causes,
                );
            }
        }
    }

    fn check(
        rule: &Rule,
        scope: &Context<'_>,
        value: &Value,
        has_old: bool,
        path: &str,
        causes: &mut Vec<FieldCause>,
    ) {
        if rule.transition && !has_old && !rule.optional_old_self {
            return;
        }
        let null_old;
        let scope = if rule.transition && !has_old {
            let mut inner = scope.new_inner_scope();
            inner.add_variable_from_value("oldSelf", CelValue::Null);
            null_old = inner;
            &null_old
        } else {
            scope
        };
        let field = match rule.field_path.as_deref() {
            Some(extra) if path.is_empty() => extra.trim_start_matches('.').to_owned(),
            Some(extra) if extra.starts_with('.') => format!("{path}{extra}"),
            Some(extra) => format!("{path}.{extra}"),
            None => path.to_owned(),
        };
        let detail = match rule.program.execute(scope) {
            Ok(CelValue::Bool(true)) => return,
            Ok(CelValue::Bool(false)) => rule
                .message_expression
                .as_ref()
                .and_then(|expression| match expression.execute(scope) {
                    Ok(CelValue::String(text)) => Some(text.as_ref().clone()),
                    _ => None,
                })
                .or_else(|| rule.message.clone())
                .unwrap_or_else(|| format!("failed rule: {}", rule.text)),
            Ok(other) => format!(
                "rule did not evaluate to a bool but to {:?}: {}",
                type_name(&other),
                rule.text
            ),
            Err(error) => format!("{error} evaluating rule: {}", rule.text),
        };
        // As Kubernetes 1.37 prints a failed rule: an object's or a list's value is left out,
        // a scalar is shown as Go prints it.
        let invalid = match value {
            Value::Object(_) | Value::Array(_) => format!("Invalid value: {detail}"),
            Value::String(text) => format!("Invalid value: {text:?}: {detail}"),
            scalar => format!("Invalid value: {scalar}: {detail}"),
        };
        let (reason, message) = match rule.reason.as_deref() {
            Some("FieldValueForbidden") => ("FieldValueForbidden", format!("Forbidden: {detail}")),
            Some("FieldValueRequired") => {
                ("FieldValueRequired", format!("Required value: {detail}"))
            }
            Some("FieldValueDuplicate") => {
                ("FieldValueDuplicate", format!("Duplicate value: {detail}"))
            }
            _ => ("FieldValueInvalid", invalid),
        };
        causes.push(FieldCause {
            reason,
            field,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    /// A rule longer or deeper than the real parser takes is refused at registration as it is
    /// there, before anything parses it: a flat chain of 20,000 `+` used to overflow the
    /// sandbox's stack and abort it.
    #[test]
    fn a_rule_nested_too_deep_is_refused() {
        let schema = |rule: String| {
            serde_json::json!({
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": rule}],
            })
        };
        let chain =
            |terms: usize, operator: &str| format!("{} > 0", vec!["self.a"; terms].join(operator));
        for (terms, refusal) in [
            (
                20_000,
                "expression code point size exceeds limit: size: 180001, limit 100000",
            ),
            (300, "max recursion depth exceeded"),
        ] {
            let Err(errors) = compile(&schema(chain(terms, " + ")), "spec") else {
                panic!("a {terms}-term chain is refused");
            };
            assert!(
                errors[0].message.ends_with(refusal),
                "{}",
                errors[0].message
            );
        }
        assert!(compile(&schema(chain(60, " && ")), "spec").is_ok());
        assert_eq!(nesting("self.a == 'a.b.c+d' && self.a >= 1"), 5);
    }

    use super::*;
    use serde_json::json;

    fn evaluate(schema: &Value, object: &Value) -> Vec<String> {
        let rules = compile(schema, "schema").expect("compiles");
        rules
            .evaluate(&context(), schema, object, None)
            .iter()
            .map(FieldCause::text)
            .collect()
    }

    #[test]
    fn type_of_int_or_string_fields_is_known() {
        let schema = json!({
            "type": "object",
            "properties": {"port": {"x-kubernetes-int-or-string": true}},
            "x-kubernetes-validations": [{"rule": "type(self.port) == string || (self.port >= 1 && self.port <= 65535)", "message": "bad port", "fieldPath": ".port"}]
        });
        assert!(evaluate(&schema, &json!({"port": "metrics"})).is_empty());
        assert!(evaluate(&schema, &json!({"port": 80})).is_empty());
        assert_eq!(
            evaluate(&schema, &json!({"port": 0})),
            ["port: Invalid value: bad port"]
        );
    }

    #[test]
    fn reserved_field_names_are_escaped_and_unescaped_selects_do_not_compile() {
        let schema = json!({
            "type": "object",
            "properties": {"namespace": {"type": "string"}, "pod-selector": {"type": "object"}},
            "x-kubernetes-validations": [{"rule": "has(self.__namespace__) && !has(self.pod__dash__selector)"}]
        });
        assert!(evaluate(&schema, &json!({"namespace": "a"})).is_empty());
        assert_eq!(
            evaluate(&schema, &json!({"namespace": "a", "pod-selector": {}})),
            [
                "Invalid value: failed rule: has(self.__namespace__) && !has(self.pod__dash__selector)"
            ]
        );
        let wrong = json!({
            "type": "object",
            "properties": {"namespace": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "has(self.namespace) || self.x == 'self.y'"}]
        });
        let errors = compile(&wrong, "schema").expect_err("undefined field");
        assert_eq!(
            errors[0].message,
            "compilation failed: ERROR: undefined field 'namespace'"
        );
        assert_eq!(
            selected_fields("has(self.namespace) || self.x == 'self.y'"),
            ["namespace", "x"]
        );
    }

    #[test]
    fn transition_rules_run_only_on_update() {
        let schema = json!({
            "type": "object",
            "properties": {"mode": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"}]
        });
        let rules = compile(&schema, "schema").expect("compiles");
        let context = context();
        assert!(
            rules
                .evaluate(&context, &schema, &json!({"mode": "a"}), None)
                .is_empty()
        );
        assert_eq!(
            rules
                .evaluate(
                    &context,
                    &schema,
                    &json!({"mode": "b"}),
                    Some(&json!({"mode": "a"}))
                )
                .len(),
            1
        );
    }
}
