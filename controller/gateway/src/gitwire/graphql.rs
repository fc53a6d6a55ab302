//! The operation a GraphQL request runs, for `egress` events to the GitHub API: its type, its name and its
//! top-level fields with their arguments as JSON. Fails closed: whatever cannot be told exactly (a batch, a
//! syntax error, several operations and no name to choose, a duplicate argument) is an error, and the caller
//! refuses the request.

use std::collections::HashSet;

use apollo_parser::Parser;
use apollo_parser::cst::{self, CstNode};
use paddock_policy::{GraphqlField, GraphqlOperation};
use serde_json::{Map, Number, Value};

/// How deep a document may nest (selections and values). GitHub's own queries stay far below; the parser
/// recurses, and a request runs on a task's stack.
const RECURSION_LIMIT: usize = 100;
/// How many tokens a document may have (the body is bounded too, by `egress.maxInspectBytes`).
const TOKEN_LIMIT: usize = 200_000;

/// The operation of a GraphQL POST body `{query, operationName?, variables?}`.
///
/// `Ok(None)` for an empty body (JSON `null`): there is nothing to run. A batch (a JSON array) is an error:
/// the event carries one operation. The operation is the one `operationName` names, or the document's only
/// one; `{ … }` is a query. Top-level fields are listed by their real name (an alias is not the field),
/// fragments spread at the top (named or inline) are expanded, and variables are substituted (or their
/// default value, or `null`).
pub fn operation(body: &Value) -> Result<Option<GraphqlOperation>, String> {
    let request = match body {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        Value::Array(_) => return Err("a batch of GraphQL requests is not supported; send one at a time".into()),
        _ => return Err("a GraphQL request is a JSON object with a `query`".into()),
    };
    let query = match request.get("query") {
        Some(Value::String(q)) => q,
        _ => return Err("a GraphQL request needs a `query` string".into()),
    };
    let wanted = match request.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.is_empty() => None,
        Some(Value::String(n)) => Some(n.as_str()),
        Some(_) => return Err("`operationName` must be a string".into()),
    };
    let empty = Map::new();
    let variables = match request.get("variables") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(v)) => v,
        Some(_) => return Err("`variables` must be a JSON object".into()),
    };

    let tree = Parser::new(query).recursion_limit(RECURSION_LIMIT).token_limit(TOKEN_LIMIT).parse();
    if let Some(e) = tree.errors().next() {
        return Err(format!("the GraphQL query does not parse: {}", e.message()));
    }
    let document = tree.document();
    let mut operations = Vec::new();
    let mut fragments = Vec::new();
    for definition in document.definitions() {
        match definition {
            cst::Definition::OperationDefinition(op) => operations.push(op),
            cst::Definition::FragmentDefinition(f) => fragments.push(f),
            _ => return Err("a GraphQL request may hold only operations and fragments".into()),
        }
    }
    let op = pick(&operations, wanted)?;
    let kind = match op.operation_type() {
        None => "query",
        Some(t) if t.query_token().is_some() => "query",
        Some(t) if t.mutation_token().is_some() => "mutation",
        Some(t) if t.subscription_token().is_some() => "subscription",
        Some(_) => return Err("unknown GraphQL operation type".into()),
    };
    let resolver = Resolver { variables, defaults: defaults(&op)?, fragments: &fragments };
    let selections = op.selection_set().ok_or("the GraphQL operation has no selection set")?;
    let mut fields = Vec::new();
    resolver.top_fields(&selections, &mut HashSet::new(), &mut fields)?;
    Ok(Some(GraphqlOperation { kind: kind.into(), name: op.name().map(|n| n.text().to_string()), fields }))
}

/// The operation `wanted` names, or the only one.
fn pick(operations: &[cst::OperationDefinition], wanted: Option<&str>) -> Result<cst::OperationDefinition, String> {
    let named = |n: &str| operations.iter().filter(|o| o.name().is_some_and(|m| m.text() == n)).count();
    if let Some(n) = operations.iter().filter_map(|o| o.name()).map(|n| n.text().to_string()).find(|n| named(n) > 1) {
        return Err(format!("the GraphQL document names two operations `{n}`"));
    }
    match wanted {
        Some(w) => operations
            .iter()
            .find(|o| o.name().is_some_and(|n| n.text() == w))
            .cloned()
            .ok_or_else(|| format!("the GraphQL document has no operation `{w}`")),
        None => match operations {
            [only] => Ok(only.clone()),
            [] => Err("the GraphQL document has no operation".into()),
            _ => Err("the GraphQL document has several operations and no `operationName`".into()),
        },
    }
}

/// The default values of an operation's variables.
fn defaults(op: &cst::OperationDefinition) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let Some(defs) = op.variable_definitions() else { return Ok(out) };
    for d in defs.variable_definitions() {
        let name = d.variable().and_then(|v| v.name()).ok_or("a GraphQL variable has no name")?.text().to_string();
        if let Some(v) = d.default_value().and_then(|d| d.value()) {
            let empty = Resolver { variables: &Map::new(), defaults: Map::new(), fragments: &[] };
            out.insert(name, empty.value(&v)?);
        }
    }
    Ok(out)
}

struct Resolver<'a> {
    variables: &'a Map<String, Value>,
    defaults: Map<String, Value>,
    fragments: &'a [cst::FragmentDefinition],
}

impl Resolver<'_> {
    /// The fields of a top-level selection set, fragments expanded (each named fragment once per path, so a
    /// fragment that spreads itself ends).
    fn top_fields(
        &self,
        set: &cst::SelectionSet,
        open: &mut HashSet<String>,
        out: &mut Vec<GraphqlField>,
    ) -> Result<(), String> {
        for selection in set.selections() {
            match selection {
                cst::Selection::Field(f) => {
                    let name = f.name().ok_or("a GraphQL field has no name")?.text().to_string();
                    let args = match f.arguments() {
                        Some(a) => self.arguments(&a)?,
                        None => Value::Null,
                    };
                    out.push(GraphqlField { name, args });
                }
                cst::Selection::InlineFragment(i) => {
                    let inner = i.selection_set().ok_or("a GraphQL inline fragment has no selection set")?;
                    self.top_fields(&inner, open, out)?;
                }
                cst::Selection::FragmentSpread(s) => {
                    let name = s
                        .fragment_name()
                        .and_then(|n| n.name())
                        .ok_or("a GraphQL fragment spread has no name")?
                        .text()
                        .to_string();
                    if !open.insert(name.clone()) {
                        return Err(format!("the GraphQL fragment `{name}` spreads itself"));
                    }
                    let mut defs = self
                        .fragments
                        .iter()
                        .filter(|f| f.fragment_name().and_then(|n| n.name()).is_some_and(|n| n.text() == name));
                    let def = defs.next().ok_or_else(|| format!("the GraphQL fragment `{name}` is not defined"))?;
                    if defs.next().is_some() {
                        return Err(format!("the GraphQL fragment `{name}` is defined twice"));
                    }
                    let inner = def.selection_set().ok_or("a GraphQL fragment has no selection set")?;
                    self.top_fields(&inner, open, out)?;
                    open.remove(&name);
                }
            }
        }
        Ok(())
    }

    fn arguments(&self, args: &cst::Arguments) -> Result<Value, String> {
        let mut out = Map::new();
        for a in args.arguments() {
            let name = a.name().ok_or("a GraphQL argument has no name")?.text().to_string();
            let value = self.value(&a.value().ok_or("a GraphQL argument has no value")?)?;
            // A server may take either of two spellings of one argument; neither can be judged alone.
            if out.insert(name.clone(), value).is_some() {
                return Err(format!("the GraphQL argument `{name}` is given twice"));
            }
        }
        Ok(Value::Object(out))
    }

    fn value(&self, v: &cst::Value) -> Result<Value, String> {
        Ok(match v {
            cst::Value::Variable(var) => {
                let name = var.name().ok_or("a GraphQL variable has no name")?.text().to_string();
                self.variables.get(&name).or_else(|| self.defaults.get(&name)).cloned().unwrap_or(Value::Null)
            }
            cst::Value::StringValue(s) => Value::String(String::from(s)),
            cst::Value::IntValue(i) => number(&i.syntax().text().to_string())?,
            cst::Value::FloatValue(f) => number(&f.syntax().text().to_string())?,
            cst::Value::BooleanValue(b) => Value::Bool(bool::try_from(b).map_err(|e| e.to_string())?),
            cst::Value::NullValue(_) => Value::Null,
            cst::Value::EnumValue(e) => Value::String(e.text().to_string()),
            cst::Value::ListValue(l) => Value::Array(l.values().map(|v| self.value(&v)).collect::<Result<_, _>>()?),
            cst::Value::ObjectValue(o) => {
                let mut out = Map::new();
                for f in o.object_fields() {
                    let name = f.name().ok_or("a GraphQL input field has no name")?.text().to_string();
                    let value = self.value(&f.value().ok_or("a GraphQL input field has no value")?)?;
                    if out.insert(name.clone(), value).is_some() {
                        return Err(format!("the GraphQL input field `{name}` is given twice"));
                    }
                }
                Value::Object(out)
            }
        })
    }
}

/// A GraphQL number literal as a JSON number (an integer when it is one).
fn number(text: &str) -> Result<Value, String> {
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("the GraphQL number `{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(body: Value) -> GraphqlOperation {
        operation(&body).expect("parses").expect("an operation")
    }

    fn names(o: &GraphqlOperation) -> Vec<&str> {
        o.fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn delete_ref_with_variables() {
        let o = op(json!({
            "query": "mutation DeleteBranch($id: ID!) { deleteRef(input: {refId: $id, clientMutationId: \"x\"}) { clientMutationId } }",
            "variables": {"id": "REF_kwDOA"}
        }));
        assert_eq!(o.kind, "mutation");
        assert_eq!(o.name.as_deref(), Some("DeleteBranch"));
        assert_eq!(
            o.fields,
            vec![GraphqlField {
                name: "deleteRef".into(),
                args: json!({"input": {"refId": "REF_kwDOA", "clientMutationId": "x"}})
            }]
        );
    }

    #[test]
    fn update_ref_with_force_literal_and_variable() {
        let literal = op(json!({
            "query": "mutation { updateRef(input: {refId: \"R\", oid: \"abc\", force: true}) { ref { name } } }"
        }));
        assert_eq!(literal.fields[0].args["input"]["force"], json!(true));
        let by_variable = op(json!({
            "query": "mutation($input: UpdateRefInput!) { updateRef(input: $input) { ref { name } } }",
            "variables": {"input": {"refId": "R", "oid": "abc", "force": true}}
        }));
        assert_eq!(by_variable.fields[0].args["input"]["force"], json!(true));
        let by_default = op(json!({
            "query": "mutation($f: Boolean = true) { updateRef(input: {refId: \"R\", oid: \"abc\", force: $f}) { clientMutationId } }"
        }));
        assert_eq!(by_default.fields[0].args["input"]["force"], json!(true));
    }

    #[test]
    fn merge_delete_repository_and_visibility() {
        let o = op(json!({
            "query": "mutation { mergePullRequest(input: {pullRequestId: \"PR_1\", mergeMethod: SQUASH}) { clientMutationId }
                        deleteRepository(input: {repositoryId: \"R_1\"}) { clientMutationId }
                        updateRepository(input: {repositoryId: \"R_1\", visibility: PUBLIC}) { clientMutationId } }"
        }));
        assert_eq!(names(&o), ["mergePullRequest", "deleteRepository", "updateRepository"]);
        assert_eq!(o.fields[0].args["input"]["mergeMethod"], json!("SQUASH"));
        assert_eq!(o.fields[2].args["input"]["visibility"], json!("PUBLIC"));
    }

    #[test]
    fn alias_records_the_real_field() {
        let o = op(json!({"query": "mutation { harmless: deleteRef(input: {refId: \"R\"}) { clientMutationId } }"}));
        assert_eq!(names(&o), ["deleteRef"]);
    }

    #[test]
    fn fragments_at_the_top_are_expanded() {
        let o = op(json!({
            "query": "mutation M { ...Danger ... on Mutation { deleteRepository(input: {repositoryId: \"R\"}) { clientMutationId } } }
                      fragment Danger on Mutation { d: deleteRef(input: {refId: \"R\"}) { clientMutationId } }"
        }));
        assert_eq!(names(&o), ["deleteRef", "deleteRepository"]);
    }

    #[test]
    fn comments_and_block_strings_hide_nothing() {
        let o = op(json!({
            "query": "# query { viewer { login } }\nmutation {\n  # nothing here\n  deleteRef(input: {refId: \"\"\"R\"\"\"}) { clientMutationId } }"
        }));
        assert_eq!(o.kind, "mutation");
        assert_eq!(o.fields[0].args["input"]["refId"], json!("R"));
    }

    #[test]
    fn operation_name_picks_the_real_one_past_a_decoy() {
        let body = json!({
            "query": "query Decoy { viewer { login } } mutation Real { deleteRef(input: {refId: \"R\"}) { clientMutationId } }",
            "operationName": "Real"
        });
        let o = op(body);
        assert_eq!((o.kind.as_str(), names(&o)), ("mutation", vec!["deleteRef"]));
    }

    #[test]
    fn anonymous_shorthand_is_a_query() {
        let o = op(json!({"query": "{ viewer { login } }"}));
        assert_eq!((o.kind.as_str(), o.name.as_deref(), names(&o)), ("query", None, vec!["viewer"]));
    }

    #[test]
    fn what_cannot_be_told_is_an_error() {
        for body in [
            json!([{"query": "{ viewer { login } }"}]),
            json!({"query": "query A { a } mutation B { deleteRef(input: {}) { x } }"}),
            json!({"query": "query A { a }", "operationName": "B"}),
            json!({"query": "mutation { deleteRef(input: {refId: \"R\"}"}),
            json!({"query": "mutation { updateRef(input: {force: false}, input: {force: true}) { x } }"}),
            json!({"query": "mutation { updateRef(input: {force: false, force: true}) { x } }"}),
            json!({"query": "mutation A { a } mutation A { deleteRef(input: {}) { x } }", "operationName": "A"}),
            json!({"query": "mutation { ...F } fragment F on Mutation { ...F }"}),
            json!({"query": "mutation { ...Missing }"}),
            json!({"query": "type Mutation { x: Int } mutation { a }"}),
            json!({"query": 5}),
            json!({"variables": {}}),
            json!({"query": "{ a }", "variables": []}),
            json!({"query": format!("{{ a(x: {}1{}) }}", "[".repeat(500), "]".repeat(500))}),
        ] {
            assert!(operation(&body).is_err(), "{body}");
        }
        assert_eq!(operation(&Value::Null), Ok(None));
    }
}
